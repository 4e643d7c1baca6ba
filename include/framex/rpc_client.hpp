// framex/rpc_client.hpp — call any msgpack-RPC server by method name, and
// serve the requests it sends back.
//
// A framex runtime calls the functions its workers serve; an `rpc_client`
// calls whatever a msgpack-RPC server offers (Neovim, a Python or Go service,
// a framex worker), typed at the call site with the same codecs:
//
// @code
// framex::rpc_client nvim{io.get_executor(), "127.0.0.1:6666"};   // or "unix:/tmp/nvim.sock"
// int three = co_await nvim.call<int>("nvim_eval", "1+2");
// framex::msgpack_value api = co_await nvim.call("nvim_get_api_info");
// co_await nvim.notify("nvim_command", "echo 'hi'");
// co_await nvim.with({.timeout = 500ms}).call<int>("nvim_eval", "2+2");
// nvim.on_request("add", [](int a, int b) { return a + b; });
// @endcode
//
// It is built on the distributed runtime's connections: calls are pipelined on
// one multiplexed connection (or `connections`), reconnect after a loss,
// honour a timeout and Asio cancellation, and fail with the same errors. An
// error object the server answers with, whatever its shape, ends the call with
// a `framex::remote_error` that carries it (`error_object()`).
//
// The connection is served by the io_context behind `executor` (the caller's
// own, so a reply resumes its coroutine without a thread hop); that
// io_context's `run()` keeps going while the client is open. Requests and
// notifications from the server run their handler on `executor`: a plain one
// runs there and then, so it must not block; one returning
// `asio::awaitable<T>` is spawned there.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "framex/config.hpp"
#include "framex/detail/distributed_call.hpp"
#include "framex/msgpack_value.hpp"

namespace framex {

/// How an `rpc_client` connects and calls.
struct rpc_options {
  /// Deadline of a call that gives none itself (`with`); zero: none.
  std::chrono::milliseconds timeout{0};
  /// How long connecting (and a framex hello) may take.
  std::chrono::milliseconds connect_timeout{3000};
  /// `automatic`: a framex worker is greeted (its limits learned, a token
  /// proved); any other server is called without it. See `distributed.hello`.
  hello_mode hello = hello_mode::automatic;
  /// Multiplexed connections to the server; calls use the least loaded.
  std::size_t connections = 1;
  /// Largest message sent or accepted, in bytes.
  std::size_t max_message_size = std::size_t{64} << 20;
  /// A connection silent this long is pinged, and closed if it stays silent
  /// as long again (any answer counts, an error too); zero: never.
  std::chrono::milliseconds heartbeat{0};
  /// Requests and notifications from the server being handled at once; past
  /// it a request is answered with `overloaded` and a notification dropped
  /// (logged).
  std::size_t max_serving = 1024;
  /// A framex worker's token (see the README's "Security"); empty: none.
  std::string token_file{};
  /// TLS to the server; its certificate must name the host dialled.
  tls_settings tls{};
};

/// Per-call options, given through `client.with({...})`.
struct rpc_call_options {
  /// Deadline for the call; zero: the client's `timeout`.
  std::chrono::steady_clock::duration timeout{};
  /// Further attempts after `worker_lost` or `overloaded` (the call may then
  /// have run more than once), within the one deadline, as
  /// `framex::call_options::retries` describes.
  unsigned retries = 0;
};

namespace detail {

struct rpc_state;

/// The entry a method name travels under (made once per name, kept for the
/// life of the process).
const function_entry& method_entry(std::string_view name);

/// A handler of requests or notifications from the server, type-erased.
struct rpc_handler {
  std::function<void(invocation&)> run;                                            // plain: runs inline
  std::function<boost::asio::awaitable<void>(std::unique_ptr<invocation>)> run_async;  // awaitable: spawned
};

void start_rpc(rpc_state& state, const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
               const boost::asio::any_io_executor& caller, reply_handler handler, bool notification);
void add_rpc_handler(rpc_state& state, std::string name, bool notification, rpc_handler handler);

// Packs an argument with its codec; a string literal or `const char*` as a string.
template <class A>
void pack_argument(msgpack::packer<message_buffer>& p, const A& a) {
  if constexpr (serializable<A>) {
    codec<A>::pack(p, a);
  } else {
    static_assert(std::is_convertible_v<const A&, std::string_view>,
                  "framex::rpc_client: this argument type cannot be serialized (see framex/codec.hpp)");
    codec<std::string_view>::pack(p, std::string_view(a));
  }
}

template <class F>
struct callable_traits : callable_traits<decltype(&F::operator())> {};
template <class R, class... Ps>
struct callable_traits<R (*)(Ps...)> {
  using result = R;
  using holder = std::tuple<decoded_t<Ps>...>;
  template <class Fn>
  static decltype(auto) call(Fn& fn, holder& args) {
    return std::apply([&](auto&... a) -> decltype(auto) { return fn(static_cast<Ps&&>(a)...); }, args);
  }
};
template <class R, class... Ps>
struct callable_traits<R (*)(Ps...) noexcept> : callable_traits<R (*)(Ps...)> {};
template <class R, class C, class... Ps>
struct callable_traits<R (C::*)(Ps...)> : callable_traits<R (*)(Ps...)> {};
template <class R, class C, class... Ps>
struct callable_traits<R (C::*)(Ps...) const> : callable_traits<R (*)(Ps...)> {};
template <class R, class C, class... Ps>
struct callable_traits<R (C::*)(Ps...) noexcept> : callable_traits<R (*)(Ps...)> {};
template <class R, class C, class... Ps>
struct callable_traits<R (C::*)(Ps...) const noexcept> : callable_traits<R (*)(Ps...)> {};

// What a handler of type F becomes: decoding its parameters, running it and
// answering, as a worker does for a function.
template <class F>
rpc_handler make_rpc_handler(std::string name, F fn) {
  using traits = callable_traits<std::decay_t<F>>;
  using holder = typename traits::holder;
  struct held {
    std::string name;
    F fn;
  };
  auto h = std::make_shared<held>(held{std::move(name), std::move(fn)});
  rpc_handler out;
  if constexpr (awaited<typename traits::result>::is_awaitable) {
    out.run_async = [h](std::unique_ptr<invocation> inv) {
      return answer_async<holder>(std::move(inv), h->name, false, [h](holder& args) { return traits::call(h->fn, args); });
    };
  } else {
    out.run = [h](invocation& inv) {
      answer_blocking<holder>(inv, h->name, false, [&](holder& args) -> decltype(auto) { return traits::call(h->fn, args); });
    };
  }
  return out;
}

}  // namespace detail

/// A connection (or several) to one msgpack-RPC server. Thread safety: calls
/// may be made from any thread; handlers are best registered before the
/// first call (a request for a method with no handler is answered with
/// `unknown_function`).
class rpc_client {
 public:
  /// Connects (at the first call) to `address`: "host:port", "unix:PATH" or a
  /// path containing '/'. Throws `framex::config_error` for an address or
  /// options that cannot work.
  rpc_client(const boost::asio::any_io_executor& executor, std::string_view address, rpc_options options = {});
  /// Closes (see `close`).
  ~rpc_client();
  rpc_client(rpc_client&&) noexcept;
  rpc_client& operator=(rpc_client&&) noexcept;

  /// The calls of `with` carry `options`.
  class bound {
   public:
    /// Calls `method` with `args` (each packed with its codec; a string
    /// literal as a string) and decodes the result as `T`: a
    /// `framex::msgpack_value` by default, anything with a codec, or `void`.
    template <class T = msgpack_value, class... Args>
    [[nodiscard]] boost::asio::awaitable<T> call(std::string_view method, const Args&... args) const {
      return send<T>(state_, options_, false, method, args...);
    }
    /// Sends `method` as a notification; completes once a connection has
    /// taken it (the server answers nothing).
    template <class... Args>
    [[nodiscard]] boost::asio::awaitable<void> notify(std::string_view method, const Args&... args) const {
      return send<void>(state_, options_, true, method, args...);
    }

   private:
    friend class rpc_client;
    bound(std::shared_ptr<detail::rpc_state> state, rpc_call_options options) : state_(std::move(state)), options_(options) {}

    template <class T, class... Args>
    static boost::asio::awaitable<T> send(std::shared_ptr<detail::rpc_state> state, const rpc_call_options& options, bool notification,
                                          std::string_view method, const Args&... args) {
      const detail::function_entry& fn = detail::method_entry(method);
      detail::message_buffer params(detail::request_headroom(fn));
      msgpack::packer<detail::message_buffer> p(params);
      p.pack_array(static_cast<std::uint32_t>(sizeof...(Args)));
      (detail::pack_argument(p, args), ...);
      auto start = [state = std::move(state), notification](const detail::function_entry& f, detail::message_buffer b,
                                                   std::chrono::steady_clock::duration t, const resource_needs&,
                                                   const boost::asio::any_io_executor& caller, detail::reply_handler h) {
        detail::start_rpc(*state, f, std::move(b), t, caller, std::move(h), notification);
      };
      return detail::await_remote<T>(std::move(start), fn, std::move(params), options.timeout, options.retries, {});
    }

    std::shared_ptr<detail::rpc_state> state_;
    rpc_call_options options_;
  };

  [[nodiscard]] bound with(rpc_call_options options) const { return bound(state_, options); }

  /// `call<T>(method, args...)` for any Asio completion token, the last
  /// argument: completes with `void(std::exception_ptr, T)` (or
  /// `void(std::exception_ptr)` for `void`) on the token's associated
  /// executor, else the client's. The arguments are packed at once.
  ///
  /// @par Completion signature
  /// `void(std::exception_ptr, T)`; `void(std::exception_ptr)` for `void`.
  ///
  /// @par Per-operation cancellation
  /// `terminal` only (through `asio::co_spawn`): the wait ends with
  /// `errc::cancelled`, and the server is not told (it is no framex worker,
  /// so nothing of framex's is sent to it). `partial` and `total` are not
  /// supported.
  ///
  /// @par Thread safety
  /// Any thread; calls on one client share its connection.
  template <class T = msgpack_value, class... ArgsAndToken>
  auto async_call(std::string_view method, ArgsAndToken&&... args_and_token) const {
    static_assert(sizeof...(ArgsAndToken) >= 1, "framex::rpc_client::async_call: the completion token comes last");
    auto all = std::forward_as_tuple(static_cast<ArgsAndToken&&>(args_and_token)...);
    constexpr std::size_t n = sizeof...(ArgsAndToken) - 1;
    auto call = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return bound::send<T>(state_, {}, false, method, std::get<I>(all)...);
    }(std::make_index_sequence<n>{});
    auto&& token = std::get<n>(all);
    return boost::asio::co_spawn(boost::asio::get_associated_executor(token, executor()), std::move(call),
                                 static_cast<std::tuple_element_t<n, std::tuple<ArgsAndToken&&...>>>(token));
  }

  /// The executor given at construction.
  [[nodiscard]] const boost::asio::any_io_executor& executor() const noexcept;

  /// `with({}).call<T>(method, args...)`.
  template <class T = msgpack_value, class... Args>
  [[nodiscard]] boost::asio::awaitable<T> call(std::string_view method, const Args&... args) const {
    return bound::send<T>(state_, {}, false, method, args...);
  }
  /// `with({}).notify(method, args...)`.
  template <class... Args>
  [[nodiscard]] boost::asio::awaitable<void> notify(std::string_view method, const Args&... args) const {
    return bound::send<void>(state_, {}, true, method, args...);
  }

  /// Serves the server's requests for `method` with `fn`: a callable whose
  /// parameters are decoded from the request's params (like a remote
  /// function's) and whose result (or `asio::awaitable` of one) is the
  /// answer; an exception it throws is answered as an error. Replaces an
  /// earlier handler of `method`.
  template <class F>
  void on_request(std::string method, F fn) {
    detail::add_rpc_handler(*state_, method, false, detail::make_rpc_handler(method, std::move(fn)));
  }
  /// The same for notifications of `method`; a result is dropped, a failure logged.
  template <class F>
  void on_notification(std::string method, F fn) {
    detail::add_rpc_handler(*state_, method, true, detail::make_rpc_handler(method, std::move(fn)));
  }

  /// Fails the calls in flight with `cancelled` and closes the connections,
  /// without waiting for the server. Idempotent; later calls fail.
  void close() noexcept;

 private:
  std::shared_ptr<detail::rpc_state> state_;
};

}  // namespace framex
