#!/usr/bin/env bash
# examples/nvim_client against a real Neovim, over a unix socket and over TCP,
# as its header tells a user to run it. Neovim is installed by scripts/setup.sh.
#
#   nvim_client.sh path/to/nvim_client
set -euo pipefail
program=$1
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT HUP

accepts() {  # accepts ADDRESS: something listens there
  /usr/bin/python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
a = sys.argv[1]
if "/" in a:
    s = socket.socket(socket.AF_UNIX); s.connect(a)
else:
    host, port = a.rsplit(":", 1); socket.create_connection((host, int(port)), timeout=1)
PY
}

run_against() {  # run_against LISTEN_ADDRESS
  nvim --headless --clean --listen "$1" </dev/null >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 400); do accepts "$1" && break; sleep 0.05; done
  "$program" "$1" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  kill $pid; wait $pid 2>/dev/null || true; pid=
  cat "$work/out"
  grep -q 'nvim_eval("1+2") = 3' "$work/out"
  grep -q 'g:greeting = hello from framex' "$work/out"
  grep -q 'nvim_eval("1+") failed: .*E15' "$work/out"
  grep -q 'rpcrequest(add, 20, 22) answered 42' "$work/out"
}
run_against "$work/nvim.sock"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_against "127.0.0.1:$port"
echo "ok: nvim_client over a unix socket and TCP"
