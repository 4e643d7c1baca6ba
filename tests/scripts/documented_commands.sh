#!/usr/bin/env bash
# Every `curl` command that examples/ingress.cpp and README.md document, run
# exactly as written (only the port changed to the one the ingress got) against
# the ingress example: each must succeed (HTTP 2xx). Every process started here
# is stopped by PID.
#
#   documented_commands.sh path/to/ingress path/to/source
set -euo pipefail
program=$1
source_dir=$2
source "$source_dir/scripts/processes.sh"

start ingress "serving on" "$program" --server.port 0 --server.dashboard_port 0
commands=$( (sed -n 's|^//   \(curl .*\)|\1|p' "$source_dir/examples/ingress.cpp"
             sed -n 's|^\(curl .*8080.*\)|\1|p' "$source_dir/README.md") | sort -u)
[ -n "$commands" ] || { echo "no documented curl commands found"; exit 1; }
fail=0
while IFS= read -r command; do
  local_command=${command//127.0.0.1:8080/127.0.0.1:$port}
  if out=$(eval "${local_command/curl /curl -sS --fail-with-body }" 2>&1); then
    echo "ok: $command -> $out"
  else
    echo "FAILED: $command -> $out"
    fail=1
  fi
done <<<"$commands"
exit $fail
