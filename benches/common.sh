# Sourced by the bench scripts (from the repository's root).
#   build            builds the server (target/release/sealog), its test
#                    build (target/release/sealog-test: --bench-floor) and
#                    the load generator; sets $LG
#   serve DATA PORT [serve flags...]
#                    starts `serve` on DATA ($BIN for another build), logs
#                    to DATA.log, sets $PID, stops it on exit, waits 2 s
#   fresh DATA PORT [serve flags...]
#                    build, then serve on an emptied DATA
#   settle           waits (at most 90 s) until the server is idle: under
#                    0.05 cores over a second, so that a scenario does not
#                    share the machine with the index and the detection
#                    rules catching up on the one before
build() {
  # cargo bench builds sealog-test (test hooks) too; the release build
  # after it puts the production binary back at target/release/sealog.
  cargo bench --bench loadgen --no-run --quiet 2>/dev/null
  cargo build --release --quiet
  LG=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
}

serve() {
  local data=$1 port=$2
  shift 2
  "${BIN:-target/release/sealog}" serve --data "$data" --listen 127.0.0.1:$port "$@" >"$data.log" 2>&1 &
  PID=$!
  trap 'kill $PID 2>/dev/null' EXIT
  sleep 2
}

settle() {
  local ticks=$(getconf CLK_TCK) t0 t1
  for _ in $(seq 90); do
    t0=$(awk '{print $14 + $15}' /proc/$PID/stat)
    sleep 1
    t1=$(awk '{print $14 + $15}' /proc/$PID/stat)
    [ $(( (t1 - t0) * 100 / ticks )) -lt 5 ] && return
  done
  echo "the server did not settle in 90 s" >&2
}

fresh() {
  build
  rm -rf "$1"
  serve "$@"
}
