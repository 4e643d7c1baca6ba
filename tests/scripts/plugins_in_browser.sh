#!/usr/bin/env bash
# The plugins example as a user runs it: the app with its framex.toml, an
# in-binary plugin and a .so plugin; curl reads an event stream as it comes;
# headless Chromium renders /docs (every route listed) and, through the page's
# test request, shows a stream's events arriving. Every process started here
# is stopped by PID.
#
#   plugins_in_browser.sh path/to/plugins_app path/to/example_billing.so source_dir
set -euo pipefail
program=$1 library=$2 source=$3
source "$source/scripts/processes.sh"

start app "serving on" "$program" --config "$source/examples/plugins/framex.toml" \
  --load_plugins "inventory,$library" --server.port 0 --server.dashboard_port 0
api="http://127.0.0.1:$port"

fail=0
check() {  # check WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "wrong: $1: expected [$2], got [$3]"; fail=1; fi
}
check "the .so plugin calls the in-binary one and echo" \
  '{"name":"apple","in_stock":5,"cents":80,"note":"echo: quoted apple"}' \
  "$(curl -sf "$api/api/v1/billing/quote?name=apple&count=2")"
check "the app's route calls a function API" 7 "$(curl -sf "$api/api/v1/total?a=apple&b=pear")"
check "a described-struct body" '{"name":"kiwi","count":3}' \
  "$(curl -sf -H 'Content-Type: application/json' -d '{"name":"kiwi","count":3}' "$api/api/v1/inventory/add")"
for line in "framex plugin inventory 1.0.0 (linked in)" "framex plugin billing 0.3.0 ($library)" \
            "route GET,POST /api/v1/billing/quote" "function API inventory.count" "route GET /api/v1/inventory/watch (streams)"; do
  if grep -qF "$line" "$work/app"; then echo "ok: logged: $line"; else echo "missing in the log: $line"; fail=1; fi
done

# curl --no-buffer: the first of two events, 4 s apart, is there while the
# stream still runs (waited for with a deadline of 10 s).
curl -sN "$api/api/v1/echo/stream?message=tick&times=2&interval_ms=4000" >"$work/events" &
curl_pid=$!
pids+=($curl_pid)
deadline=$((SECONDS + 10))
until grep -q '^data: ' "$work/events" || [ $SECONDS -ge $deadline ]; do sleep 0.01; done
if [ "$(grep -c '^data: echo: tick' "$work/events")" = 1 ] && kill -0 $curl_pid 2>/dev/null; then
  echo "ok: an event arrived before the stream ended"
else
  echo "wrong: no event arrived while the stream ran"; cat "$work/events"; fail=1
fi
wait $curl_pid || true
check "both events in all" 2 "$(grep -c '^data: echo: tick' "$work/events")"

browse() {  # browse URL OUT
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile" --virtual-time-budget=5000 \
    --dump-dom "$1" >"$2" 2>"$work/chromium.log" || { cat "$work/chromium.log" >&2; exit 1; }
}
browse "$api/docs" "$work/docs.html"
for route in /api/v1/echo /api/v1/echo/stream /api/v1/inventory/count /api/v1/inventory/add /api/v1/inventory/watch \
             /api/v1/billing/quote /api/v1/total; do
  if grep -q "<code class=\"path\">$route</code>" "$work/docs.html"; then echo "ok: /docs lists $route"; else
    echo "missing from /docs: $route"; fail=1; fi
done
for plugin in echo inventory billing; do
  if grep -q "<td>$plugin</td>" "$work/docs.html"; then echo "ok: /docs lists plugin $plugin"; else
    echo "missing from /docs: plugin $plugin"; fail=1; fi
done
# The page's test request of a streaming route: an EventSource in Chromium.
browse "$api/docs?try=%2Fapi%2Fv1%2Fecho%2Fstream%3Fmessage%3Dhi%26times%3D3%26interval_ms%3D50" "$work/try.html"
check "Chromium's EventSource got the three events" 3 "$(grep -o '<div class="event">echo: hi</div>' "$work/try.html" | wc -l)"
if [ $fail -ne 0 ]; then
  echo "--- /docs as Chromium rendered it:"; cat "$work/docs.html"; exit 1
fi
