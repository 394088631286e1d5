#!/bin/bash
# Proof reads on an existing (long) log, as in BENCHMARKS.md:
#   bash benches/long-reads.sh DATA_DIR [port]
# Starts `serve` on DATA_DIR (BIN=path for another build) and runs
# inclusion proofs by index twice (the first run warms the caches), then
# by leaf hash, 15 s each at concurrency 64, then prints the server's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1
PORT=${2:-18300}
cargo bench --bench loadgen --no-run --quiet 2>/dev/null
LG=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
"${BIN:-target/release/sealog}" serve --data "$D" --listen 127.0.0.1:$PORT >"$D.reads.log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null' EXIT
sleep 3
for s in inclusion inclusion leaf; do
  "$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --server-pid $P \
    --seconds 15 --scenario $s --concurrency 64 | grep scenario
done
echo "rss_kib=$(awk '/VmRSS/{print $2}' /proc/$P/status)"
