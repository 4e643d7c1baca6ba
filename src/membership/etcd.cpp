#include "membership/etcd.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <future>
#include <list>
#include <random>
#include <set>

#include <spdlog/spdlog.h>

#include "net/tls.hpp"
#include "security/auth.hpp"

namespace framex::detail::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using asio::use_awaitable;

namespace {

// The gateway's paths (named: GCC 12 cannot take a string literal into a coroutine's frame).
constexpr std::string_view authenticate_path = "/v3/auth/authenticate";
constexpr std::string_view grant_path = "/v3/lease/grant";
constexpr std::string_view keepalive_path = "/v3/lease/keepalive";
constexpr std::string_view revoke_path = "/v3/lease/revoke";
constexpr std::string_view put_path = "/v3/kv/put";
constexpr std::string_view range_path = "/v3/kv/range";
constexpr std::string_view watch_path = "/v3/watch";

constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string unbase64(std::string_view in) {
  std::string out;
  unsigned v = 0;
  int bits = 0;
  for (const char c : in) {
    if (c == '=') break;
    const auto at = alphabet.find(c);
    if (at == std::string_view::npos) throw etcd_error("etcd sent a key or value that is not base64");
    v = (v << 6) | static_cast<unsigned>(at);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xff);
    }
  }
  return out;
}

// The first key after every key that starts with `prefix`.
std::string range_end(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return std::string(1, '\0');  // every key
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

// The gateway writes 64-bit numbers as strings.
std::int64_t number(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  if (v->is_string()) {
    const auto& s = v->as_string();
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc{} && end == s.data() + s.size()) return n;
  }
  throw etcd_error("etcd sent a " + std::string(key) + " that is not a number");
}

std::string text(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

key_value decode(const json::object& kv) { return {unbase64(text(kv, "key")), unbase64(text(kv, "value"))}; }

// A connection failed or timed out: the next endpoint may do better.
struct unreachable : etcd_error {
  using etcd_error::etcd_error;
};

// etcd refused because the token expired: authenticate again.
bool token_refused(const json::object& error) {
  const auto message = text(error, "message");
  return number(error, "code") == 16 || message.find("invalid auth token") != std::string::npos;
}

// Hands on the events of every whole line of a watch in `lines` and removes
// those lines; false when etcd cancelled the watch. Throws `etcd_error`, naming
// `who`, for a line that is not a watch result.
bool take_watch_lines(std::string& lines, const std::string& who, const std::function<void(const std::vector<event>&)>& on_events) {
  std::size_t start = 0;
  for (std::size_t nl; (nl = lines.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string_view line(lines.data() + start, nl - start);
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    boost::system::error_code parse_ec;
    const auto v = json::parse(line, parse_ec);
    if (parse_ec || !v.is_object()) throw etcd_error(who + " sent a watch line that is not JSON");
    const auto* result = v.as_object().if_contains("result");
    if (result == nullptr || !result->is_object()) throw etcd_error(who + " broke the watch: " + text(v.as_object(), "message"));
    const auto& r = result->as_object();
    if (const auto* c = r.if_contains("canceled"); c != nullptr && c->is_bool() && c->as_bool()) return false;
    std::vector<event> events;
    if (const auto* list = r.if_contains("events"); list != nullptr && list->is_array()) {
      for (const auto& e : list->as_array()) {
        if (!e.is_object()) continue;
        const auto& eo = e.as_object();
        const auto* kv = eo.if_contains("kv");
        if (kv == nullptr || !kv->is_object()) continue;
        events.push_back({text(eo, "type") == "DELETE", decode(kv->as_object())});
      }
    }
    if (!events.empty()) on_events(events);
  }
  lines.erase(0, start);
  return true;
}

}  // namespace

struct client::impl {
  target where;
  config::etcd_section settings;
  std::string password;
  std::shared_ptr<net::tls_context> tls;
  std::string token;  // from authenticating; empty: none yet
  std::size_t endpoint = 0;  // the one that answered last
  bool stopped = false;
  std::list<beast::tcp_stream*> open;  // connections in use, for stop()

  // Keeps a connection on `open` while it is in use.
  struct in_use {
    impl& owner;
    std::list<beast::tcp_stream*>::iterator at;
    in_use(impl& o, beast::tcp_stream& s) : owner(o), at(o.open.insert(o.open.end(), &s)) {}
    ~in_use() { owner.open.erase(at); }
    in_use(const in_use&) = delete;
    in_use& operator=(const in_use&) = delete;
  };

  http::request<http::string_body> request(std::string_view path, const json::object& body, std::size_t at) const {
    http::request<http::string_body> req{http::verb::post, std::string(path), 11};
    req.set(http::field::host, where.endpoints[at].first + ":" + where.endpoints[at].second);
    req.set(http::field::content_type, "application/json");
    req.set("Grpc-Metadata-hasleader", "true");
    if (!token.empty()) req.set(http::field::authorization, token);
    req.body() = json::serialize(body);
    req.prepare_payload();
    return req;
  }

  std::string name(std::size_t at) const { return "etcd at " + where.endpoints[at].first + ":" + where.endpoints[at].second; }

  // Connects to endpoint `at` and runs `exchange` on the stream (TLS or not).
  template <class Exchange>
  asio::awaitable<void> with_connection(std::size_t at, Exchange&& exchange) {
    if (stopped) throw etcd_error("stopped");
    const auto ex = co_await asio::this_coro::executor;
    const auto& [host, port] = where.endpoints[at];
    try {
      asio::ip::tcp::resolver resolver(ex);
      const auto found = co_await resolver.async_resolve(host, port, use_awaitable);
      beast::tcp_stream tcp(ex);
      tcp.expires_after(settings.timeout);
      {
        in_use guard(*this, tcp);
        co_await tcp.async_connect(found, use_awaitable);
      }
      if (!tls) {
        in_use guard(*this, tcp);
        co_await exchange(tcp);
        co_return;
      }
      beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp), tls->native());
      in_use guard(*this, beast::get_lowest_layer(stream));
      tls->prepare_client(stream.native_handle(), host, "etcd " + host + ":" + port);
      try {
        co_await stream.async_handshake(asio::ssl::stream_base::client, use_awaitable);
      } catch (const boost::system::system_error& e) {
        const auto refused = net::verify_failure(stream.native_handle());
        if (!refused) throw;
        throw unreachable(name(at) + ": its certificate was refused: " + refused.message());
      }
      co_await exchange(stream);
    } catch (const boost::system::system_error& e) {
      if (stopped) throw etcd_error("stopped");
      throw unreachable(name(at) + ": " + (e.code() == beast::error::timeout ? "no answer within etcd.timeout_ms" : e.code().message()));
    }
  }

  // One request and its answer, on each endpoint in turn until one answers.
  asio::awaitable<http::response<http::string_body>> exchange(std::string_view path, const json::object& body,
                                                              std::size_t& answered) {
    std::string failures;
    for (std::size_t i = 0; i < where.endpoints.size(); ++i) {
      const std::size_t at = (endpoint + i) % where.endpoints.size();
      try {
        http::response<http::string_body> res;
        auto req = request(path, body, at);
        co_await with_connection(at, [&](auto& stream) -> asio::awaitable<void> {
          beast::get_lowest_layer(stream).expires_after(settings.timeout);
          co_await http::async_write(stream, req, use_awaitable);
          beast::flat_buffer buffer;
          http::response_parser<http::string_body> parser;
          parser.body_limit(std::size_t{64} << 20);
          co_await http::async_read(stream, buffer, parser, use_awaitable);
          res = parser.release();
        });
        endpoint = at;
        answered = at;
        co_return res;
      } catch (const unreachable& e) {
        failures += failures.empty() ? e.what() : std::string("; ") + e.what();
      }
    }
    throw etcd_error(failures);
  }

  // A unary call: etcd's answer (a streaming one's first `result`), or its refusal as `etcd_error`.
  asio::awaitable<json::object> call(std::string_view path, const json::object& body, bool may_renew = true) {
    if (!settings.user.empty() && token.empty() && path != authenticate_path) co_await authenticate();
    std::size_t at = 0;
    const auto res = co_await exchange(path, body, at);
    std::string_view b = res.body();
    if (const auto newline = b.find('\n'); newline != std::string_view::npos) b = b.substr(0, newline);
    boost::system::error_code ec;
    json::value v = json::parse(b, ec);
    if (ec || !v.is_object()) {
      throw etcd_error(name(at) + " answered " + std::string(path) + " with HTTP " + std::to_string(res.result_int()) + " and no JSON object");
    }
    json::object o = std::move(v.as_object());
    if (const auto* err = o.if_contains("error"); err != nullptr || res.result() != http::status::ok) {
      const json::object error = err != nullptr && err->is_object() ? err->as_object() : o;
      if (may_renew && !settings.user.empty() && token_refused(error)) {
        token.clear();
        co_return co_await call(path, body, false);
      }
      const auto message = text(error, "message");
      throw etcd_error(name(at) + " refused " + std::string(path) + ": " +
                       (message.empty() ? "HTTP " + std::to_string(res.result_int()) : message));
    }
    if (auto* result = o.if_contains("result"); result != nullptr && result->is_object()) co_return std::move(result->as_object());
    co_return o;
  }

  asio::awaitable<void> authenticate() {
    const json::object body{{"name", settings.user}, {"password", password}};
    const auto o = co_await call(authenticate_path, body, false);
    token = text(o, "token");
    if (token.empty()) throw etcd_error("etcd accepted " + settings.user + "'s password but gave no token");
  }
};

client::client(target where, const config::etcd_section& settings) : impl_(std::make_unique<impl>()) {
  impl_->where = std::move(where);
  impl_->settings = settings;
  if (!settings.user.empty()) {
    if (settings.password_file.empty()) throw config_error("etcd.user needs etcd.password_file");
    impl_->password = resolve_key("file:" + settings.password_file, "etcd.password_file");
  }
  impl_->tls = tls_context_for(settings.tls, net::tls_context::role::client, "etcd");
}

client::~client() = default;

const target& client::where() const noexcept { return impl_->where; }

asio::awaitable<std::int64_t> client::grant(std::chrono::seconds ttl) {
  const json::object body{{"TTL", ttl.count()}};
  const auto o = co_await impl_->call(grant_path, body);
  const auto id = number(o, "ID");
  if (id == 0) throw etcd_error("etcd granted no lease: " + text(o, "error"));
  co_return id;
}

asio::awaitable<bool> client::keep_alive(std::int64_t lease) {
  const json::object body{{"ID", std::to_string(lease)}};
  const auto o = co_await impl_->call(keepalive_path, body);
  co_return number(o, "TTL") > 0;
}

asio::awaitable<void> client::revoke(std::int64_t lease) {
  try {
    const json::object body{{"ID", std::to_string(lease)}};
    co_await impl_->call(revoke_path, body);
  } catch (const etcd_error& e) {
    if (std::string_view(e.what()).find("lease not found") == std::string_view::npos) throw;
  }
}

asio::awaitable<void> client::put(const std::string& key, const std::string& value, std::int64_t lease) {
  json::object body{{"key", base64(key)}, {"value", base64(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  co_await impl_->call(put_path, body);
}

asio::awaitable<std::pair<std::vector<key_value>, std::int64_t>> client::read_prefix() {
  const std::string from = impl_->where.prefix + "/";
  const json::object body{{"key", base64(from)}, {"range_end", base64(range_end(from))}};
  const auto o = co_await impl_->call(range_path, body);
  std::vector<key_value> kvs;
  if (const auto* list = o.if_contains("kvs"); list != nullptr && list->is_array()) {
    for (const auto& kv : list->as_array()) {
      if (kv.is_object()) kvs.push_back(decode(kv.as_object()));
    }
  }
  const auto* header = o.if_contains("header");
  if (header == nullptr || !header->is_object()) throw etcd_error("etcd answered a read without its revision");
  co_return std::pair{std::move(kvs), number(header->as_object(), "revision")};
}

asio::awaitable<void> client::watch(std::int64_t revision, std::function<void(const std::vector<event>&)> on_events) {
  auto& self = *impl_;
  if (!self.settings.user.empty() && self.token.empty()) co_await self.authenticate();
  const std::string from = self.where.prefix + "/";
  const json::object body{{"create_request",
                           {{"key", base64(from)}, {"range_end", base64(range_end(from))},
                            {"start_revision", std::to_string(revision)}, {"prev_kv", true}}}};
  bool renewed = false;
  std::string failures;
  for (std::size_t i = 0; i < self.where.endpoints.size(); ++i) {
    const std::size_t at = (self.endpoint + i) % self.where.endpoints.size();
    bool token_expired = false;
    try {
      auto req = self.request(watch_path, body, at);
      co_await self.with_connection(at, [&](auto& stream) -> asio::awaitable<void> {
        auto& tcp = beast::get_lowest_layer(stream);
        tcp.expires_after(self.settings.timeout);
        co_await http::async_write(stream, req, use_awaitable);
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(boost::none);
        std::string lines;  // what arrived and is not yet a whole line
        auto take = [&](std::uint64_t, std::string_view chunk, boost::system::error_code& ec) -> std::size_t {
          lines.append(chunk);
          if (lines.size() > (std::size_t{64} << 20)) ec = http::error::body_limit;  // no line ends: not etcd
          return chunk.size();
        };
        parser.on_chunk_body(take);
        co_await http::async_read_header(stream, buffer, parser, use_awaitable);
        if (parser.get().result() != http::status::ok) {
          co_await http::async_read(stream, buffer, parser, use_awaitable);
          const auto refusal = json::parse(lines.empty() ? parser.get().body() : lines);
          if (refusal.is_object() && token_refused(refusal.as_object()) && !renewed && !self.settings.user.empty()) {
            token_expired = true;
            co_return;
          }
          throw etcd_error(self.name(at) + " refused the watch: HTTP " + std::to_string(parser.get().result_int()));
        }
        self.endpoint = at;
        for (;;) {
          tcp.expires_after(self.settings.watch_idle);
          boost::system::error_code ec;
          co_await http::async_read_some(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
          if (ec == beast::error::timeout) co_return;  // quiet too long: maybe cut off; read again
          if (ec) throw boost::system::system_error(ec);
          if (!take_watch_lines(lines, self.name(at), on_events)) co_return;  // compacted past `revision`, or cancelled by etcd
          if (parser.is_done()) co_return;  // etcd ended the stream
        }
      });
    } catch (const unreachable& e) {
      failures += failures.empty() ? e.what() : std::string("; ") + e.what();
      continue;
    }
    if (token_expired) {
      renewed = true;
      self.token.clear();
      co_await self.authenticate();
      --i;  // the same endpoint again, with a new token
      continue;
    }
    co_return;
  }
  throw etcd_error(failures);
}

std::string registered_worker::to_json() const {
  json::object r;
  for (const auto& [name, amount] : resources) r[name] = amount;
  const json::object o{{"address", address}, {"state", draining ? "draining" : "ready"}, {"functions", functions}, {"resources", r}};
  return json::serialize(o);
}

registered_worker registered_worker::from_json(std::string_view text) {
  boost::system::error_code ec;
  const auto v = json::parse(text, ec);
  if (ec || !v.is_object()) throw etcd_error("not a JSON object");
  const auto& o = v.as_object();
  registered_worker w;
  w.address = etcd::text(o, "address");
  try {
    (void)parse_endpoint(w.address);
  } catch (const config_error&) {
    throw etcd_error("no \"address\": \"HOST:PORT\"");
  }
  const auto state = etcd::text(o, "state");
  if (state != "ready" && state != "draining") throw etcd_error("\"state\" is neither \"ready\" nor \"draining\"");
  w.draining = state == "draining";
  w.functions = etcd::text(o, "functions");
  if (const auto* r = o.if_contains("resources"); r != nullptr && r->is_object()) {
    for (const auto& [name, amount] : r->as_object()) {
      if (!amount.is_number()) throw etcd_error("resource \"" + std::string(name) + "\" is not a number");
      w.resources[std::string(name)] = amount.to_number<double>();
    }
  }
  return w;
}

void client::stop() {
  impl_->stopped = true;
  for (auto* s : impl_->open) s->socket().close();
}

}  // namespace framex::detail::etcd
