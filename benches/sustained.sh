#!/bin/bash
# Sustained 100-event batches on a fresh log, as in BENCHMARKS.md:
#   bash benches/sustained.sh [seconds] [concurrency] [data dir] [port]
# Prints the load generator's line, each server thread's CPU seconds over
# the run, and the metrics that say how commits went (batch sizes, commit
# time, pauses for the index, how far the index is behind). BIN=path runs
# another build (interleave two builds for an A/B: the VM drifts).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
C=${2:-16}
D=${3:-/tmp/sealog-sustained}
PORT=${4:-18200}
source benches/common.sh
fresh "$D" $PORT
"$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --server-pid $PID \
  --seconds "$SECS" --scenario append --batch 100 --concurrency "$C"
for t in /proc/$PID/task/*; do echo "$(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done |
  awk -v hz="$(getconf CLK_TCK)" '{cpu[$1] += $2} END {for (k in cpu) printf "%s=%.1fs ", k, cpu[k] / hz; print ""}'
curl -s http://127.0.0.1:$PORT/metrics |
  grep -E '^sealog_(commit_seconds|batch_events)_(sum|count)|^sealog_tree_size|^sealog_indexed_size|^sealog_index_pauses_total'
