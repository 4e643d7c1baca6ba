#!/usr/bin/env bash
# The dashboard rendered by a real browser: starts two workers and the ingress
# example in distributed mode on 127.0.0.1, makes a few calls, loads the
# dashboard in headless Chromium and checks the DOM its script built lists the
# workers and the functions. Every process started here is stopped by PID.
#
#   dashboard_in_browser.sh path/to/ingress
set -euo pipefail
program=$1
source "$(dirname "$0")/../../scripts/processes.sh"

workers=()
for i in 1 2; do
  start "worker$i" "listening on" "$program" --framex-worker --listen 127.0.0.1:0
  workers+=("$address")
done
FRAMEX_RUNTIME__MODE=distributed FRAMEX_DISTRIBUTED__WORKERS="${workers[0]},${workers[1]}" \
  start ingress "serving on" "$program" --server.port 0 --server.dashboard_port 0
api=$port
board=$(sed -n 's/.*dashboard on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$work/ingress")
for n in 1 2 3 4; do
  curl -sf -H 'Content-Type: application/json' -d "{\"label\":\"run$n\",\"n\":$n}" "http://127.0.0.1:$api/api/v1/demo/run" >/dev/null
done
# A failure whose text is markup: it reaches the dashboard's recent errors, and
# must stay text there.
payload='</script><script>document.title="owned"</script>'
curl -s -G --data-urlencode "why=$payload" "http://127.0.0.1:$api/api/v1/fail" >/dev/null

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$work/profile" --virtual-time-budget=3000 \
  --dump-dom "http://127.0.0.1:$board/" >"$work/dom.html" 2>"$work/chromium.log" || {
  cat "$work/chromium.log" >&2; exit 1; }

fail=0
expect() {  # expect PATTERN WHAT
  if grep -q "$1" "$work/dom.html"; then echo "ok: $2"; else echo "missing: $2 ($1)"; fail=1; fi
}
expect "<td>${workers[0]}</td>" "worker ${workers[0]} is listed"
expect "<td>${workers[1]}</td>" "worker ${workers[1]} is listed"
expect '<td class="ready">ready</td>' "a worker shows as ready"
expect '<td>heavy_job</td><td>remote</td><td class="n">' "heavy_job is listed as a remote function with its counts"
expect '(distributed mode)' "the mode is shown"
expect '<title>framex dashboard</title>' "no script from an error message ran"
expect '&lt;/script&gt;&lt;script&gt;document.title="owned"' "the error's markup is shown as text"
if [ $fail -ne 0 ]; then
  echo "--- the DOM Chromium rendered:"; cat "$work/dom.html"; exit 1
fi
