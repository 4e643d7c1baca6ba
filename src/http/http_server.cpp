#include "http/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <vector>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

#include "framex/error.hpp"

namespace framex::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct http_server::state : std::enable_shared_from_this<state> {
  state(asio::io_context& io, const options& o, dispatch_fn d)
      : io(io), opts(o), dispatch(std::move(d)), acceptor(io, {asio::ip::make_address(o.host), o.port}) {}

  asio::io_context& io;
  options opts;
  dispatch_fn dispatch;
  tcp::acceptor acceptor;
  std::atomic<std::size_t> busy{0};
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::set<beast::tcp_stream*> idle;  // connections waiting for a request

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer pause(acceptor.get_executor());
    std::chrono::milliseconds backoff{0};
    for (;;) {
      // At the limit, new connections wait in the backlog until one closes.
      while (opts.max_connections != 0 && connections.load() >= opts.max_connections && !stopping) {
        pause.expires_after(std::chrono::milliseconds(10));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored_error));
      }
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::make_strand(io), asio::redirect_error(asio::use_awaitable, ec));
      if (stopping || !acceptor.is_open()) co_return;
      if (ec) {  // EMFILE and the like: let descriptors free up instead of spinning
        backoff = std::clamp<std::chrono::milliseconds>(2 * backoff, std::chrono::milliseconds(10), std::chrono::seconds(1));
        pause.expires_after(backoff);
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored_error));
        continue;
      }
      backoff = {};
      ++connections;
      const auto ex = socket.get_executor();
      if (opts.tls) {
        asio::co_spawn(ex, secure_session(beast::tcp_stream(std::move(socket))), asio::detached);
      } else {
        asio::co_spawn(ex, session(beast::tcp_stream(std::move(socket))), asio::detached);
      }
    }
  }
  boost::system::error_code ignored_error;

  struct counted {
    std::atomic<std::size_t>& n;
    ~counted() { --n; }
  };

  // HTTPS: the handshake (within the header timeout), then as plain HTTP.
  asio::awaitable<void> secure_session(beast::tcp_stream tcp) {
    auto self = shared_from_this();
    counted count{connections};
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp), opts.tls->native());
    beast::get_lowest_layer(stream).expires_after(opts.header_timeout);
    boost::system::error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      spdlog::debug("https: a TLS handshake failed: {}", ec.message());
      co_return;
    }
    co_await serve(stream);
  }

  asio::awaitable<void> session(beast::tcp_stream stream) {
    auto self = shared_from_this();
    counted count{connections};
    co_await serve(stream);
  }

  // One connection: requests in order, until the peer or a timeout ends it.
  template <class Stream>
  asio::awaitable<void> serve(Stream& stream) {
    auto& lowest = beast::get_lowest_layer(stream);
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(opts.body_limit);
      parser.header_limit(16 * 1024);
      lowest.expires_after(opts.header_timeout);
      boost::system::error_code ec;
      {
        std::lock_guard lock(mutex);
        if (stopping) break;
        idle.insert(&lowest);
      }
      co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      {
        std::lock_guard lock(mutex);
        idle.erase(&lowest);
      }
      if (!ec && !parser.is_done()) {
        lowest.expires_after(opts.read_timeout);
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec == http::error::header_limit) {
        co_await write(stream, 11, false, error_reply(431, "the request's headers are too large"));
        break;
      }
      if (ec == http::error::body_limit) {
        auto reply = error_reply(413, "the body exceeds " + std::to_string(opts.body_limit) + " bytes");
        co_await write(stream, 11, false, reply);
        break;
      }
      if (ec) break;  // closed, timed out, or not HTTP
      auto request = parser.release();
      busy.fetch_add(1);
      const auto started = std::chrono::steady_clock::now();
      const http_reply reply = co_await answer(request);
      busy.fetch_sub(1);
      const bool keep = request.keep_alive() && !stopping;
      spdlog::debug("{} {} {} {:.3f} ms", std::string(request.method_string()), std::string(request.target()),
                    reply.status,
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
      if (reply.streamed) {
        if (!co_await write_streamed(stream, request.version(), keep, reply) || !keep) break;
        continue;
      }
      if (!co_await write(stream, request.version(), keep, reply) || !keep) break;
    }
    boost::system::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<http_reply> answer(const http::request<http::string_body>& request) {
    const std::string_view raw = request.target();
    const std::size_t q = raw.find('?');
    // One form of the path for every rule, route and plugin, and for a proxy to forward.
    const std::string path = normalized_path(raw.substr(0, q));
    if (path.empty()) co_return error_reply(400, "the request's path is malformed or leaves the root");
    const std::string target = q == std::string_view::npos ? path : path + std::string(raw.substr(q));
    http_call call;
    if (q != std::string_view::npos) call.query = parse_query(raw.substr(q + 1));
    call.body = request.body();
    call.authorization = request[http::field::authorization];
    call.method = request.method_string();
    call.target = target;
    call.content_type = request[http::field::content_type];
    // A body is JSON when it says so; one that says nothing or says it is a
    // form (as `curl -d` does) is read as JSON when it parses as JSON.
    const auto type = request[http::field::content_type];
    call.json_body = type.starts_with("application/json") ||
                     (!call.body.empty() && (type.empty() || type.starts_with("application/x-www-form-urlencoded")));
    try {
      co_return co_await dispatch(std::string(request.method_string()), path, call);
    } catch (const http_error& e) {
      co_return error_reply(e.status(), e.what());
    } catch (const std::system_error& e) {
      if (e.code() == errc::timeout) co_return internal_error(504, "the call timed out", path, e.what());
      co_return internal_error(500, "the request failed", path, e.what());
    } catch (const std::exception& e) {
      co_return internal_error(500, "the request failed", path, e.what());
    }
  }

  // What a failure tells the client: a fixed message and an id to quote; the
  // full text, which may name hosts, files or request data, goes to the log.
  static http_reply internal_error(int status, const char* message, const std::string& path, const char* detail) {
    static std::atomic<std::uint64_t> next_id{0};
    const std::uint64_t id = ++next_id;
    spdlog::error("http error {}: {} {}: {}", id, status, path, detail);
    boost::json::object o;
    o["status"] = status;
    o["message"] = std::string(message) + "; the server logged it as error " + std::to_string(id);
    o["error_id"] = id;
    return {status, boost::json::serialize(o), "application/json"};
  }

  // A streamed reply: chunked transfer, each piece one chunk (Server-Sent
  // Events: each piece one event). A piece that fails ends the connection
  // without the last chunk, so the client sees the body cut short.
  template <class Stream>
  asio::awaitable<bool> write_streamed(Stream& stream, unsigned version, bool keep, const http_reply& reply) {
    const framex::stream& pieces = *reply.streamed;
    const bool events = pieces.kind() == framex::stream::format::events;
    http::response<http::empty_body> res{static_cast<http::status>(reply.status), version};
    res.set(http::field::server, "framex");
    res.set(http::field::content_type, pieces.content_type());
    if (events) res.set(http::field::cache_control, "no-cache");
    for (const auto& [name, value] : reply.headers) res.set(name, value);
    res.keep_alive(keep);
    res.chunked(true);
    beast::get_lowest_layer(stream).expires_never();  // a stream may last
    http::response_serializer<http::empty_body> serializer{res};
    boost::system::error_code ec;
    co_await http::async_write_header(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    for (;;) {
      std::optional<std::string> piece;
      try {
        piece = co_await pieces.next();
      } catch (const std::exception& e) {
        spdlog::error("http: a stream failed mid-way: {}", e.what());
        co_return false;
      }
      if (!piece) break;
      std::string data = events ? as_event(*piece) : std::move(*piece);
      if (data.empty()) continue;  // an empty chunk would end the body
      co_await asio::async_write(stream, http::make_chunk(asio::buffer(data)), asio::redirect_error(asio::use_awaitable, ec));
      if (ec || stopping) co_return false;
    }
    co_await asio::async_write(stream, http::make_chunk_last(), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // "data: LINE\n" per line, then a blank line.
  static std::string as_event(std::string_view piece) {
    std::string out;
    for (;;) {
      const std::size_t nl = piece.find('\n');
      out += "data: ";
      out += piece.substr(0, nl);
      out += '\n';
      if (nl == std::string_view::npos) break;
      piece.remove_prefix(nl + 1);
    }
    return out + '\n';
  }

  template <class Stream>
  static asio::awaitable<bool> write(Stream& stream, unsigned version, bool keep, const http_reply& reply) {
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    res.set(http::field::server, "framex");
    res.set(http::field::content_type, reply.content_type);
    for (const auto& [name, value] : reply.headers) res.set(name, value);
    res.keep_alive(keep);
    res.body() = reply.body;
    res.prepare_payload();
    boost::system::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
};

http_server::http_server(asio::io_context& io, const options& o, dispatch_fn dispatch)
    : state_(std::make_shared<state>(io, o, std::move(dispatch))) {
  asio::co_spawn(state_->acceptor.get_executor(), state_->accept_loop(), asio::detached);
}

http_server::~http_server() { stop(); }

std::uint16_t http_server::port() const noexcept { return state_->acceptor.local_endpoint().port(); }
std::size_t http_server::in_flight() const noexcept { return state_->busy.load(); }

void http_server::stop() {
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    s->stopping = true;
    boost::system::error_code ignored;
    s->acceptor.close(ignored);
    std::lock_guard lock(s->mutex);
    for (auto* stream : s->idle) {
      asio::post(stream->get_executor(), [s, stream] {
        std::lock_guard inner(s->mutex);
        if (s->idle.contains(stream)) stream->cancel();
      });
    }
  });
}

http_reply error_reply(int status, const std::string& message) {
  boost::json::object o;
  o["status"] = status;
  o["message"] = message;
  return {status, boost::json::serialize(o), "application/json"};
}

std::string normalized_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return {};
  const auto hex = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  const auto unreserved = [](unsigned char ch) { return std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~'; };
  std::vector<std::string> segments;
  std::string segment;
  bool trailing_slash = false;
  const auto end_segment = [&]() -> bool {
    if (segment == "..") {
      if (segments.empty()) return false;  // above the root
      segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(std::move(segment));
    }
    segment.clear();
    return true;
  };
  for (std::size_t i = 1; i < path.size(); ++i) {
    const char ch = path[i];
    if (ch == '/') {
      if (!end_segment()) return {};
      trailing_slash = true;
      continue;
    }
    trailing_slash = false;
    if (ch == '\\' || ch == '\0') return {};
    if (ch != '%') {
      segment += ch;
      continue;
    }
    if (i + 2 >= path.size() || hex(path[i + 1]) < 0 || hex(path[i + 2]) < 0) return {};
    const auto decoded = static_cast<unsigned char>(hex(path[i + 1]) * 16 + hex(path[i + 2]));
    if (decoded == '/' || decoded == '\\' || decoded == 0) return {};
    if (unreserved(decoded)) {
      segment += static_cast<char>(decoded);
    } else {
      static constexpr char digits[] = "0123456789ABCDEF";
      segment += '%';
      segment += digits[decoded >> 4];
      segment += digits[decoded & 15];
    }
    i += 2;
  }
  const bool last_was_dots = segment == "." || segment == "..";
  if (!end_segment()) return {};
  std::string out;
  for (const auto& s : segments) out.append("/").append(s);
  if (out.empty() || ((trailing_slash || last_was_dots) && !segments.empty())) out += '/';
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  const auto decode = [](std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out += ' ';
      } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  };
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (!pair.empty()) out[decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace framex::detail
