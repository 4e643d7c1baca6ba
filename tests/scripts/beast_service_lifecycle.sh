#!/usr/bin/env bash
# examples/beast_service starts, serves /fast and /heavy, and on SIGTERM
# finishes the request in flight and exits 0 within a few seconds.
#
#   beast_service_lifecycle.sh path/to/beast_service [extra args]
set -euo pipefail
program=$1
shift
work=$(mktemp -d)
"$program" --port 0 --trace "$@" >"$work/out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT HUP  # a ctest timeout still stops what it started
wait_for() {  # wait_for PATTERN: up to 30 s for a line of the service's output
  for _ in $(seq 600); do grep -q "$1" "$work/out" && return 0; sleep 0.05; done
  echo "no \"$1\" within 30 s:"; cat "$work/out"; exit 1
}
wait_for "listening on"
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/out")
[ -n "$port" ] || { cat "$work/out"; exit 1; }

check() {  # check WHAT COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; exit 1; fi
}
check "/fast answers" test "$(curl -sf "http://127.0.0.1:$port/fast")" = "fast"
check "/heavy answers" grep -q "^report #" <(curl -sf "http://127.0.0.1:$port/heavy")

curl -sf "http://127.0.0.1:$port/heavy" >"$work/late" &
client=$!
wait_for "heavy #2 started"  # the second /heavy request is in flight (it takes 50 ms)
kill -TERM $pid
start=$(date +%s%N)
status=0
wait $pid || status=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
wait $client || true
check "the request in flight was answered" grep -q "^report #" "$work/late"
check "exit status 0 (got $status)" test $status -eq 0
check "stopped within 5 s (${elapsed_ms} ms)" test $elapsed_ms -lt 5000
check "a clean stop" grep -q "beast_service stopped" "$work/out"
