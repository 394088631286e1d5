#!/bin/bash
# Time to the first checkpoint answered when a log starts, as in
# BENCHMARKS.md: after a SIGTERM, then after a kill -9.
#   bash benches/restart.sh DATA [port]
# DATA is a filled log (benches/fill.sh keeps its data dir). BIN=path runs
# another build.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1
PORT=${2:-18220}
BIN=${BIN:-target/release/sealog}
start() {
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" serve --data "$D" --listen 127.0.0.1:$PORT >>"$D.restart.log" 2>&1 &
  PID=$!
  until curl -sf http://127.0.0.1:$PORT/checkpoint >/dev/null; do sleep 0.005; done
  t1=$(date +%s%N)
  echo "$1: $(((t1 - t0) / 1000000)) ms to the first checkpoint"
  sleep 3
}
start "first start"
kill -TERM $PID; wait $PID || true
start "after SIGTERM"
kill -KILL $PID; wait $PID 2>/dev/null || true
start "after kill -9"
kill -TERM $PID; wait $PID || true
