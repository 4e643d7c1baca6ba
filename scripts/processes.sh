# Sourced by scripts that start servers: a scratch folder `$work`, and background
# processes stopped by PID (SIGTERM, then waited for) when the script exits.
#
#   start NAME PATTERN COMMAND...   runs COMMAND in the background with its output
#                                   in $work/NAME, waits (10 s at most) for a line
#                                   with PATTERN, and sets `address` to the
#                                   127.0.0.1:PORT that follows it and `port`
#   stop_last                       stops the most recently started process
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$work/$name" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "$pattern" "$work/$name" && break; sleep 0.05; done
  port=$(sed -n "s/.*$pattern[^0-9]*127\.0\.0\.1:\([0-9]*\).*/\1/p" "$work/$name" | head -1)
  if [ -z "$port" ]; then
    echo "$name did not start:" >&2
    cat "$work/$name" >&2
    exit 1
  fi
  address=127.0.0.1:$port
}

stop_last() {
  local pid=${pids[-1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'pids[-1]'
}
