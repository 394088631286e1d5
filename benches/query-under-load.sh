#!/bin/bash
# Queries while the log takes batches, on a fresh log:
#   bash benches/query-under-load.sh [data dir] [port]
# 45 s of 100-event batches at concurrency 16; from 15 s on, one client
# asks the newest 20 events of a random user for 30 s. A query waits for
# the index to cover the tree it answers for, so its latency shows how far
# the index follower lags under load. BIN=path runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/tmp/sealog-qload}
PORT=${2:-18200}
source benches/common.sh
fresh "$D" $PORT
"$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --seconds 45 \
  --scenario append --batch 100 --concurrency 16 >"$D.append" 2>&1 &
A=$!
sleep 15
"$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --seconds 30 \
  --scenario query --concurrency 1
wait $A
cat "$D.append"
