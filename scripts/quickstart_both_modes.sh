#!/usr/bin/env bash
# Runs examples/quickstart in local mode, then starts two workers (the same
# program, --framex-worker) on 127.0.0.1, runs it again distributed over them,
# prints both side by side and stops the workers (by PID).
#
#   scripts/quickstart_both_modes.sh [path/to/quickstart]
set -euo pipefail
cd "$(dirname "$0")/.."
program=${1:-build/release/examples/quickstart}
source scripts/processes.sh

timed() {  # timed OUTPUT_FILE COMMAND... : runs, records wall time in ms
  local out=$1 start end
  shift
  start=$(date +%s%N)
  "$@" >"$out"
  end=$(date +%s%N)
  echo "wall time (ms)            = $(((end - start) / 1000000))" >>"$out"
}

timed "$work/local" env -u FRAMEX_RUNTIME__MODE "$program"

workers=()
for i in 1 2; do
  start "worker$i" "listening on" "$program" --framex-worker --listen 127.0.0.1:0
  workers+=("$address")
done
timed "$work/distributed" env FRAMEX_RUNTIME__MODE=distributed \
  FRAMEX_DISTRIBUTED__WORKERS="$(IFS=,; echo "${workers[*]}")" "$program"

echo "workers: ${workers[*]} (pids ${pids[*]})"
printf '%-26s | %-26s | %s\n' "call" "local" "distributed"
printf '%s\n' "---------------------------+----------------------------+---------------------------"
paste -d'\n' "$work/local" "$work/distributed" | while IFS= read -r l && IFS= read -r d; do
  printf '%-26s | %-26s | %s\n' "${l%%=*}" "${l#*= }" "${d#*= }"
done
