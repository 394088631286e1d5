#!/bin/bash
# A long fill with memory and index samples, as in BENCHMARKS.md:
#   bash benches/fill.sh [events] [data dir] [port]
# Starts `serve` on a fresh data dir (BIN=path for another build), fills it
# with 1,000-event requests from 4 clients (a 503 is retried after 1 s),
# and prints a line every 30 s: RSS (KiB), tree size, indexed size,
# commits paused for the index, requests answered 503. The data dir is
# kept (for benches/long-reads.sh); it takes ~1.1 KB per event.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
D=${2:-/tmp/sealog-fill}
PORT=${3:-18200}
source benches/common.sh
fresh "$D" $PORT
metric() { awk -v k="$1" '$1 == k {print $2}'; }
(while kill -0 $PID 2>/dev/null; do
  m=$(curl -s http://127.0.0.1:$PORT/metrics || true)
  echo "$(date +%T) rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status 2>/dev/null)" \
    "size=$(metric sealog_tree_size <<<"$m") indexed=$(metric sealog_indexed_size <<<"$m")" \
    "pauses=$(metric sealog_index_pauses_total <<<"$m")" \
    "503s=$(metric 'sealog_append_requests_total{outcome="overloaded"}' <<<"$m")"
  sleep 30
done) &
S=$!
"$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --server-pid $PID \
  --scenario fill --events "$N" --data "$D"
kill $S 2>/dev/null || true
