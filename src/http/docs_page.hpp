// The /docs page: built in the browser from /api/v1/openapi.json (nothing
// from elsewhere). Lists the plugins, every route with its parameters and
// function APIs, and sends a test request from a form; a streaming route's
// events are shown as they arrive. `/docs?try=/api/v1/x?a=1` sends that
// request once the page is built.
#pragma once

namespace framex::detail {

inline constexpr const char* docs_page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>framex API</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
  h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
  table { border-collapse: collapse; } th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
  th { background: #f4f4f4; } code { background: #f4f4f4; padding: 0 3px; }
  .route { border: 1px solid #ddd; border-radius: 4px; padding: 8px 12px; margin: 10px 0; }
  .method { font-weight: bold; color: #06c; margin-right: 6px; }
  pre { background: #f8f8f8; padding: 6px; white-space: pre-wrap; min-height: 1em; }
  label { display: inline-block; min-width: 9em; }
</style>
</head>
<body>
<h1>framex API</h1>
<p>From <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
<h2>Plugins</h2>
<table id="plugins"><thead><tr><th>Plugin</th><th>Version</th><th>Description</th><th>Runs</th><th>Routes</th><th>Function APIs</th></tr></thead><tbody></tbody></table>
<h2>Routes</h2>
<div id="routes"></div>
<script>
"use strict";
const el = (tag, attrs, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const typeName = (s) => !s ? "any" : s.type === "array" ? typeName(s.items) + "[]" : (s.type || "any");

function send(path, method, op, form, out) {
  const values = {};
  for (const input of form.querySelectorAll("input")) {
    if (input.value === "") continue;
    let v = input.value;
    if (input.dataset.type !== "string") { try { v = JSON.parse(v); } catch (e) {} }
    values[input.name] = v;
  }
  run(path, method, op, values, out);
}

function run(path, method, op, values, out) {
  out.textContent = "";
  const streams = op.responses["200"].content && op.responses["200"].content["text/event-stream"];
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) query.set(k, typeof v === "string" ? v : JSON.stringify(v));
  if (streams && method === "get") {
    const source = new EventSource(path + "?" + query);
    source.onmessage = (e) => out.append(el("div", {class: "event"}, e.data));
    source.onerror = () => { source.close(); out.append(el("div", {class: "end"}, "(stream ended)")); };
    return;
  }
  const init = method === "get" ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(values)};
  fetch(method === "get" ? path + "?" + query : path, init)
    .then(async (r) => { out.textContent = r.status + " " + await r.text(); })
    .catch((e) => { out.textContent = "failed: " + e; });
}

const routes = [];
function render(doc) {
  const body = document.querySelector("#plugins tbody");
  for (const p of doc["x-framex-plugins"] || []) {
    body.append(el("tr", {},
      el("td", {}, p.name), el("td", {}, p.version), el("td", {}, p.description), el("td", {}, p.runs_on),
      el("td", {}, p.routes.join(" ")),
      el("td", {}, p.function_apis.map((f) => f.name + "(" + Object.keys(f.params).join(", ") + ")").join(" "))));
  }
  const box = document.getElementById("routes");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const form = el("form", {});
      const params = method === "get"
        ? (op.parameters || []).map((p) => [p.name, p.schema])
        : Object.entries(((op.requestBody || {}).content || {})["application/json"]?.schema?.properties || {});
      for (const [name, schema] of params) {
        form.append(el("div", {}, el("label", {}, name + " (" + typeName(schema) + ")"),
                       el("input", {name, "data-type": (schema && schema.type) || "any"})));
      }
      const out = el("pre", {class: "out"});
      const button = el("button", {type: "submit"}, "Send");
      form.append(button);
      form.addEventListener("submit", (e) => { e.preventDefault(); send(path, method, op, form, out); });
      box.append(el("div", {class: "route"},
        el("div", {}, el("span", {class: "method"}, method.toUpperCase()), el("code", {class: "path"}, path),
           op.tags ? " (" + op.tags.join(", ") + ")" : ""),
        op.summary ? el("p", {}, op.summary) : "", form, out));
      routes.push({path, method, op, out});
    }
  }
  const wanted = new URLSearchParams(location.search).get("try");
  if (wanted) {
    const [path, query] = wanted.split("?");
    const r = routes.find((r) => r.path === path && r.method === "get") || routes.find((r) => r.path === path);
    if (r) run(r.path, r.method, r.op, Object.fromEntries(new URLSearchParams(query || "")), r.out);
  }
}
fetch("/api/v1/openapi.json").then((r) => r.json()).then(render)
  .catch((e) => document.body.append(el("p", {}, "could not read openapi.json: " + e)));
</script>
</body>
</html>
)html";

}  // namespace framex::detail
