#!/usr/bin/env bash
# HTTP load with wrk on 127.0.0.1, bounded in time:
#  1. examples/beast_service: while 32 connections keep /heavy (50 ms of blocking
#     work) busy, /fast's p99 latency and requests/s, with the blocking call made
#     inline (the anti-pattern) and with `co_await legacy.remote(...)`, local and
#     distributed (two workers);
#  2. /ping requests/s: framex's ingress (examples/ingress) vs the plain Beast
#     server of examples/beast_service, same wrk settings.
# Every process started here is stopped by PID.
#
#   bench/http_load.sh [build/release] [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
seconds=${2:-10}
service=$build/examples/beast_service
ingress=$build/examples/ingress
source scripts/processes.sh

p99_ms() {  # p99 in ms from wrk --latency output
  awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.2f", v }' "$1"
}
rps() { awk '/Requests\/sec/ { printf "%.0f", $2 }' "$1"; }

fast_under_load() {  # fast_under_load LABEL PORT
  local label=$1 port=$2
  wrk -t1 -c32 -d"${seconds}s" "http://127.0.0.1:$port/heavy" >"$work/heavy.out" 2>&1 &
  local heavy=$!
  sleep 0.5
  wrk -t1 -c4 -d"$((seconds - 1))s" --latency --timeout 30s "http://127.0.0.1:$port/fast" >"$work/fast.out" 2>&1
  wait $heavy
  printf '| %-34s | %14s | %12s | %12s |\n' "$label" "$(p99_ms "$work/fast.out")" "$(rps "$work/fast.out")" \
    "$(rps "$work/heavy.out")"
}

echo "wrk, ${seconds} s per run, $(nproc) cores; /heavy: 32 connections; /fast: 4 connections"
printf '| %-34s | %14s | %12s | %12s |\n' "beast_service" "/fast p99 (ms)" "/fast req/s" "/heavy req/s"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..16})" \
  "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})"

start inline "listening on" "$service" --port 0 --inline
fast_under_load "inline blocking call (anti-pattern)" "$port"
stop_last
start local "listening on" "$service" --port 0
fast_under_load ".remote(), local mode" "$port"
stop_last

start w1 "listening on" "$service" --framex-worker --listen 127.0.0.1:0
w1=$port
start w2 "listening on" "$service" --framex-worker --listen 127.0.0.1:0
w2=$port
FRAMEX_RUNTIME__MODE=distributed FRAMEX_DISTRIBUTED__WORKERS=127.0.0.1:$w1,127.0.0.1:$w2 \
  start distributed "listening on" "$service" --port 0
fast_under_load ".remote(), distributed (2 workers)" "$port"
stop_last; stop_last; stop_last

echo
printf '| %-34s | %12s | %14s |\n' "/ping, wrk -t1 -c32" "req/s" "p99 (ms)"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..16})"
start plain "listening on" "$service" --port 0
wrk -t1 -c32 -d"${seconds}s" --latency "http://127.0.0.1:$port/ping" >"$work/plain.out" 2>&1
plain=$(rps "$work/plain.out")
printf '| %-34s | %12s | %14s |\n' "plain Beast (beast_service)" "$plain" "$(p99_ms "$work/plain.out")"
stop_last
start ingress "serving on" "$ingress" --server.port 0 --server.dashboard_port 0
wrk -t1 -c32 -d"${seconds}s" --latency "http://127.0.0.1:$port/ping" >"$work/ingress.out" 2>&1
framex=$(rps "$work/ingress.out")
printf '| %-34s | %12s | %14s |\n' "framex ingress (examples/ingress)" "$framex" "$(p99_ms "$work/ingress.out")"
stop_last
awk -v a="$framex" -v b="$plain" 'BEGIN { printf "ingress / plain Beast: %.2fx\n", a / b }'
