#!/usr/bin/env bash
# Syscalls per message of the throughput example's client, iothub-tokio
# beside rumqttc, for TCP/TLS x QoS 0/1 (mosquitto on loopback).
#
#   scripts/bench-syscalls.sh [window (100)] [messages (200000)]
#
# Counts every syscall of the client's thread (the example runs each client
# on a current-thread runtime on its main thread) with
# `perf stat --no-inherit -e raw_syscalls:sys_enter`: the broker the example
# starts is a child process and is not counted. perf does not slow the
# client down, so batching is as in a normal run (strace would: a traced
# client reads bigger batches of PUBACKs and shows fewer syscalls than it
# makes). Setup (connect, TLS handshake, starting the broker) is taken out
# by counting a run of a tenth of the messages too and dividing the
# difference. Needs perf (Debian: linux-perf) and leave to read tracepoints
# (root, or kernel.perf_event_paranoid <= -1). Not run by CI: the figures
# go into the README's Benchmarks section.
set -euo pipefail

WINDOW="${1:-100}"
N="${2:-200000}"
SMALL=$((N / 10))
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 1; }
cargo build --release -q -p iothub-tokio --example throughput
BIN="$ROOT/target/release/examples/throughput"

# count CASE N [rumqttc]: syscalls of one run of one case.
count() {
  local case="$1" n="$2" out
  if [ "${3:-}" = rumqttc ]; then
    out=$(BENCH_CLIENT=rumqttc perf stat --no-inherit -x, -e raw_syscalls:sys_enter \
      "$BIN" --only "$case" --n "$n" --window "$WINDOW" 2>&1 >/dev/null)
  else
    out=$(env -u BENCH_CLIENT perf stat --no-inherit -x, -e raw_syscalls:sys_enter \
      "$BIN" --only "$case" --n "$n" --window "$WINDOW" 2>&1 >/dev/null)
  fi
  echo "$out" | awk -F, '/raw_syscalls:sys_enter/ { print $1 }'
}

per_msg() {
  local case="$1" who="${2:-}" big small
  big=$(count "$case" "$N" "$who")
  small=$(count "$case" "$SMALL" "$who")
  awk -v b="$big" -v s="$small" -v n="$N" -v m="$SMALL" \
    'BEGIN { printf "%.3f", (b - s) / (n - m) }'
}

echo "syscalls per message of the client thread, window $WINDOW, $N messages of 64 bytes"
echo
echo "| case | iothub-tokio | rumqttc |"
echo "|---|---|---|"
for case in TCP0 TCP1 TLS0 TLS1; do
  echo "| $case | $(per_msg "$case") | $(per_msg "$case" rumqttc) |"
done
