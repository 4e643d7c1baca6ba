#!/usr/bin/env bash
# The README's TLS walkthrough, run as written in a scratch folder: only the
# ports are changed to free ones and ./ingress to the built example. The call
# through the HTTPS ingress and two mutual-TLS, token-checking workers must
# answer, and the call without the key must get 401. Every process it starts
# is stopped by PID.
#
#   tls_walkthrough.sh path/to/ingress path/to/source
set -euo pipefail
program=$1
source_dir=$2
work=$(mktemp -d)
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP  # a ctest timeout still stops what it started

block=$(awk '/<!-- tls-walkthrough/{found=1; next} found && /^```sh/{inside=1; next} inside && /^```/{exit} inside' \
  "$source_dir/README.md")
[ -n "$block" ] || { echo "no walkthrough in README.md"; exit 1; }

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
block=${block//7001/$(free_port)}
block=${block//8080/$(free_port)}
block=${block//8260/$(free_port)}
block=${block//.\/ingress/$program}

cd "$work"
# Into a file, not $(...): the workers and the ingress it starts keep their output open.
eval "$block" >log 2>&1 || { echo "the walkthrough failed:"; cat log; exit 1; }
out=$(cat log)
echo "$out"
# The answer itself, as a line of its own: a failed curl (whose failure the
# walkthrough's block does not stop on) leaves no such line.
grep -qxF '{"label":"nightly","value":42}' <<<"$out" || { echo "no answer from the workers"; exit 1; }
[ "$(tail -1 <<<"$out")" = 401 ] || { echo "the call without a key was not refused"; exit 1; }
