#!/bin/bash
# Proof reads on an existing (long) log, as in BENCHMARKS.md:
#   bash benches/long-reads.sh DATA_DIR [port]
# Starts `serve` on DATA_DIR (BIN=path for another build) and runs
# inclusion proofs by index twice (the first run warms the caches), then
# by leaf hash, then random full tiles and bundles twice, 15 s each at
# concurrency 64, then prints the server's RSS.
# The server logs to DATA.log.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1
PORT=${2:-18300}
source benches/common.sh
build
serve "$D" $PORT
for s in inclusion inclusion leaf tiles tiles; do
  "$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --server-pid $PID \
    --seconds 15 --scenario $s --concurrency 64 | grep scenario
done
echo "rss_kib=$(awk '/VmRSS/{print $2}' /proc/$PID/status)"
