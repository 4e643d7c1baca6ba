// The dashboard's one page. The server writes the current stats in place of
// the STATS marker, so the first render needs no request; the page then polls
// /api/v1/stats every second.
#pragma once

namespace framex::detail {

inline constexpr const char* dashboard_page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>framex dashboard</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
  h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
  table { border-collapse: collapse; min-width: 40em; }
  th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
  th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .ready { color: #080; } .down { color: #b00; } .connecting { color: #a60; }
  #updated { color: #888; }
</style>
</head>
<body>
<h1>framex <span id="mode"></span></h1>
<p id="updated"></p>
<h2>Workers</h2>
<table id="workers"><thead><tr><th>address</th><th>source</th><th>state</th><th>last heard ms</th><th>in flight</th><th>completed</th><th>errors</th>
<th>p50 ms</th><th>p99 ms</th></tr></thead><tbody></tbody></table>
<h2>Functions</h2>
<table id="functions"><thead><tr><th>function</th><th>where</th><th>calls</th><th>errors</th><th>p50 ms</th>
<th>p99 ms</th></tr></thead><tbody></tbody></table>
<h2>Recent errors</h2>
<table id="errors"><thead><tr><th>when</th><th>function</th><th>message</th></tr></thead><tbody></tbody></table>
<script>
const initial = /*STATS*/null;
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}
function fill(id, items, columns) {
  const body = document.querySelector('#' + id + ' tbody');
  body.replaceChildren();
  for (const item of items) {
    const row = body.insertRow();
    for (const [key, cls] of columns) {
      const v = item[key];
      cell(row, typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v),
           cls === 'state' ? String(v) : cls);
    }
  }
}
function render(s) {
  document.getElementById('mode').textContent = '(' + s.mode + ' mode)';
  fill('workers', s.workers, [['address'], ['source'], ['state', 'state'], ['last_heard_ms', 'n'], ['in_flight', 'n'], ['completed', 'n'],
                              ['errors', 'n'], ['p50_ms', 'n'], ['p99_ms', 'n']]);
  fill('functions', s.functions, [['name'], ['where'], ['calls', 'n'], ['errors', 'n'], ['p50_ms', 'n'],
                                  ['p99_ms', 'n']]);
  fill('errors', s.recent_errors, [['when'], ['function'], ['message']]);
  document.getElementById('updated').textContent = 'updated ' + new Date().toISOString();
}
if (initial) render(initial);
setInterval(() => fetch('/api/v1/stats').then(r => r.json()).then(render).catch(() => {}), 1000);
</script>
</body>
</html>
)html";

}  // namespace framex::detail
