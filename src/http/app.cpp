// framex::app: the HTTP ingress (routes, built-ins) and the dashboard
// (an HTML page, `/api/v1/stats` as JSON, `/metrics` for Prometheus), each an
// http_server on the app's own io_context.
#include "framex/app.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "security/auth.hpp"
#include "http/dashboard_page.hpp"
#include "http/docs_page.hpp"
#include "http/http_server.hpp"
#include "plugins/plugin_host.hpp"

namespace framex {

namespace asio = boost::asio;
using detail::http_call;
using detail::http_reply;

namespace {

boost::json::object to_json(const stats_snapshot& s) {
  boost::json::object out;
  out["mode"] = s.mode == mode::local ? "local" : "distributed";
  boost::json::array workers;
  for (const auto& w : s.workers) {
    workers.push_back({{"address", w.address},
                       {"source", w.source},
                       {"state", w.state},
                       {"last_heard_ms", w.last_heard_ms},
                       {"in_flight", w.in_flight},
                       {"completed", w.completed},
                       {"errors", w.errors},
                       {"p50_ms", w.p50_ms},
                       {"p99_ms", w.p99_ms},
                       {"bytes_sent", w.bytes_sent}});
  }
  out["workers"] = std::move(workers);
  boost::json::array functions;
  for (const auto& f : s.functions) {
    functions.push_back({{"name", f.name},
                         {"where", f.remote ? "remote" : "local"},
                         {"calls", f.calls},
                         {"errors", f.errors},
                         {"p50_ms", f.p50_ms},
                         {"p99_ms", f.p99_ms}});
  }
  out["functions"] = std::move(functions);
  boost::json::array errors;
  for (const auto& e : s.recent_errors) errors.push_back({{"when", e.when}, {"function", e.function}, {"message", e.message}});
  out["recent_errors"] = std::move(errors);
  return out;
}

// Prometheus label values escape backslash, quote and newline.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? 'n' : c;
  }
  return out;
}

std::string to_prometheus(const stats_snapshot& s) {
  std::ostringstream o;
  o << "# HELP framex_calls_total Calls completed, by function.\n# TYPE framex_calls_total counter\n";
  for (const auto& f : s.functions) {
    o << "framex_calls_total{function=\"" << label(f.name) << "\",where=\"" << (f.remote ? "remote" : "local") << "\"} "
      << f.calls << "\n";
  }
  o << "# HELP framex_call_errors_total Calls that failed, by function.\n# TYPE framex_call_errors_total counter\n";
  for (const auto& f : s.functions) {
    o << "framex_call_errors_total{function=\"" << label(f.name) << "\",where=\"" << (f.remote ? "remote" : "local")
      << "\"} " << f.errors << "\n";
  }
  o << "# HELP framex_call_latency_seconds Call latency quantiles, by function.\n"
       "# TYPE framex_call_latency_seconds gauge\n";
  for (const auto& f : s.functions) {
    for (const auto& [q, v] : {std::pair{"0.5", f.p50_ms}, std::pair{"0.99", f.p99_ms}}) {
      o << "framex_call_latency_seconds{function=\"" << label(f.name) << "\",quantile=\"" << q << "\"} " << v / 1000
        << "\n";
    }
  }
  o << "# HELP framex_worker_up 1 when the connection to a worker is ready.\n# TYPE framex_worker_up gauge\n";
  for (const auto& w : s.workers) o << "framex_worker_up{worker=\"" << label(w.address) << "\"} " << (w.state == "ready") << "\n";
  o << "# HELP framex_worker_in_flight Calls in flight, by worker.\n# TYPE framex_worker_in_flight gauge\n";
  for (const auto& w : s.workers) o << "framex_worker_in_flight{worker=\"" << label(w.address) << "\"} " << w.in_flight << "\n";
  o << "# HELP framex_worker_calls_total Calls completed, by worker.\n# TYPE framex_worker_calls_total counter\n";
  for (const auto& w : s.workers) o << "framex_worker_calls_total{worker=\"" << label(w.address) << "\"} " << w.completed << "\n";
  o << "# HELP framex_worker_errors_total Calls failed, by worker.\n# TYPE framex_worker_errors_total counter\n";
  for (const auto& w : s.workers) o << "framex_worker_errors_total{worker=\"" << label(w.address) << "\"} " << w.errors << "\n";
  return o.str();
}

// JSON placed inside a <script> element: no character of it may end the element
// or start markup there (`</script>`, `<!--`), so <, > and & are written as
// JSON escapes, which mean the same to the script.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    switch (c) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default: out += c;
    }
  }
  return out;
}

void set_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

}  // namespace

class app::impl {
 public:
  explicit impl(const config& c) : cfg(c), guard(c.auth.rules, c.auth.dashboard_key), rt(c), scope(rt) {
    set_log_level(c.log.level);
    if (!c.print_only) plugins.emplace(c, false, &rt);  // --print-config runs no plugin code
  }

  // 401 unless the request carries one of `keys` (null: the path is public).
  static std::optional<http_reply> refuse_unless_admitted(const std::vector<std::string>* keys, const http_call& call,
                                                          const char* challenge) {
    if (keys == nullptr || detail::http_guard::admits(call.authorization, *keys)) return std::nullopt;
    http_reply r = detail::error_reply(401, call.authorization.empty() ? "this path needs a key in the Authorization header"
                                                                       : "the key in the Authorization header is not one this path takes");
    r.headers.emplace_back("WWW-Authenticate", challenge);
    return r;
  }

  struct route {
    std::vector<http_method> methods;
    detail::http_handler handler;
    detail::route_doc doc;
  };

  static bool allows(const std::vector<http_method>& methods, const std::string& method) {
    return std::any_of(methods.begin(), methods.end(), [&](http_method m) { return method == to_string(m); });
  }

  asio::awaitable<http_reply> dispatch(const std::string& method, const std::string& path, http_call& call) {
    if (auto refused = refuse_unless_admitted(guard.rule_for(path), call, "Bearer")) co_return std::move(*refused);
    if (path == "/health" || path == "/ping") co_return http_reply{200, R"({"status":"ok"})"};
    if (path == "/version") co_return http_reply{200, R"({"name":"framex","version":"0.1.0"})"};
    if (path == "/api/v1/openapi.json" && method == "GET") co_return http_reply{200, openapi()};
    if (path == "/docs" && method == "GET") co_return http_reply{200, std::string(detail::docs_page), "text/html; charset=utf-8"};
    if (const auto it = routes.find(path); it != routes.end()) {
      if (!allows(it->second.methods, method)) co_return detail::error_reply(405, method + " is not allowed on " + path);
      co_return co_await it->second.handler(call);
    }
    if (const auto* api = plugins->find_path(path)) {
      if (!allows(api->spec->methods, method)) co_return detail::error_reply(405, method + " is not allowed on " + path);
      co_return co_await plugins->serve(*api, call);
    }
    co_return detail::error_reply(404, "no route for " + path);
  }

  std::string openapi() const {
    std::vector<detail::plugin_host::route_info> own;
    for (const auto& [path, r] : routes) own.push_back({path, r.methods, r.doc});
    return plugins->openapi(own);
  }

  asio::awaitable<http_reply> dashboard(const std::string& method, const std::string& path, http_call& call) {
    if (path == "/health" || path == "/ping") co_return http_reply{200, R"({"status":"ok"})"};
    // A browser asks for the key as a password (any user name).
    if (auto refused = refuse_unless_admitted(guard.dashboard(), call, R"(Basic realm="framex dashboard")")) {
      co_return std::move(*refused);
    }
    if (method != "GET") co_return detail::error_reply(405, "the dashboard is read-only");
    const stats_snapshot s = stats(rt);
    if (path == "/" || path == "/index.html") {
      std::string page(detail::dashboard_page);
      const std::string marker = "/*STATS*/null";
      page.replace(page.find(marker), marker.size(), script_safe(boost::json::serialize(to_json(s))));
      co_return http_reply{200, std::move(page), "text/html; charset=utf-8"};
    }
    if (path == "/api/v1/stats") co_return http_reply{200, boost::json::serialize(to_json(s))};
    if (path == "/metrics") co_return http_reply{200, to_prometheus(s), "text/plain; version=0.0.4"};
    co_return detail::error_reply(404, "no such page: " + path);
  }

  void start() {
    if (ingress) return;
    if (!plugins) plugins.emplace(cfg, false, &rt);
    plugins->check([this](const std::string& path) { return routes.contains(path); });
    for (std::size_t i = 0; i < cfg.server.threads; ++i) threads.emplace_back([this] { io.run(); });
    try {
      asio::co_spawn(io, plugins->start(), asio::use_future).get();
    } catch (...) {
      work.reset();
      io.stop();
      for (auto& t : threads) t.join();
      threads.clear();
      throw;
    }
    plugins->log_summary();
    detail::http_server::options o{cfg.server.host,           cfg.server.port,
                                   cfg.server.body_limit,     cfg.server.read_timeout,
                                   cfg.server.header_timeout, cfg.server.max_connections,
                                   detail::tls_context_for(cfg.server.tls, net::tls_context::role::server, "server")};
    ingress.emplace(io, o, [this](const std::string& m, const std::string& p, http_call& c) { return dispatch(m, p, c); });
    o.host = cfg.server.dashboard_host;
    if (guard.dashboard() == nullptr && !detail::is_loopback(o.host)) {
      spdlog::warn("framex app: the dashboard listens on {} with no auth.dashboard_key: anyone who reaches it reads the "
                   "stats, recent errors and function names",
                   o.host);
    }
    o.port = cfg.server.dashboard_port;
    board.emplace(io, o, [this](const std::string& m, const std::string& p, http_call& c) { return dashboard(m, p, c); });
    const char* scheme = o.tls ? "https" : "http";
    spdlog::info("framex app: serving on {}://{}:{}, dashboard on {}://{}:{}/, {} mode", scheme, cfg.server.host, ingress->port(),
                 scheme, cfg.server.dashboard_host, board->port(), rt.current_mode() == mode::local ? "local" : "distributed");
  }

  // The order is what makes it safe: stop accepting; let requests in flight
  // finish (10 s at most); shut the runtime down, so calls still pending
  // complete with `cancelled` while the I/O threads still run to deliver them;
  // only then stop the I/O threads.
  void stop() {
    if (!ingress || stopped) return;
    stopped = true;
    ingress->stop();
    board->stop();
    for (int i = 0; i < 1000 && ingress->in_flight() + board->in_flight() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    plugins->stop();
    rt.shutdown();
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
  }

  config cfg;
  detail::http_guard guard;
  // Declared before the runtime: destroyed after it, so nothing the runtime
  // completes can reach a destroyed io_context.
  asio::io_context io;
  framex::runtime rt;
  runtime_scope scope;
  std::map<std::string, route> routes;
  std::optional<detail::plugin_host> plugins;
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(io)};
  std::optional<detail::http_server> ingress;
  std::optional<detail::http_server> board;
  std::vector<std::thread> threads;
  bool stopped = false;
};

app::app(const config& cfg) : impl_(std::make_unique<impl>(cfg)) {}
app::~app() { stop(); }

void app::add_route(std::string path, std::vector<http_method> methods, detail::http_handler handler,
                    detail::route_doc doc) {
  impl_->routes[std::move(path)] = {std::move(methods), std::move(handler), std::move(doc)};
}

void app::start() { impl_->start(); }

void app::run() {
  if (impl_->cfg.print_only) {
    std::fputs(impl_->cfg.describe().c_str(), stdout);
    return;
  }
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  start();
  signals_io.run();
  spdlog::info("framex app: stopping; requests in flight finish first");
  stop();
}

void app::stop() { impl_->stop(); }

std::uint16_t app::port() const noexcept { return impl_->ingress ? impl_->ingress->port() : 0; }
std::uint16_t app::dashboard_port() const noexcept { return impl_->board ? impl_->board->port() : 0; }
framex::runtime& app::runtime() noexcept { return impl_->rt; }

}  // namespace framex
