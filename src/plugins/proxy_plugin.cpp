// The `proxy` built-in plugin: every /api/v1/ path this service has no route
// for goes to one of `upstreams` (round-robin; on a failure to connect, the
// next), unless `deny` names it or `allow` does not; the upstream's answer
// comes back as it is, piece by piece when it is chunked or an event stream.
//
//   load_builtin_plugins = ["proxy"]
//   [plugins.proxy]
//   upstreams = ["http://10.0.0.5:8080", "http://10.0.0.6:8080"]
//   allow = ["/api/v1/legacy/*"]          # names, or prefixes ending in *; empty: all
//   deny = ["/api/v1/legacy/admin*"]
//   auth_key = "env:LEGACY_KEY"           # sent as "Authorization: Bearer KEY"
//   timeout_ms = 30000
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/describe/class.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>

#include "security/auth.hpp"
#include "http/http_server.hpp"
#include "plugins/plugin_host.hpp"

namespace framex::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct proxy_config {
  std::vector<std::string> upstreams;
  std::vector<std::string> allow;
  std::vector<std::string> deny;
  std::string auth_key;
  int timeout_ms = 30000;
  std::size_t body_limit = std::size_t{64} << 20;
};
BOOST_DESCRIBE_STRUCT(proxy_config, (), (upstreams, allow, deny, auth_key, timeout_ms, body_limit))

struct upstream {
  std::string host;
  std::string port;
  std::string base;  // a path prefix, or empty
  std::string text;
};

upstream parse_upstream(const std::string& url) {
  const std::string where = "plugins.proxy.upstreams: \"" + url + "\"";
  if (url.starts_with("https://")) throw config_error(where + ": https upstreams are not supported yet; use http://");
  if (!url.starts_with("http://")) throw config_error(where + ": expected http://HOST:PORT[/BASE]");
  std::string_view rest = std::string_view(url).substr(7);
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  upstream u;
  u.text = url;
  if (slash != std::string_view::npos) {
    u.base = std::string(rest.substr(slash));
    while (u.base.ends_with('/')) u.base.pop_back();
  }
  const std::size_t colon = authority.rfind(':');
  const bool bracketed = authority.starts_with('[');
  if (colon == std::string_view::npos || (bracketed && colon < authority.find(']'))) {
    u.host = std::string(authority);
    u.port = "80";
  } else {
    u.host = std::string(authority.substr(0, colon));
    u.port = std::string(authority.substr(colon + 1));
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
    if (ec != std::errc{} || end != u.port.data() + u.port.size() || port == 0 || port > 65535) {
      throw config_error(where + ": no valid port");
    }
  }
  if (bracketed) u.host = u.host.substr(1, u.host.size() - 2);
  if (u.host.empty()) throw config_error(where + ": no host");
  return u;
}

// One exchange with an upstream; its body may still be arriving.
struct exchange {
  explicit exchange(const asio::any_io_executor& ex) : stream(ex) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  char piece[16384];
};

class proxy_plugin {
 public:
  using config_type = proxy_config;
  explicit proxy_plugin(proxy_config cfg) : cfg_(std::move(cfg)) {
    if (cfg_.upstreams.empty()) throw config_error("plugins.proxy.upstreams: give at least one upstream (http://HOST:PORT)");
    for (const auto& u : cfg_.upstreams) upstreams_.push_back(parse_upstream(u));
    if (!cfg_.auth_key.empty()) key_ = resolve_key(cfg_.auth_key, "plugins.proxy.auth_key");
    if (cfg_.timeout_ms <= 0) throw config_error("plugins.proxy.timeout_ms: expected more than 0");
  }

  asio::awaitable<http_reply> forward(const http_request& request) {
    const std::string path = request.target.substr(0, request.target.find('?'));
    if (!serves(cfg_.allow, path) || (!cfg_.deny.empty() && serves(cfg_.deny, path))) {
      co_return error_reply(404, "no route for " + path);
    }
    const std::size_t first = next_.fetch_add(1);
    std::string failures;
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
      const upstream& u = upstreams_[(first + i) % upstreams_.size()];
      const auto executor = co_await asio::this_coro::executor;
      auto x = std::make_shared<exchange>(executor);
      boost::system::error_code ec;
      co_await connect(*x, u, ec);
      if (ec) {  // never reached it: the next may answer
        if (!failures.empty()) failures += "; ";
        failures.append(u.text).append(": ").append(ec.message());
        continue;
      }
      co_return co_await relay(*x, x, u, request);
    }
    spdlog::warn("framex proxy: no upstream answered {}: {}", path, failures);
    co_return error_reply(502, "no upstream answered");
  }

 private:
  asio::awaitable<void> connect(exchange& x, const upstream& u, boost::system::error_code& ec) {
    x.stream.expires_after(std::chrono::milliseconds(cfg_.timeout_ms));
    asio::ip::tcp::resolver resolver(x.stream.get_executor());
    const auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    co_await x.stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  }

  // `owner` keeps `exchange` for a stream that outlives this call.
  asio::awaitable<http_reply> relay(exchange& exchange_ref, const std::shared_ptr<exchange>& owner, const upstream& u,
                                    const http_request& request) {
    exchange* x = &exchange_ref;
    http::request<http::string_body> out{http::string_to_verb(request.method), u.base + request.target, 11};
    out.set(http::field::host, u.host + ":" + u.port);
    out.set(http::field::user_agent, "framex-proxy");
    if (!request.content_type.empty()) out.set(http::field::content_type, request.content_type);
    if (!key_.empty()) {
      out.set(http::field::authorization, "Bearer " + key_);
    } else if (!request.authorization.empty()) {
      out.set(http::field::authorization, request.authorization);
    }
    out.body() = request.body;
    out.prepare_payload();
    out.keep_alive(false);
    boost::system::error_code ec;
    x->stream.expires_after(std::chrono::milliseconds(cfg_.timeout_ms));
    co_await http::async_write(x->stream, out, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      x->parser.body_limit(cfg_.body_limit);
      co_await http::async_read_header(x->stream, x->buffer, x->parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      spdlog::warn("framex proxy: {} failed mid-way on {}: {}", u.text, request.target, ec.message());
      co_return error_reply(ec == beast::error::timeout ? 504 : 502, "the upstream did not answer");
    }
    const auto& head = x->parser.get();
    http_reply reply;
    reply.status = static_cast<int>(head.result_int());
    reply.content_type = std::string(head[http::field::content_type]);
    if (const auto retry = head[http::field::retry_after]; !retry.empty()) reply.headers.emplace_back("Retry-After", retry);
    const bool streams = head.chunked() || reply.content_type.starts_with("text/event-stream");
    if (streams) {
      x->stream.expires_never();  // a stream may last; each piece is read as it comes
      reply.streamed.emplace(stream::chunked([owner]() { return next_piece(*owner); }, reply.content_type));
      co_return reply;
    }
    while (!x->parser.is_done()) {
      std::optional<std::string> piece = co_await next_piece(*x);
      if (!piece) break;
      reply.body += *piece;
    }
    co_return reply;
  }

  // The next bytes of the upstream's body; nothing at its end. Throws when
  // the upstream fails mid-body (the client then sees the body cut short).
  static asio::awaitable<std::optional<std::string>> next_piece(exchange& x) {
    while (!x.parser.is_done()) {
      auto& body = x.parser.get().body();
      body.data = x.piece;
      body.size = sizeof x.piece;
      boost::system::error_code ec;
      co_await http::async_read_some(x.stream, x.buffer, x.parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw boost::system::system_error(ec, "the upstream's body");
      const std::size_t n = sizeof x.piece - body.size;
      if (n > 0) co_return std::string(x.piece, n);
    }
    co_return std::nullopt;
  }

  proxy_config cfg_;
  std::vector<upstream> upstreams_;
  std::string key_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace

const plugin_descriptor& proxy_descriptor() {
  static const plugin_descriptor proxy = describe_plugin<proxy_plugin>(
      plugin_metadata{.name = "proxy",
                      .version = "1.0.0",
                      .description = "Forwards the /api/v1/ paths this service has no route for to upstream services",
                      .author = "framex"},
      framex::on_request<&proxy_plugin::forward>(
          "/api/v1/*", {.methods = {http_method::get, http_method::post, http_method::put, http_method::patch, http_method::del},
                        .summary = "Everything under /api/v1/ that has no route here, to an upstream"}));
  return proxy;
}

}  // namespace framex::detail
