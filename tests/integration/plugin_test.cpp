// Plugins over real HTTP on 127.0.0.1: the billing plugin linked in, the same
// plugin loaded from billing.so, and deployed to two worker processes; config
// and load errors; cross-plugin calls; streams read piece by piece; the
// max_ongoing_requests bound; openapi.json.
#include "framex/plugin.hpp"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include <future>
#include <optional>
#include <set>
#include <thread>

#include "framex/framex.hpp"
#include "http_client.hpp"
#include "plugins/billing.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace {

using http_client::get;
using http_client::post;
using http_client::response;
namespace json = boost::json;
namespace asio = boost::asio;
using namespace std::chrono_literals;

// ---- plugins that must be refused ----
struct bad_name {
  int f() { return 1; }
};
struct clash {
  int f() { return 1; }
};
struct needy {
  int f() { return 1; }
};
struct miscounted {
  int f(int a, int b) { return a + b; }
};

}  // namespace

FRAMEX_PLUGIN(bad_name, framex::plugin_metadata{.name = "bad name!", .version = "1"},
              framex::on_request<&bad_name::f>("/bad"));
FRAMEX_PLUGIN(clash, framex::plugin_metadata{.name = "clash", .version = "1"}, framex::on_request<&clash::f>("/echo"));
FRAMEX_PLUGIN(needy, framex::plugin_metadata{.name = "needy", .version = "1", .required_apis = {"/api/v1/missing"}},
              framex::on_request<&needy::f>("/needy"));
FRAMEX_PLUGIN(miscounted, framex::plugin_metadata{.name = "miscounted", .version = "1"},
              framex::on_request<&miscounted::f>("/miscounted", {.params = {"a"}}));

namespace {

framex::config plugin_config(std::string billing = "billing") {
  framex::config cfg;
  cfg.server.port = 0;
  cfg.server.dashboard_port = 0;
  cfg.log.level = "warn";
  cfg.apply_toml(R"(
load_builtin_plugins = ["echo"]
load_plugins = [")" + billing + R"("]
plugins_strict = true
[plugins.echo]
prefix = "> "
[plugins.billing]
tax_percent = 10
currency = "CHF"
)",
                 "test");
  return cfg;
}

std::string message_of(const response& r) { return std::string(json::parse(r.body).at("message").as_string()); }

// What every way of running billing must pass.
void check_billing(framex::app& app) {
  const auto port = app.port();
  auto r = get(port, "/api/v1/billing/tax?cents=250");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "25");
  EXPECT_EQ(post(port, "/api/v1/billing/tax", R"({"cents": 1000})").body, "100");
  r = post(port, "/api/v1/billing/invoice", R"({"customer": "ada", "cents": [100, 200, 700]})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto inv = json::parse(r.body).as_object();
  EXPECT_EQ(inv.at("customer").as_string(), "ada");
  EXPECT_EQ(inv.at("total_cents").as_int64(), 1100);
  EXPECT_EQ(inv.at("currency").as_string(), "CHF");
  r = post(port, "/api/v1/billing/invoice", R"({"customer": "ada"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message_of(r), "parameter 'cents' is missing");
  r = get(port, "/api/v1/billing/tax?cents=many");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(message_of(r).find("parameter 'cents'"), std::string::npos) << r.body;
  EXPECT_EQ(get(port, "/api/v1/billing/invoice").status, 405);
  // Cross-plugin, by name and by path.
  r = get(port, "/api/v1/billing/greet?name=bo");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"("I said: > bo / > bo")");
  // A stream, whole (the gate is open).
  r = get(port, "/api/v1/billing/countdown?from=3");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "3\n2\n1\n");
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");

  // Function APIs, from a coroutine of this process.
  const int tax = framex::test::run([]() { return framex::call_plugin_api<int>("billing.tax", {{"cents", 500}}); });
  EXPECT_EQ(tax, 50);
  const auto by_path = framex::test::run([]() { return framex::call_plugin_api<json::value>("/api/v1/billing/tax", {{"cents", 90}}); });
  EXPECT_EQ(by_path, json::value(9));
  const auto typed = framex::test::run([]() {
    return framex::plugin_api<&billing::plugin::make_invoice>.remote(billing::invoice_request{"cy", {10, 10}});
  });
  EXPECT_EQ(typed.total_cents, 22);
  EXPECT_EQ(typed.currency, "CHF");
  EXPECT_EQ(framex::test::run([]() { return framex::plugin_api<&billing::plugin::tax>.remote(70); }), 7);
  const auto missing = framex::test::run([]() {
    return framex::test::error_of(framex::call_plugin_api<int>("billing.nothing", {}));
  });
  EXPECT_EQ(missing, framex::errc::unknown_function);
  const auto wrong = framex::test::run([]() {
    return framex::test::error_of(framex::call_plugin_api<int>("billing.tax", {{"cents", "x"}}));
  });
  EXPECT_EQ(wrong, framex::errc::bad_arguments);
  const auto wrong_result = framex::test::run([]() {
    return framex::test::error_of(framex::call_plugin_api<std::vector<int>>("billing.tax", {{"cents", 1}}));
  });
  EXPECT_EQ(wrong_result, framex::errc::bad_arguments);
}

// GET /api/v1/billing/countdown?from=N over a socket, read up to a marker
// at a time (a read that does not find it ends at a 20 s deadline).
struct countdown_reader {
  countdown_reader(std::uint16_t port, int from) : socket(io) {
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(socket, asio::buffer("GET /api/v1/billing/countdown?from=" + std::to_string(from) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  // False when the connection ended first.
  bool read_until(const std::string& end) {
    asio::steady_timer deadline(io, 20s);
    deadline.async_wait([&](boost::system::error_code ec) {
      if (!ec) socket.close();
    });
    boost::system::error_code result;
    asio::async_read_until(socket, asio::dynamic_buffer(received), end, [&](boost::system::error_code ec, std::size_t) {
      deadline.cancel();
      result = ec;
    });
    io.restart();
    io.run();
    return !result;
  }
  asio::io_context io;
  asio::ip::tcp::socket socket;
  std::string received;
};

// What came while billing's gate was closed (the head and the first piece: a
// server that held the body back would send nothing), then all of it once the
// gate opened.
std::pair<std::string, std::string> read_countdown(std::uint16_t port, int from) {
  billing::gate_open = false;
  struct reopen {
    ~reopen() { billing::gate_open = true; }
  } reopen_gate;
  countdown_reader reader(port, from);
  EXPECT_TRUE(reader.read_until(std::to_string(from) + "\n"));
  std::string before_gate = reader.received;
  billing::gate_open = true;
  EXPECT_TRUE(reader.read_until("\r\n0\r\n\r\n"));
  return {before_gate, reader.received};
}

// An app may end while a plugin's stream waits for its next piece: the
// connection closes without the last chunk, and what the request held of the
// plugin (its max_ongoing_requests slot) is released safely after the app's
// plugins are gone (ASan checks that).
TEST(Plugins, AnAppMayEndWhileAStreamWaits) {
  billing::gate_open = false;
  struct reopen {
    ~reopen() { billing::gate_open = true; }
  } reopen_gate;
  std::optional<countdown_reader> reader;
  {
    framex::app app{plugin_config()};
    app.start();
    reader.emplace(app.port(), 3);
    ASSERT_TRUE(reader->read_until("3\n"));
  }
  EXPECT_FALSE(reader->read_until("\r\n0\r\n\r\n"));
  EXPECT_EQ(reader->received.find("2\n"), std::string::npos) << reader->received;
}

TEST(Plugins, ALinkedInPluginServesItsHttpAndFunctionApis) {
  const int starts = billing::starts, stops = billing::stops;
  {
    framex::app app{plugin_config()};
    app.start();
    EXPECT_EQ(billing::starts, starts + 1);
    check_billing(app);
    const int where = framex::test::run([]() { return framex::call_plugin_api<int>("billing.where", {}); });
    EXPECT_EQ(where, ::getpid());
  }
  EXPECT_EQ(billing::stops, stops + 1);
}

TEST(Plugins, TheSamePluginLoadsFromASharedLibrary) {
  framex::app app{plugin_config(FRAMEX_BILLING_PLUGIN)};
  app.start();
  check_billing(app);
  const auto doc = json::parse(get(app.port(), "/api/v1/openapi.json").body);
  bool listed = false;
  for (const auto& p : doc.at("x-framex-plugins").as_array()) {
    if (p.at("name") == "billing") listed = p.at("source") == FRAMEX_BILLING_PLUGIN;
  }
  EXPECT_TRUE(listed) << doc;
}

TEST(Plugins, DeployedToTwoWorkersTheyPassTheSameChecks) {
  const std::vector<std::string> env{"FRAMEX_LOAD_BUILTIN_PLUGINS=echo", "FRAMEX_LOAD_PLUGINS=billing",
                                     "FRAMEX_PLUGINS__BILLING__DEPLOY=workers", "FRAMEX_PLUGINS__BILLING__TAX_PERCENT=10",
                                     "FRAMEX_PLUGINS__BILLING__CURRENCY=CHF", "FRAMEX_PLUGINS__ECHO__PREFIX=> "};
  framex::test::worker_process w1(0, env), w2(0, env);
  framex::config cfg = plugin_config();
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {w1.address(), w2.address()};
  cfg.apply("plugins.billing.deploy", "workers", "test");
  framex::app app{cfg};
  app.start();
  const int starts = billing::starts;
  check_billing(app);
  EXPECT_EQ(billing::starts, starts);  // not made here
  std::set<int> where;
  for (int i = 0; i < 40 && where.size() < 2; ++i) {
    std::vector<std::future<int>> calls;
    for (int j = 0; j < 8; ++j) {
      calls.push_back(std::async(std::launch::async, [] {
        return framex::test::run([]() { return framex::call_plugin_api<int>("billing.where", {}); });
      }));
    }
    for (auto& c : calls) where.insert(c.get());
  }
  EXPECT_FALSE(where.contains(::getpid()));
  EXPECT_TRUE(where.contains(w1.pid()) || where.contains(w2.pid()));
  for (int pid : where) EXPECT_TRUE(pid == w1.pid() || pid == w2.pid()) << pid;
}

// --print-config prints and runs no plugin code: a plugin that cannot even be
// loaded, under plugins_strict, stops nothing.
TEST(Plugins, PrintConfigLoadsNoPlugin) {
  framex::config cfg;
  cfg.log.level = "off";
  cfg.apply_toml("plugins_strict = true\nload_plugins = [\"/nonexistent/libgone.so\"]", "test");
  cfg.print_only = true;
  std::string printed;
  EXPECT_NO_THROW({
    framex::app app{cfg};
    testing::internal::CaptureStdout();
    app.run();
    printed = testing::internal::GetCapturedStdout();
  });
  EXPECT_NE(printed.find("/nonexistent/libgone.so"), std::string::npos) << printed;
}

TEST(Plugins, LoadErrorsNameThePluginAndTheReason) {
  const auto refused = [](const std::string& toml) -> std::string {
    framex::config cfg;
    cfg.server.port = 0;
    cfg.server.dashboard_port = 0;
    cfg.log.level = "off";
    cfg.apply_toml("plugins_strict = true\n" + toml, "test");
    try {
      framex::app app{cfg};
      app.start();
    } catch (const framex::config_error& e) {
      return e.what();
    }
    return "(started)";
  };
  EXPECT_NE(refused(R"(load_plugins = ["/nonexistent/libgone.so"])").find("plugin /nonexistent/libgone.so: cannot be loaded"),
            std::string::npos);
  EXPECT_NE(refused(R"(load_plugins = [")" FRAMEX_NOT_A_PLUGIN R"("])").find("exports no framex_plugin_descriptor"),
            std::string::npos);
  EXPECT_NE(refused(R"(load_plugins = ["nobody"])").find("plugin nobody: no plugin of that name is linked"),
            std::string::npos);
  EXPECT_NE(refused(R"(load_plugins = ["bad name!"])").find("is not 1 to 64 letters"), std::string::npos);
  EXPECT_NE(refused(R"(load_plugins = ["miscounted"])").find("name each of its 2 parameters"), std::string::npos)
      << refused(R"(load_plugins = ["miscounted"])");
  EXPECT_NE(refused("load_builtin_plugins = [\"echo\"]\nload_plugins = [\"clash\"]")
                .find("plugin clash: its route /api/v1/echo is a route of plugin echo"),
            std::string::npos);
  EXPECT_NE(refused("load_plugins = [\"needy\"]").find("plugin needy: it requires the API /api/v1/missing"),
            std::string::npos);
  EXPECT_NE(refused("load_plugins = [\"billing\"]").find("plugin billing: it requires the API echo.confess"),
            std::string::npos);
  EXPECT_NE(refused("load_builtin_plugins = [\"echo\"]\nload_plugins = [\"billing\"]\n[plugins.billing]\ntax = 1")
                .find("plugins.billing: unknown key \"tax\" (the plugin takes tax_percent, currency)"),
            std::string::npos);
  EXPECT_NE(refused("load_builtin_plugins = [\"echo\"]\nload_plugins = [\"billing\"]\n[plugins.billing]\ntax_percent = \"x\"")
                .find("plugins.billing.tax_percent"),
            std::string::npos);

  // Not strict: reported and left out; the rest serve.
  framex::config cfg = plugin_config();
  cfg.plugins.strict = false;
  cfg.log.level = "off";
  cfg.plugins.load = {"needy", "/nonexistent/libgone.so", "billing", "clash"};
  framex::app app{cfg};
  app.start();
  EXPECT_EQ(get(app.port(), "/api/v1/needy").status, 404);
  EXPECT_EQ(get(app.port(), "/api/v1/billing/tax?cents=10").body, "1");
  EXPECT_EQ(get(app.port(), "/api/v1/echo?message=x").body, R"("> x")");
}

int twice(int x) { return 2 * x; }

TEST(Plugins, AnAppRouteAndAPluginRouteMayNotShareAPath) {
  framex::config cfg = plugin_config();
  framex::app app{cfg};
  app.on_request("/api/v1/billing/tax", &twice, {.params = {"x"}});
  EXPECT_THROW(app.start(), framex::config_error);
}

TEST(Plugins, AStreamIsSentPieceByPiece) {
  framex::app app{plugin_config()};
  app.start();
  const auto [before_gate, all] = read_countdown(app.port(), 3);
  EXPECT_NE(before_gate.find("Transfer-Encoding: chunked"), std::string::npos) << before_gate;
  EXPECT_NE(before_gate.find("\r\n3\n"), std::string::npos) << before_gate;
  EXPECT_EQ(before_gate.find("2\n"), std::string::npos) << before_gate;
  EXPECT_NE(all.find("2\n"), std::string::npos) << all;
  EXPECT_NE(all.find("1\n"), std::string::npos) << all;

  // Server-Sent Events from echo.
  const auto r = get(app.port(), "/api/v1/echo/stream?message=hi&times=3&interval_ms=0");
  EXPECT_EQ(r.content_type, "text/event-stream");
  EXPECT_EQ(r.body, "data: > hi\n\ndata: > hi\n\ndata: > hi\n\n");
}

// `hold` calls of billing are let in while the gate is closed, the next one
// gets 503 with Retry-After (and a function call `overloaded`); echo's bound
// is its own. `bound` is billing's: the base default of all, or billing's own.
void check_bound(const std::string& toml, int bound) {
  framex::config cfg = plugin_config();
  cfg.apply_toml(toml, "test");
  framex::app app{cfg};
  app.start();
  billing::gate_open = false;
  struct reopen {
    ~reopen() { billing::gate_open = true; }
  } reopen_gate;
  const int held = billing::holding;
  std::vector<std::future<response>> holds;
  for (int i = 0; i < bound; ++i) {
    holds.push_back(std::async(std::launch::async, [&] { return get(app.port(), "/api/v1/billing/hold?value=5"); }));
  }
  ASSERT_TRUE(framex::test::eventually([&] { return billing::holding == held + bound; }));
  const auto r = get(app.port(), "/api/v1/billing/tax?cents=10");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.retry_after, "1");
  EXPECT_NE(message_of(r).find("max_ongoing_requests (" + std::to_string(bound) + ")"), std::string::npos) << r.body;
  const auto code = framex::test::run([]() {
    return framex::test::error_of(framex::call_plugin_api<int>("billing.tax", {{"cents", 1}}));
  });
  EXPECT_EQ(code, framex::errc::overloaded);
  EXPECT_EQ(get(app.port(), "/api/v1/echo?message=x").status, 200);  // the bound is billing's
  billing::gate_open = true;
  for (auto& h : holds) EXPECT_EQ(h.get().body, "5");
  EXPECT_EQ(get(app.port(), "/api/v1/billing/tax?cents=10").status, 200);
}

TEST(Plugins, BeyondMaxOngoingRequestsCallsGet503AndOverloaded) {
  check_bound("[plugins]\nmax_ongoing_requests = 1", 1);                                   // the base default
  check_bound("[plugins]\nmax_ongoing_requests = 1\n[plugins.billing]\nmax_ongoing_requests = 2", 2);  // its own
}

TEST(Plugins, OpenApiDescribesEveryRouteAndDocsIsServed) {
  framex::config cfg = plugin_config();
  framex::app app{cfg};
  app.on_request("/api/v1/twice", &twice, {.params = {"x"}, .summary = "Twice x"});
  app.start();
  const auto r = get(app.port(), "/api/v1/openapi.json");
  ASSERT_EQ(r.status, 200);
  const auto doc = json::parse(r.body).as_object();
  EXPECT_EQ(doc.at("openapi").as_string().subview().substr(0, 4), "3.0.");
  EXPECT_TRUE(doc.at("info").at("title").is_string());
  EXPECT_TRUE(doc.at("info").at("version").is_string());
  const auto& paths = doc.at("paths").as_object();
  for (const char* p : {"/api/v1/twice", "/api/v1/echo", "/api/v1/echo/stream", "/api/v1/billing/tax",
                        "/api/v1/billing/invoice", "/api/v1/billing/greet", "/api/v1/billing/countdown"}) {
    ASSERT_TRUE(paths.contains(p)) << p;
  }
  for (const auto& [path, item] : paths) {
    EXPECT_TRUE(path.starts_with("/")) << path;
    for (const auto& [method, op] : item.as_object()) {
      EXPECT_TRUE(method == "get" || method == "post") << method;
      EXPECT_TRUE(op.at("responses").as_object().contains("200")) << path;
      for (const auto& [status, resp] : op.at("responses").as_object()) EXPECT_TRUE(resp.at("description").is_string());
      if (const auto* params = op.as_object().if_contains("parameters")) {
        for (const auto& p : params->as_array()) {
          EXPECT_TRUE(p.at("name").is_string());
          EXPECT_EQ(p.at("in"), "query");
          EXPECT_TRUE(p.at("schema").is_object());
        }
      }
      if (const auto* body = op.as_object().if_contains("requestBody")) {
        EXPECT_TRUE(body->at("content").at("application/json").at("schema").is_object());
      }
    }
  }
  EXPECT_EQ(paths.at("/api/v1/twice").at("get").at("summary"), "Twice x");
  // 503 is a plugin's answer at its max_ongoing_requests, not the app's own routes'.
  EXPECT_FALSE(paths.at("/api/v1/twice").at("get").at("responses").as_object().contains("503"));
  EXPECT_TRUE(paths.at("/api/v1/billing/tax").at("get").at("responses").as_object().contains("503"));
  EXPECT_EQ(paths.at("/api/v1/billing/tax").at("get").at("parameters").at(0).at("schema").at("type"), "integer");
  const auto& invoice = paths.at("/api/v1/billing/invoice").at("post").at("requestBody").at("content").at("application/json").at("schema");
  EXPECT_EQ(invoice.at("properties").at("cents").at("type"), "array");
  EXPECT_EQ(invoice.at("properties").at("cents").at("items").at("type"), "integer");
  EXPECT_TRUE(paths.at("/api/v1/echo/stream").at("get").at("responses").at("200").at("content").as_object().contains(
      "text/event-stream"));
  bool billing_listed = false;
  for (const auto& p : doc.at("x-framex-plugins").as_array()) {
    if (p.at("name") != "billing") continue;
    billing_listed = true;
    EXPECT_EQ(p.at("version"), "2.1.0");
    EXPECT_EQ(p.at("author"), "framex tests");
    std::set<std::string> functions;
    for (const auto& f : p.at("function_apis").as_array()) functions.emplace(f.at("name").as_string());
    EXPECT_EQ(functions, (std::set<std::string>{"billing.tax", "billing.invoice", "billing.hold", "billing.where"}));
  }
  EXPECT_TRUE(billing_listed);
  const auto page = get(app.port(), "/docs");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("/api/v1/openapi.json"), std::string::npos);
}

}  // namespace

namespace {

// The proxy in front of two real framex apps: round-robin past a dead
// upstream, allow and deny rules, the upstream's key, streams passed through
// piece by piece.
TEST(Plugins, TheProxyForwardsToRealUpstreams) {
  framex::config up = plugin_config();
  up.apply("auth.rules", "/api/v1/billing/*=s3cret-0123456789abcdef", "test");
  framex::app first{up};
  up.apply("plugins.billing.currency", "EUR", "test");  // tells the two apart
  framex::app second{up};
  first.start();
  second.start();
  std::uint16_t dead_port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = a.local_endpoint().port();
  }  // closed: connecting there is refused

  const auto front_config = [&](const std::string& key) {
    framex::config cfg;
    cfg.server.port = 0;
    cfg.server.dashboard_port = 0;
    cfg.log.level = "off";
    cfg.apply_toml(R"(
load_builtin_plugins = ["proxy", "echo"]
plugins_strict = true
[plugins.proxy]
upstreams = ["http://127.0.0.1:)" + std::to_string(dead_port) + R"(", "http://127.0.0.1:)" +
                       std::to_string(first.port()) + R"(", "http://127.0.0.1:)" + std::to_string(second.port()) + R"("]
allow = ["/api/v1/billing/*"]
deny = ["/api/v1/billing/hold*"]
auth_key = ")" + key + R"("
timeout_ms = 10000
)",
                   "test");
    return cfg;
  };
  framex::app front{front_config("s3cret-0123456789abcdef")};
  front.start();
  const auto port = front.port();
  EXPECT_EQ(get(port, "/api/v1/billing/tax?cents=250").body, "25");
  EXPECT_EQ(post(port, "/api/v1/billing/invoice", R"({"customer": "ada", "cents": [100]})").status, 200);
  const auto bad = get(port, "/api/v1/billing/tax?cents=x");  // the upstream's 400, as it is
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(message_of(bad).find("parameter 'cents'"), std::string::npos) << bad.body;
  EXPECT_EQ(get(port, "/api/v1/echo?message=here").body, R"("here")");  // its own routes first
  EXPECT_EQ(get(port, "/api/v1/billing/hold?value=1").status, 404);       // denied
  // ... however its path is spelled: rules see it normalized, and so does the upstream.
  EXPECT_EQ(get(port, "/api/v1/billing/tax/../hold?value=1").status, 404);
  EXPECT_EQ(get(port, "/api/v1/billing/tax/%2e%2e/%68old?value=1").status, 404);
  EXPECT_EQ(get(port, "/api/v1/other/../billing/tax?cents=250").body, "25");
  EXPECT_EQ(get(port, "/api/v1/other").status, 404);                      // not allowed
  // Round-robin past the dead one: both live upstreams answer.
  std::set<std::string> currencies;
  for (int i = 0; i < 6; ++i) {
    const auto r = post(port, "/api/v1/billing/invoice", R"({"customer": "ada", "cents": [100]})");
    currencies.emplace(json::parse(r.body).at("currency").as_string());
  }
  EXPECT_EQ(currencies, (std::set<std::string>{"CHF", "EUR"}));

  // A stream, passed through as it comes.
  const auto [before_gate, all] = read_countdown(port, 2);
  EXPECT_EQ(before_gate.find("1\n"), std::string::npos) << before_gate;
  EXPECT_NE(all.find("1\n"), std::string::npos) << all;

  // Without the upstream's key: its 401, as it is.
  framex::app keyless{front_config("")};
  keyless.start();
  EXPECT_EQ(get(keyless.port(), "/api/v1/billing/tax?cents=250").status, 401);
}

TEST(Plugins, TheProxyRefusesABadConfiguration) {
  for (const char* upstreams : {R"([])", R"(["ftp://x:1"])", R"(["https://x:1"])", R"(["http://x:99999"])"}) {
    framex::config cfg;
    cfg.log.level = "off";
    cfg.apply_toml(std::string("load_builtin_plugins = [\"proxy\"]\nplugins_strict = true\n[plugins.proxy]\nupstreams = ") +
                       upstreams,
                   "test");
    EXPECT_THROW(framex::app{cfg}, framex::config_error) << upstreams;
  }
}

}  // namespace
