// framex/as_error_code.hpp — framex's completions with an error code.
//
// `async_remote` and `rpc_client::async_call` complete with
// `void(std::exception_ptr, T)`. Wrapping their token in
// `framex::as_error_code(token)` gives it `void(boost::system::error_code, T)`
// instead: the error-code signature Asio's tokens know (`redirect_error`,
// `use_future` and `use_awaitable` throw on it, `as_tuple` keeps it). The code
// is a `std::error_code` held as Boost's (`std::error_code(ec)` gives it back,
// and `ec == framex::errc::timeout` compares):
//
// @code
// boost::system::error_code ec;
// int v = co_await fn.async_remote(21, framex::as_error_code(asio::redirect_error(asio::use_awaitable, ec)));
// if (ec == framex::errc::timeout) ...
// fn.async_remote(21, framex::as_error_code([](boost::system::error_code ec, int v) { ... }));
// @endcode
//
// The code is the `std::system_error`'s (framex's own errors, and a worker's
// `remote_error`, whose code says how the call failed); any other exception is
// `errc::exception`. Only the code is kept: to see a remote exception's type
// and message, keep the `std::exception_ptr` form.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <exception>
#include <system_error>
#include <type_traits>
#include <utility>

#include "framex/error.hpp"

namespace framex {

/// The token adapter made by `as_error_code`.
template <class Token>
struct as_error_code_t {
  Token token;
};

/// `token`, given framex's completions as `void(std::error_code, T)`.
template <class Token>
as_error_code_t<std::decay_t<Token>> as_error_code(Token&& token) {
  return {std::forward<Token>(token)};
}

/// The code a call's exception stands for (empty for none).
inline std::error_code error_code_of(const std::exception_ptr& e) noexcept {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& x) {
    return x.code();
  } catch (...) {
    return make_error_code(errc::exception);
  }
}

namespace detail {
// A handler taking `(std::exception_ptr, T...)` that calls `handler` with `(std::error_code, T...)`.
template <class Handler>
struct error_code_handler {
  Handler handler;
  template <class... T>
  void operator()(std::exception_ptr e, T&&... values) {
    std::move(handler)(boost::system::error_code(error_code_of(e)), std::forward<T>(values)...);
  }
};
}  // namespace detail

}  // namespace framex

namespace boost::asio {

template <class Token, class... T>
struct async_result<framex::as_error_code_t<Token>, void(std::exception_ptr, T...)> {
  template <class Initiation, class RawToken, class... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    return async_initiate<Token, void(boost::system::error_code, T...)>(
        [initiation = std::forward<Initiation>(initiation)](auto&& handler, auto&&... a) mutable {
          using handler_type = std::decay_t<decltype(handler)>;
          std::move(initiation)(framex::detail::error_code_handler<handler_type>{std::forward<decltype(handler)>(handler)},
                                std::forward<decltype(a)>(a)...);
        },
        token.token, std::forward<Args>(args)...);
  }
};

// The adapted handler keeps the inner one's executor, allocator and cancellation slot.
template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, framex::detail::error_code_handler<Handler>, DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(const framex::detail::error_code_handler<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const framex::detail::error_code_handler<Handler>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};

// So is the token's executor, where the completion runs.
template <template <class, class> class Associator, class Token, class DefaultCandidate>
struct associator<Associator, framex::as_error_code_t<Token>, DefaultCandidate> : Associator<Token, DefaultCandidate> {
  static typename Associator<Token, DefaultCandidate>::type get(const framex::as_error_code_t<Token>& t) noexcept {
    return Associator<Token, DefaultCandidate>::get(t.token);
  }
  static auto get(const framex::as_error_code_t<Token>& t, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Token, DefaultCandidate>::get(t.token, c)) {
    return Associator<Token, DefaultCandidate>::get(t.token, c);
  }
};

}  // namespace boost::asio
