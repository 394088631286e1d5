# Sourced by the bench scripts (from the repository's root).
#   build            builds the server and the load generator; sets $LG
#   serve DATA PORT [serve flags...]
#                    starts `serve` on DATA ($BIN for another build), logs
#                    to DATA.log, sets $PID, stops it on exit, waits 2 s
build() {
  cargo build --release --quiet
  cargo bench --bench loadgen --no-run --quiet 2>/dev/null
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
