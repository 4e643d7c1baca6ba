// A small HTTP/1.1 (or HTTPS) server on Boost.Beast: one coroutine per connection,
// keep-alive, a deadline for the headers and another for the body, a body
// limit, at most `max_connections` connections (more wait in the kernel's
// backlog), a backoff on accept errors (EMFILE), and a graceful stop that lets
// requests in flight finish. What each request gets is the owner's business;
// what a handler's failure tells the client is a fixed message and an error id,
// the full text going to the log.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "net/tls.hpp"
#include "framex/detail/http.hpp"

namespace framex::detail {

class http_server {
 public:
  /// Answers one request: `method` is "GET", "POST", ...; `path` has no query.
  using dispatch_fn = std::function<boost::asio::awaitable<http_reply>(const std::string& method,
                                                                        const std::string& path, http_call& call)>;
  struct options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::size_t body_limit = 1 << 20;
    std::chrono::milliseconds read_timeout{30000};
    std::chrono::milliseconds header_timeout{10000};
    std::size_t max_connections = 1024;  // 0: no limit
    /// HTTPS: the server's context (the TLS handshake must end within
    /// `header_timeout`). Null: plain HTTP.
    std::shared_ptr<net::tls_context> tls;
  };

  /// Listens at once; throws `boost::system::system_error` if it cannot.
  http_server(boost::asio::io_context& io, const options& o, dispatch_fn dispatch);
  ~http_server();

  [[nodiscard]] std::uint16_t port() const noexcept;
  /// Requests being answered now.
  [[nodiscard]] std::size_t in_flight() const noexcept;
  /// Stops accepting; idle connections close, busy ones close after their
  /// response. Thread safety: any thread.
  void stop();

  struct state;

 private:
  std::shared_ptr<state> state_;
};

/// `{"status": status, "message": message}`.
http_reply error_reply(int status, const std::string& message);

/// Splits "a=1&b=x%20y" into decoded pairs.
std::map<std::string, std::string> parse_query(std::string_view query);

/// A request's path as every rule, route and plugin sees it and a proxy
/// forwards it (RFC 3986, 6.2.2): unreserved characters decoded, other
/// escapes in upper case, "." and ".." segments and repeated slashes
/// removed. Empty (refused) for a path that does not start with "/", has a
/// malformed escape, an encoded "/" or "\", a "\" or a NUL, or climbs above
/// the root.
std::string normalized_path(std::string_view path);

}  // namespace framex::detail
