#!/usr/bin/env python3
"""Counts the non-test source lines of crates: lines of src/**/*.rs that are
not blank, not comments (// or //! or ///), and not inside a
`#[cfg(test)] mod … { … }` block. Usage, from the repository root:

    python3 scripts/adapter-lines.py iothub-tokio iothub-blocking iothub-smol iothub-net
"""
import os
import sys


def count(path):
    n = 0
    skip = False
    depth = 0
    pending = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if skip:
                depth += line.count("{") - line.count("}")
                if depth <= 0 and "}" in line:
                    skip = False
                continue
            if s == "#[cfg(test)]":
                pending = True
                continue
            if pending and s.startswith("mod "):
                pending = False
                if s.endswith(";"):
                    continue  # `mod tests;`: the file is counted on its own
                depth = line.count("{") - line.count("}")
                skip = not (depth <= 0 and "{" in line)
                continue
            pending = False
            if not s or s.startswith("//"):
                continue
            n += 1
    return n


def main():
    for crate in sys.argv[1:]:
        total = 0
        for root, _, files in os.walk(os.path.join(crate, "src")):
            total += sum(count(os.path.join(root, f)) for f in files if f.endswith(".rs"))
        print(crate, total)


if __name__ == "__main__":
    main()
