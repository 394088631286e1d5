#!/bin/bash
# The load-generator table of BENCHMARKS.md, on a fresh log:
#   bash benches/suite.sh [data dir] [port]
# Builds the release server and load generator, starts the server with the
# no-op floor, runs each scenario for $SECS seconds (default 10), in order,
# each once the server is idle (`settle`), and stops the server. Output:
# one block per scenario. BIN=path runs another build of the server (the
# before/after tables); it must honour --bench-floor (a sealog-test build,
# --features test-hooks).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/tmp/sealog-bench}
PORT=${2:-18100}
SECS=${SECS:-10}
source benches/common.sh
# The no-op floor is a test hook: only sealog-test has it.
BIN=${BIN:-target/release/sealog-test} fresh "$DATA" $PORT --bench-floor true
run() {
  echo "== $*"
  settle
  "$LG" --url http://127.0.0.1:$PORT --token-file "$DATA/admin.token" --server-pid $PID --seconds "$SECS" "$@"
}
run --scenario noop --batch 1 --concurrency 64
run --scenario read-floor --concurrency 64
run --scenario append --batch 1 --concurrency 1
run --scenario append --batch 1 --concurrency 16
run --scenario append --batch 1 --concurrency 64
run --scenario append --batch 1 --concurrency 256
run --scenario noop --batch 100 --concurrency 16
run --scenario append --batch 100 --concurrency 16
run --scenario inclusion --concurrency 64
run --scenario leaf --concurrency 64
run --scenario tiles --concurrency 64
run --scenario query --concurrency 16
run --scenario risk --concurrency 16
echo "== metrics"
curl -s http://127.0.0.1:$PORT/metrics | grep -E '^sealog_(commit_seconds|batch_events)_(sum|count)|^sealog_tree_size'
