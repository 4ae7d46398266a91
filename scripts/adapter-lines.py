#!/usr/bin/env python3
"""Counts the non-test source lines of crates: lines of src/**/*.rs that are
not blank, not comments (// or //! or ///), not inside a
`#[cfg(test)] mod … { … }` block, and not in a file (or folder) that only
a `#[cfg(test)] mod name;` declaration brings in. Usage, from the
repository root:

    python3 scripts/adapter-lines.py iothub-tokio iothub-blocking iothub-smol iothub-client

With no argument, every crate of the workspace.
"""
import os
import re
import sys


def count(path, test_files):
    """Non-test lines of one file; adds the files its `#[cfg(test)] mod x;`
    declarations bring in to `test_files`."""
    n = 0
    skip = False
    depth = 0
    pending = False
    here = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    # `mod x;` in foo.rs lives in foo/x.rs; in mod.rs, lib.rs or main.rs
    # next to it.
    base = here if stem in ("mod", "lib", "main") else os.path.join(here, stem)
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if skip:
                depth += line.count("{") - line.count("}")
                if depth <= 0 and "}" in line:
                    skip = False
                continue
            if s.startswith("#[cfg(test)]"):
                pending = True
                continue
            if pending and re.match(r"(pub(\(\w+\))? )?mod ", s):
                pending = False
                if s.endswith(";"):
                    name = s.rstrip(";").split()[-1]
                    test_files.add(os.path.join(base, name + ".rs"))
                    test_files.add(os.path.join(base, name))
                    continue
                depth = line.count("{") - line.count("}")
                skip = not (depth <= 0 and "{" in line)
                continue
            pending = False
            if not s or s.startswith("//"):
                continue
            n += 1
    return n


def crate_lines(crate):
    test_files = set()
    counted = {}
    for root, _, files in sorted(os.walk(os.path.join(crate, "src"))):
        for f in sorted(files):
            if f.endswith(".rs"):
                p = os.path.join(root, f)
                counted[p] = count(p, test_files)
    total = 0
    for p, n in counted.items():
        if p in test_files or any(p.startswith(t + os.sep) for t in test_files):
            continue
        total += n
    return total


def main():
    crates = sys.argv[1:] or sorted(
        d for d in os.listdir(".") if os.path.isfile(os.path.join(d, "Cargo.toml")) and os.path.isdir(os.path.join(d, "src"))
    )
    for crate in crates:
        print(crate, crate_lines(crate))


if __name__ == "__main__":
    main()
