// framex::app over real HTTP on 127.0.0.1, with a Beast client: route binding,
// every error status, the built-ins, the dashboard's JSON and /metrics, in
// local mode and against real worker processes.
#include "framex/app.hpp"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/describe.hpp>
#include <boost/json/parse.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "framex/framex.hpp"
#include "http/http_server.hpp"
#include "http_client.hpp"
#include "tls_certs.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;

// ---- the handlers (global names: the wire names of what they call) ----

struct order {
  std::string item;
  int quantity = 0;
};
BOOST_DESCRIBE_STRUCT(order, (), (item, quantity))
struct receipt {
  std::string item;
  int total = 0;
  std::string served_by;
};
BOOST_DESCRIBE_STRUCT(receipt, (), (item, total, served_by))

int price_of(std::string item, int quantity) {
  if (item == "nothing") throw std::invalid_argument("nothing is not for sale");
  if (quantity == 0) throw std::invalid_argument("no quantity of " + item);
  return static_cast<int>(item.size()) * quantity;
}
std::string served_where() { return std::to_string(::getpid()); }
int http_sleep(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

asio::awaitable<receipt> place(order o) {
  const int total = co_await framex::remote<&price_of>.remote(o.item, o.quantity);
  const std::string where = co_await framex::remote<&served_where>.remote();
  co_return receipt{o.item, total, where};
}
int multiply(int a, int b) { return a * b; }
std::string greet(std::string name, bool loud) { return loud ? "HELLO " + name : "hello " + name; }
std::atomic<int> waits_started{0};
asio::awaitable<int> wait_for(int ms) {
  ++waits_started;
  co_return co_await framex::remote<&http_sleep>.remote(ms);
}
asio::awaitable<int> too_slow(int ms) { co_return co_await framex::remote<&http_sleep>.with({.timeout = 50ms}).remote(ms); }

namespace {

using http_client::get;
using http_client::post;
using http_client::request;
using http_client::response;
using http_client::response_headers;

framex::config app_config() {
  framex::config cfg;
  cfg.server.port = 0;
  cfg.server.dashboard_port = 0;
  cfg.server.body_limit = 4096;
  cfg.log.level = "warn";
  return cfg;
}

void add_routes(framex::app& app) {
  app.on_request("/api/v1/orders", &place, {.methods = {framex::http_method::post}})
      .on_request("/api/v1/multiply", &multiply, {.params = {"a", "b"}})
      .on_request("/api/v1/greet", &greet, {.params = {"name", "loud"}, .methods = {framex::http_method::get}})
      .on_request("/api/v1/slow", &too_slow, {.params = {"ms"}})
      .on_request("/api/v1/wait", &wait_for, {.params = {"ms"}});
}

std::string message_of(const response& r) { return std::string(boost::json::parse(r.body).at("message").as_string()); }

// The assertions both modes share.
void check_routes(std::uint16_t port) {
  auto r = get(port, "/api/v1/multiply?a=6&b=7");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "42");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(post(port, "/api/v1/multiply", R"({"a": 3, "b": 5})").body, "15");
  EXPECT_EQ(get(port, "/api/v1/greet?name=ada%20l&loud=true").body, R"("HELLO ada l")");

  r = post(port, "/api/v1/orders", R"({"item": "tea", "quantity": 4})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto receipt = boost::json::parse(r.body).as_object();
  EXPECT_EQ(receipt.at("item").as_string(), "tea");
  EXPECT_EQ(receipt.at("total").as_int64(), 12);

  r = get(port, "/api/v1/multiply?a=6");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message_of(r), "parameter 'b' is missing");
  r = get(port, "/api/v1/multiply?a=six&b=1");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(message_of(r).find("parameter 'a'"), std::string::npos) << r.body;
  r = post(port, "/api/v1/orders", R"({"item": "tea"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message_of(r), "parameter 'quantity' is missing");
  r = post(port, "/api/v1/orders", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(get(port, "/api/v1/nowhere").status, 404);
  r = post(port, "/api/v1/greet", R"({"name": "x", "loud": false})");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(boost::json::parse(r.body).at("status").as_int64(), 405);
  r = post(port, "/api/v1/orders", R"({"item": ")" + std::string(5000, 'x') + R"(", "quantity": 1})");
  EXPECT_EQ(r.status, 413);
  r = post(port, "/api/v1/orders", R"({"item": "</script><script>document.title='owned'</script>", "quantity": 0})");
  r = post(port, "/api/v1/orders", R"({"item": "nothing", "quantity": 1})");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(message_of(r).find("nothing is not for sale"), std::string::npos) << r.body;  // that text is logged
  EXPECT_NE(message_of(r).find("logged it as error "), std::string::npos) << r.body;
  EXPECT_GT(boost::json::parse(r.body).at("error_id").to_number<std::uint64_t>(), 0u);
  r = request(port, http::verb::post, "/api/v1/orders", R"({"item": "tea", "quantity": 2})",
              "application/x-www-form-urlencoded");  // what `curl -d` sends
  EXPECT_EQ(r.status, 200) << r.body;
  r = request(port, http::verb::post, "/api/v1/orders", "item=tea&quantity=2", "application/x-www-form-urlencoded");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(message_of(r).find("must be JSON"), std::string::npos) << r.body;
  r = post(port, "/api/v1/orders", R"({"item": 1, "quantity": 2})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(message_of(r).find("parameter 'item'"), std::string::npos) << r.body;
  EXPECT_EQ(message_of(r).find("missing"), std::string::npos) << r.body;
  r = get(port, "/api/v1/slow?ms=400");
  EXPECT_EQ(r.status, 504);

  EXPECT_EQ(get(port, "/health").status, 200);
  EXPECT_EQ(get(port, "/ping").body, R"({"status":"ok"})");
  EXPECT_NE(get(port, "/version").body.find("framex"), std::string::npos);
}

TEST(HttpPath, OneFormForEveryRuleRouteAndProxy) {
  using framex::detail::normalized_path;
  EXPECT_EQ(normalized_path("/"), "/");
  EXPECT_EQ(normalized_path("/api/v1/run"), "/api/v1/run");
  EXPECT_EQ(normalized_path("/api/v1/pub/../admin/x"), "/api/v1/admin/x");
  EXPECT_EQ(normalized_path("/api/v1/pub/%2e%2e/internal/x"), "/api/v1/internal/x");
  EXPECT_EQ(normalized_path("/api/v1/pub/%69nternal/x"), "/api/v1/pub/internal/x");
  EXPECT_EQ(normalized_path("/a/./b//c/"), "/a/b/c/");
  EXPECT_EQ(normalized_path("/a/b/.."), "/a/");
  EXPECT_EQ(normalized_path("/a%20b%7e%3f"), "/a%20b~%3F");
  for (const char* refused : {"", "api", "/..", "/a/../..", "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00", "/a%4", "/a%zz"}) {
    EXPECT_EQ(normalized_path(refused), "") << refused;
  }
}

TEST(App, RoutesBindQueryAndJsonParametersAndReportEachErrorStatusLocally) {
  framex::app app{app_config()};
  add_routes(app);
  app.start();
  check_routes(app.port());
  const auto receipt = boost::json::parse(post(app.port(), "/api/v1/orders", R"({"item":"a","quantity":1})").body);
  EXPECT_EQ(receipt.at("served_by").as_string(), std::to_string(::getpid()));  // local: this process
}

TEST(App, TheSameRoutesWorkInDistributedMode) {
  framex::test::worker_process w1, w2;
  framex::config cfg = app_config();
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {w1.address(), w2.address()};
  framex::app app{cfg};
  add_routes(app);
  app.start();
  check_routes(app.port());
  const auto receipt = boost::json::parse(post(app.port(), "/api/v1/orders", R"({"item":"a","quantity":1})").body);
  const std::string by(receipt.at("served_by").as_string());
  EXPECT_TRUE(by == std::to_string(w1.pid()) || by == std::to_string(w2.pid())) << by;

  // The dashboard's data: both workers, the remote functions, the failures.
  const auto stats = boost::json::parse(get(app.dashboard_port(), "/api/v1/stats").body).as_object();
  EXPECT_EQ(stats.at("mode").as_string(), "distributed");
  const auto& workers = stats.at("workers").as_array();
  ASSERT_EQ(workers.size(), 2u);
  std::uint64_t completed = 0;
  for (const auto& w : workers) {
    const auto& o = w.as_object();
    EXPECT_TRUE(o.at("address").as_string() == w1.address() || o.at("address").as_string() == w2.address());
    EXPECT_EQ(o.at("state").as_string(), "ready");
    completed += o.at("completed").to_number<std::uint64_t>();
  }
  EXPECT_GE(completed, 5u);
  bool saw_price = false;
  for (const auto& f : stats.at("functions").as_array()) {
    const auto& o = f.as_object();
    if (o.at("name").as_string() == "price_of" && o.at("where").as_string() == "remote") {
      saw_price = true;
      EXPECT_GE(o.at("calls").to_number<std::uint64_t>(), 3u);
      EXPECT_GE(o.at("errors").to_number<std::uint64_t>(), 1u);
      EXPECT_GT(o.at("p99_ms").to_number<double>(), 0.0);
    }
  }
  EXPECT_TRUE(saw_price);
  bool saw_error = false;
  for (const auto& e : stats.at("recent_errors").as_array()) {
    saw_error = saw_error || e.at("message").as_string().find("nothing is not for sale") != std::string::npos;
  }
  EXPECT_TRUE(saw_error);

  const auto metrics = get(app.dashboard_port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("# TYPE framex_calls_total counter"), std::string::npos);
  EXPECT_NE(metrics.body.find("framex_calls_total{function=\"price_of\",where=\"remote\"} "), std::string::npos);
  EXPECT_NE(metrics.body.find("framex_worker_up{worker=\"" + w1.address() + "\"} 1"), std::string::npos) << metrics.body;

  const auto page = get(app.dashboard_port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.body.find("</script><script>"), std::string::npos);  // an error's text cannot end the script
  EXPECT_NE(page.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find(w1.address()), std::string::npos);  // the first render's data is in the page
}

TEST(App, StopLetsARequestInFlightFinish) {
  framex::app app{app_config()};
  add_routes(app);
  app.start();
  const std::uint16_t port = app.port();
  response late;
  const int before = waits_started.load();
  std::thread client([&] { late = get(port, "/api/v1/wait?ms=300"); });
  for (int i = 0; i < 3000 && waits_started.load() == before; ++i) std::this_thread::sleep_for(10ms);  // until served
  app.stop();
  client.join();
  EXPECT_EQ(late.status, 200);
  EXPECT_EQ(late.body, "300");
  EXPECT_THROW(get(port, "/health"), boost::system::system_error);  // no longer listening
}

// ---- keys ----

response get_with(std::uint16_t port, const std::string& target, const std::string& authorization,
                  response_headers* headers = nullptr) {
  return request(port, http::verb::get, target, {}, "application/json", authorization, headers);
}

// Exact beats wildcard, the longest wildcard wins, unmatched paths are public;
// keys given as themselves, in a file and in the environment.
void check_key_rules(const framex::config& base) {
  char dir_pattern[] = "/tmp/framex-keys-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(dir_pattern);
  std::ofstream(dir / "c") << "key-c-0123456789abcdef\n";
  ::setenv("FRAMEX_TEST_KEY_A", "key-a-0123456789abcdef", 1);
  framex::config cfg = base;
  cfg.apply_toml(R"([auth]
rules = { "/api/v1/multiply" = ["key-b-0123456789abcdef"], "/api/v1/*" = ["env:FRAMEX_TEST_KEY_A"], "/api/v1/gr*" = ["file:)" +
                     (dir / "c").string() + R"("] }
dashboard_key = "board-key-0123456789abcdef"
)",
                 "test");
  framex::app app{cfg};
  add_routes(app);
  app.start();
  const auto port = app.port();
  response_headers h;
  auto r = get_with(port, "/api/v1/multiply?a=6&b=7", "", &h);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(boost::json::parse(r.body).at("status").as_int64(), 401);
  EXPECT_EQ(h.www_authenticate, "Bearer");
  EXPECT_EQ(get_with(port, "/api/v1/multiply?a=6&b=7", "Bearer key-a-0123456789abcdef").status, 401);  // the exact rule, not /api/v1/*
  EXPECT_EQ(get_with(port, "/api/v1/multiply?a=6&b=7", "Bearer key-b-0123456789abcdef").body, "42");
  EXPECT_EQ(get_with(port, "/api/v1/multiply?a=6&b=7", "key-b-0123456789abcdef").body, "42");  // the key alone
  // Rules and routes see the path normalized, whatever form it was sent in.
  EXPECT_EQ(get_with(port, "/api/v1/pub/../multiply?a=6&b=7", "").status, 401);
  EXPECT_EQ(get_with(port, "/api/v1/pub/%2e%2e/multiply?a=6&b=7", "").status, 401);
  EXPECT_EQ(get_with(port, "/api/v1//%6dultiply?a=6&b=7", "Bearer key-b-0123456789abcdef").body, "42");
  EXPECT_EQ(get_with(port, "/api/v1/a%2fb", "Bearer key-b-0123456789abcdef").status, 400);
  EXPECT_EQ(get_with(port, "/api/../../multiply", "Bearer key-b-0123456789abcdef").status, 400);
  EXPECT_EQ(get_with(port, "/api/v1/multiply?a=6&b=7", "bearer key-b-0123456789abcdef").body, "42");  // the scheme in any case
  EXPECT_EQ(get_with(port, "/api/v1/multiply?a=6&b=7", "BEARER  key-b-0123456789abcdef").body, "42");
  EXPECT_EQ(get_with(port, "/api/v1/greet?name=x&loud=false", "Bearer key-a-0123456789abcdef").status, 401);  // /api/v1/gr* is longer
  EXPECT_EQ(get_with(port, "/api/v1/greet?name=x&loud=false", "Bearer key-c-0123456789abcdef").status, 200);
  EXPECT_EQ(get_with(port, "/api/v1/wait?ms=1", "Bearer key-a-0123456789abcdef").status, 200);
  EXPECT_EQ(get_with(port, "/api/v1/wait?ms=1", "Bearer key-a-0123456789abcdef2").status, 401);
  EXPECT_EQ(get_with(port, "/api/v1/wait?ms=1", "Bearer key-").status, 401);
  EXPECT_EQ(get(port, "/health").status, 200);  // no rule: public
  // The dashboard's own key; a browser is asked for it as a password.
  const auto board = app.dashboard_port();
  EXPECT_EQ(get_with(board, "/api/v1/stats", "", &h).status, 401);
  EXPECT_EQ(h.www_authenticate, R"(Basic realm="framex dashboard")");
  EXPECT_EQ(get_with(board, "/metrics", "Bearer key-a-0123456789abcdef").status, 401);
  EXPECT_EQ(get_with(board, "/api/v1/stats", "Bearer board-key-0123456789abcdef").status, 200);
  EXPECT_EQ(get_with(board, "/", "Basic " + std::string("YW55b25lOmJvYXJkLWtleS0wMTIzNDU2Nzg5YWJjZGVm")).status, 200);  // anyone:board-key-0123456789abcdef
  EXPECT_EQ(get_with(board, "/", "Basic " + std::string("YW55b25lOmJvYXJkLWtleg==")).status, 401);  // anyone:board-kez
  EXPECT_EQ(get(board, "/health").status, 200);
  EXPECT_EQ(cfg.describe().find("board-key-0123456789abcdef"), std::string::npos);  // --print-config shows no key
  app.stop();
  std::filesystem::remove_all(dir);
}

TEST(AppKeys, RulesAndTheDashboardKeyLocally) { check_key_rules(app_config()); }

TEST(AppKeys, RulesAndTheDashboardKeyInDistributedMode) {
  framex::test::worker_process w;
  framex::config cfg = app_config();
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {w.address()};
  check_key_rules(cfg);
}

// A dashboard open to the network with no key is said so in the log.
TEST(AppKeys, ADashboardBeyondLoopbackWithNoKeyIsWarnedOf) {
  const auto log_of_start = [](const std::string& key) {
    framex::config cfg = app_config();
    cfg.log.level = "warn";
    cfg.server.dashboard_host = "0.0.0.0";
    if (!key.empty()) cfg.auth.dashboard_key = key;
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    {
      framex::app app{cfg};
      app.start();
      app.stop();
    }
    std::fflush(nullptr);
    return testing::internal::GetCapturedStdout() + testing::internal::GetCapturedStderr();
  };
  EXPECT_NE(log_of_start("").find("the dashboard listens on 0.0.0.0 with no auth.dashboard_key"), std::string::npos);
  EXPECT_EQ(log_of_start("a-dashboard-key-0123456789abcdef-0123456789").find("no auth.dashboard_key"), std::string::npos);
}

TEST(AppKeys, AKeyShorterThanSixteenCharactersIsAConfigErrorThatDoesNotShowIt) {
  for (const bool dashboard : {false, true}) {
    framex::config cfg = app_config();
    if (dashboard) {
      cfg.auth.dashboard_key = "short-key-1";
    } else {
      cfg.auth.rules = {{"/api/*", {"a-long-enough-key-0123", "short-key-1"}}};
    }
    try {
      framex::app app{cfg};
      ADD_FAILURE() << "a short key was taken";
    } catch (const framex::config_error& e) {
      EXPECT_NE(std::string(e.what()).find("shorter than 16 characters"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("short-key-1"), std::string::npos) << e.what();
    }
  }
}

TEST(AppKeys, AMissingKeyFileOrVariableIsAConfigError) {
  framex::config cfg = app_config();
  cfg.auth.rules = {{"/api/*", {"env:FRAMEX_TEST_NO_SUCH_VARIABLE"}}};
  EXPECT_THROW(framex::app{cfg}, framex::config_error);
  cfg.auth.rules = {{"/api/*", {"file:/nonexistent/key"}}};
  EXPECT_THROW(framex::app{cfg}, framex::config_error);
}

// ---- HTTPS ----

// A GET over HTTPS that verifies the server against `ca_file` and 127.0.0.1.
response https_get(std::uint16_t port, const std::string& target, const std::string& ca_file, const std::string& authorization = {}) {
  asio::io_context io;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  stream.set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
  beast::get_lowest_layer(stream).connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  stream.handshake(asio::ssl::stream_base::client);
  http::request<http::string_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type]), {}};
}

TEST(AppHttps, TheIngressAndTheDashboardSpeakHttpsWithKeysAndTurnAwayPlainHttp) {
  framex::test::pki ca;
  const auto cert = ca.issue("ingress", "IP:127.0.0.1");
  framex::config cfg = app_config();
  cfg.server.tls = {.enabled = true, .ca_file = {}, .cert_file = cert.cert, .key_file = cert.key};
  cfg.server.header_timeout = 2s;
  cfg.auth.rules = {{"/api/v1/multiply", {"key-b-0123456789abcdef"}}};
  cfg.auth.dashboard_key = "board-key-0123456789abcdef";
  framex::app app{cfg};
  add_routes(app);
  app.start();
  EXPECT_EQ(https_get(app.port(), "/api/v1/multiply?a=6&b=7", ca.ca_file(), "Bearer key-b-0123456789abcdef").body, "42");
  EXPECT_EQ(https_get(app.port(), "/api/v1/multiply?a=6&b=7", ca.ca_file()).status, 401);
  EXPECT_EQ(https_get(app.dashboard_port(), "/metrics", ca.ca_file(), "Bearer board-key-0123456789abcdef").status, 200);
  EXPECT_THROW(get(app.port(), "/health"), boost::system::system_error);  // plain HTTP gets no answer
  framex::test::pki stranger("another CA");
  EXPECT_THROW(https_get(app.port(), "/health", stranger.ca_file()), boost::system::system_error);  // not its CA
  EXPECT_EQ(https_get(app.port(), "/health", ca.ca_file()).status, 200);
  app.stop();
}

// ---- hostile HTTP clients ----

TEST(AppHostile, SlowHeadersAreCutOffAndOversizedHeadersRefusedWhileOthersAreServed) {
  framex::config cfg = app_config();
  cfg.server.header_timeout = 300ms;
  cfg.server.max_connections = 8;
  framex::app app{cfg};
  add_routes(app);
  app.start();
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> slow;
  for (int i = 0; i < 40; ++i) {  // slowloris: part of a request line, then nothing
    slow.emplace_back(io);
    slow.back().connect({asio::ip::make_address("127.0.0.1"), app.port()});
    asio::write(slow.back(), asio::buffer(std::string("GET /api/v1/multiply?a=1&b=2 HTTP/1.1\r\nHost: x\r\n")));
  }
  // A real client gets through once the slow ones have been cut off.
  const auto r = get(app.port(), "/api/v1/multiply?a=2&b=21");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "42");
  for (auto& s : slow) {
    char byte;
    boost::system::error_code ec;
    asio::read(s, asio::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  }
  asio::ip::tcp::socket big(io);
  big.connect({asio::ip::make_address("127.0.0.1"), app.port()});
  // Just over the 16 KiB limit, in one write, so the server has read it all
  // when it answers and closes (unread bytes would make its close a reset).
  boost::system::error_code ec;
  asio::write(big, asio::buffer("GET /ping HTTP/1.1\r\nX-Big: " + std::string(20 * 1024, 'x') + "\r\n\r\n"), ec);
  std::string reply(12, '\0');
  asio::read(big, asio::buffer(reply), ec);
  EXPECT_EQ(reply, "HTTP/1.1 431");
}

// The HTTP siege: slowloris, slow bodies, oversized headers, garbage and a
// flood of connections at once, while a good client keeps asking. Heavy
// (hundreds of sockets): scripts/test.sh runs the Siege suites in the
// optimised and ASan builds only.
TEST(SiegeHttp, AnIngressUnderEveryAttackAtOnceKeepsServingAGoodClient) {
  framex::config cfg = app_config();
  cfg.server.header_timeout = 1s;
  cfg.server.read_timeout = 1s;
  cfg.server.max_connections = 64;
  framex::app app{cfg};
  add_routes(app);
  app.start();
  const std::uint16_t port = app.port();
  const asio::ip::tcp::endpoint at{asio::ip::make_address("127.0.0.1"), port};

  std::atomic<bool> stop{false};
  std::atomic<int> good{0}, bad{0};
  std::string first_failure;
  std::thread client([&] {
    for (int i = 0; !stop; ++i) {
      try {
        const auto r = get(port, "/api/v1/multiply?a=" + std::to_string(i) + "&b=2");
        if (r.status == 200 && r.body == std::to_string(2 * i)) {
          ++good;
          continue;
        }
        if (bad++ == 0) first_failure = std::to_string(r.status) + " " + r.body;
      } catch (const std::exception& e) {
        if (bad++ == 0) first_failure = e.what();
      }
    }
  });

  std::vector<std::thread> attackers;
  attackers.emplace_back([&] {  // slowloris: part of a request line, a byte now and then
    asio::io_context io;
    std::vector<asio::ip::tcp::socket> slow;
    for (int i = 0; i < 200; ++i) {
      slow.emplace_back(io);
      boost::system::error_code ec;
      slow.back().connect(at, ec);
      asio::write(slow.back(), asio::buffer(std::string("GET /api/v1/multiply?a=1&b=2 HTTP/1.1\r\n")), ec);
    }
    for (int tick = 0; tick < 30; ++tick) {
      for (auto& s : slow) {
        boost::system::error_code ec;
        asio::write(s, asio::buffer(std::string("X")), ec);
      }
      std::this_thread::sleep_for(100ms);
    }
  });
  attackers.emplace_back([&] {  // a body announced and trickled
    asio::io_context io;
    for (int i = 0; i < 20; ++i) {
      asio::ip::tcp::socket s(io);
      boost::system::error_code ec;
      s.connect(at, ec);
      asio::write(s, asio::buffer(std::string("POST /api/v1/multiply HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{")), ec);
      std::this_thread::sleep_for(100ms);
    }
  });
  attackers.emplace_back([&] {  // oversized headers and garbage
    asio::io_context io;
    for (int i = 0; i < 50; ++i) {
      asio::ip::tcp::socket s(io);
      boost::system::error_code ec;
      s.connect(at, ec);
      const std::string bytes = i % 2 == 0 ? "GET /ping HTTP/1.1\r\nX-Big: " + std::string(64 * 1024, 'x') + "\r\n\r\n"
                                           : std::string(4096, '\x17') + "\r\n\r\n";
      asio::write(s, asio::buffer(bytes), ec);
      char reply[64];
      s.read_some(asio::buffer(reply), ec);
    }
  });
  attackers.emplace_back([&] {  // connections opened and dropped, a thousand of them
    asio::io_context io;
    for (int i = 0; i < 1000; ++i) {
      asio::ip::tcp::socket s(io);
      boost::system::error_code ec;
      s.connect(at, ec);
    }
  });
  for (auto& a : attackers) a.join();
  stop = true;
  client.join();
  EXPECT_EQ(bad, 0) << first_failure;
  EXPECT_GE(good, 5);
  EXPECT_EQ(get(port, "/api/v1/multiply?a=2&b=21").body, "42");
}

}  // namespace
