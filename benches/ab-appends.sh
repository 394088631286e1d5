#!/bin/bash
# Interleaved A/B of two release builds of the server on appends:
#   bash benches/ab-appends.sh A_BIN B_BIN LOADGEN [seconds] [rounds]
# Each round runs, for A then B, 100-event batches (c=16) and single
# appends (c=64), each on a fresh log; prints events/s and latencies, the
# server's CPU µs per event over the run (less sensitive than throughput
# to what else the VM runs) and the mean commit time (sealog_commit_seconds).
# LOADGEN: the built load generator (target/release/deps/loadgen-*).
set -u
A=$1; B=$2; LG=$3; SECS=${4:-15}; ROUNDS=${5:-3}
HZ=$(getconf CLK_TCK)
PORT=18377
for r in $(seq "$ROUNDS"); do
  for bin in "$A" "$B"; do
    for mode in "100 16" "1 64"; do
      set -- $mode
      D=$(mktemp -d)/data
      "$bin" serve --data "$D" --listen 127.0.0.1:$PORT >"$D.log" 2>&1 &
      PID=$!
      sleep 3
      c0=$(awk '{print $14 + $15}' /proc/$PID/stat)
      out=$("$LG" --url http://127.0.0.1:$PORT --token-file "$D/admin.token" --server-pid $PID \
        --seconds "$SECS" --scenario append --batch "$1" --concurrency "$2" 2>&1 | tail -1)
      c1=$(awk '{print $14 + $15}' /proc/$PID/stat)
      commit=$(curl -s http://127.0.0.1:$PORT/metrics | grep -E '^sealog_commit_seconds_(sum|count)' |
        awk '{v[NR] = $2} END {if (v[2] > 0) printf "%.2f", 1000 * v[1] / v[2]}')
      ok=$(echo "$out" | sed -E 's/.*ok=([0-9]+).*/\1/')
      echo "round=$r bin=$bin batch=$1 c=$2 load=$(cut -d' ' -f1 /proc/loadavg)" \
        "cpu_us_per_event=$(( (c1 - c0) * 1000000 / HZ / (ok * $1) )) mean_commit_ms=$commit :: $out"
      kill $PID
      wait $PID 2>/dev/null
      rm -rf "$(dirname "$D")"
    done
  done
done
