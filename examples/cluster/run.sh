#!/usr/bin/env bash
# The cluster walkthrough on one machine: etcd, three workers that register in
# it, and a caller (the ingress example in distributed mode) under steady
# requests. Then one worker is killed outright, two more join, and one is
# drained; after each step the caller's view is printed: its workers and the
# calls each has served. Everything runs on 127.0.0.1, on free ports, and is
# stopped by PID at the end.
#
#   examples/cluster/run.sh path/to/ingress
set -euo pipefail
ingress=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/scripts/processes.sh"
trap 'exit 143' TERM INT HUP

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
client=$(free_port) peer=$(free_port)
etcd --name cluster-example --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "cluster-example=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
discovery=etcd://127.0.0.1:$client/framex/example
echo "etcd on 127.0.0.1:$client; workers register under /framex/example"

declare -A worker_pid
worker() {  # starts one worker; remembers its PID by address
  start "worker$1" "listening on" "$ingress" --framex-worker --listen 127.0.0.1:0 --threads 2 \
    --distributed.discovery "$discovery" --etcd.lease_ttl_ms 2000
  worker_pid[$address]=${pids[-1]}
  echo "started worker $1 on $address"
}
for n in 1 2 3; do worker $n; done

start caller "serving on" "$ingress" --server.port 0 --server.dashboard_port 0 \
  --runtime.mode distributed --distributed.discovery "$discovery"
api=$address
dashboard=$(sed -n 's|.*dashboard on http://\(127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$work/caller" | head -1)
echo "caller on http://$api, dashboard on http://$dashboard/"

# Steady requests, each a call to a worker.
( while true; do
    curl -s -o /dev/null -w '%{http_code}\n' -d '{"label":"load","n":21}' "http://$api/api/v1/demo/run" >>"$work/codes" || true
  done ) &
pids+=($!)

view() {  # what the caller sees now; its workers' addresses in $seen
  sleep "${1:-1.5}"
  echo
  echo "--- $2 ($(wc -l <"$work/codes") requests so far, $(grep -vc '^200$' "$work/codes" || true) failed)"
  curl -s "http://$dashboard/api/v1/stats" >"$work/stats"
  seen=$(/usr/bin/python3 -c 'import json, sys; print(" ".join(sorted(w["address"] for w in json.load(sys.stdin)["workers"])))' <"$work/stats")
  /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
row = "{:<22} {:<7} {:<10} {:>12}"
print(row.format("worker", "source", "state", "calls served"))
for w in sorted(s["workers"], key=lambda w: w["address"]):
    print(row.format(w["address"], w["source"], w["state"], w["completed"]))' <"$work/stats"
}
expect() {  # expect CONDITION WHAT
  if eval "$1"; then echo "ok: $2"; else echo "FAILED: $2"; exit 1; fi
}

view 2 "three workers registered"
victim=$(printf '%s\n' "${!worker_pid[@]}" | sort | head -1)
kill -KILL "${worker_pid[$victim]}"
echo
echo "killed $victim outright (SIGKILL): its lease expires within 2 s"
view 3.5 "after the kill"
expect '[[ " $seen " != *" $victim "* ]]' "the killed worker left the caller's view"
worker 4
worker 5
view 2 "two more workers joined"
expect '[ $(wc -w <<<"$seen") = 4 ]' "the caller follows four workers"
drained=$(printf '%s\n' "${!worker_pid[@]}" | grep -v "$victim" | sort | head -1)
kill -TERM "${worker_pid[$drained]}"
echo
echo "drained $drained (SIGTERM): it finishes its calls, leaves etcd and exits"
view 2 "after the drain"
expect '[[ " $seen " != *" $drained "* ]]' "the drained worker left the caller's view"
