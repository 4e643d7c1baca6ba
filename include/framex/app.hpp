// framex/app.hpp — let framex serve your handlers over HTTP.
//
// `framex::app` is an HTTP ingress (Boost.Beast, compiled into the library)
// that binds each request's parameters to an ordinary or coroutine function and
// returns its result as JSON, plus a live dashboard on a second port. It runs
// on the `framex::config` it is given, local or distributed, and installs its
// runtime for the handlers' `.remote()` calls.
//
// @code
// struct job { std::string label; int n; };
// BOOST_DESCRIBE_STRUCT(job, (), (label, n))
// asio::awaitable<int> run_job(job j) { co_return co_await heavy.remote(j.n); }
// int add(int a, int b) { return a + b; }
//
// framex::app app{framex::config::load(argc, argv)};
// app.on_request("/api/v1/demo/run", &run_job, {.methods = {framex::http_method::post}});
// app.on_request("/api/v1/add", &add, {.params = {"a", "b"}});   // ?a=1&b=2 or {"a":1,"b":2}
// app.run();                                                      // until SIGINT/SIGTERM
// @endcode
//
// Binding: a parameter named at registration comes from the query string or,
// for a JSON body, from the body object's member of that name. A single
// unnamed parameter of a `BOOST_DESCRIBE_STRUCT` type is the whole JSON body (or
// the query string's keys). Results go through Boost.JSON (described structs
// become objects). Errors are JSON `{status, message}`: 400 naming a bad
// parameter, 404, 405, 413 for a body over `server.body_limit`, 500 for a
// handler's exception, 504 for `errc::timeout`. Built in: `/health`, `/ping`,
// `/version`.
//
// An ordinary function runs on the I/O thread: keep it short, and call
// blocking work through `.remote()` from a coroutine handler.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framex/config.hpp"
#include "framex/detail/http.hpp"
#include "framex/runtime.hpp"

namespace framex {

enum class http_method { get, post, put, patch, del };

/// "GET", "POST", "PUT", "PATCH", "DELETE".
constexpr const char* to_string(http_method m) noexcept {
  switch (m) {
    case http_method::get: return "GET";
    case http_method::post: return "POST";
    case http_method::put: return "PUT";
    case http_method::patch: return "PATCH";
    case http_method::del: return "DELETE";
  }
  return "GET";
}

/// A request as it came, for a handler that takes it whole (a plugin method
/// whose one parameter is `const framex::http_request&`): its method, target
/// (path and query), headers of note and body. Such a handler returns a
/// `framex::http_response` (or an awaitable of one), sent as it is.
using http_request = detail::http_call;
using http_response = detail::http_reply;

/// How a route binds and which methods it takes.
struct route_options {
  /// Names of the function's parameters, in order; empty for none or for a
  /// single described-struct parameter bound from the whole body.
  std::vector<std::string> params{};
  /// Methods served; others get 405.
  std::vector<http_method> methods{http_method::get, http_method::post};
  /// One line for the /docs page and openapi.json.
  std::string summary{};
};

/// An HTTP ingress and dashboard around a runtime. Not copyable.
///
/// Thread safety: register routes before `start`/`run`; `stop` may be called
/// from any thread.
class app {
 public:
  /// Builds the runtime `cfg` describes; nothing listens until `start`/`run`.
  explicit app(const config& cfg);
  ~app();
  app(const app&) = delete;
  app& operator=(const app&) = delete;

  /// Serves `fn` at `path`. `fn` is a function pointer (ordinary, or returning
  /// `asio::awaitable<T>`) whose parameters are bound as described above.
  template <class Fn>
  app& on_request(std::string path, Fn fn, route_options options = {});

  /// Listens on `server.host:server.port` and the dashboard port, on background
  /// threads. Throws `std::system_error` if a port is taken.
  void start();
  /// `start`, then waits for SIGINT or SIGTERM, then `stop`.
  void run();
  /// Stops accepting, lets requests in flight finish (up to 10 s), closes idle
  /// connections and joins the threads. Idempotent.
  void stop();

  /// The bound ports (after `start`; useful with port 0).
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] std::uint16_t dashboard_port() const noexcept;

  /// The runtime handlers' `.remote()` calls use.
  [[nodiscard]] framex::runtime& runtime() noexcept;

  class impl;

 private:
  void add_route(std::string path, std::vector<http_method> methods, detail::http_handler handler, detail::route_doc doc);
  std::unique_ptr<impl> impl_;
};

}  // namespace framex

#include "framex/impl/app.hpp"
