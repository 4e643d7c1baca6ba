// Template bodies for framex/remote.hpp: how a call is started in each case.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <functional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "framex/detail/blocking_call.hpp"
#include "framex/detail/distributed_call.hpp"
#include "framex/detail/outcome.hpp"

namespace framex::detail {

// Runs `call` to its end and hands the outcome to `token`, on the token's
// associated executor or else the system executor (see `async_remote`).
template <class T, class Token>
auto complete_with(boost::asio::awaitable<T> call, Token&& token) {
  const boost::asio::any_io_executor fallback = boost::asio::system_executor();
  return boost::asio::co_spawn(boost::asio::get_associated_executor(token, fallback), std::move(call), std::forward<Token>(token));
}

template <auto F, class Object, class... Args>
decltype(auto) invoke_now(Object&& object, Args&&... args) {
  if constexpr (std::is_same_v<std::remove_cvref_t<Object>, no_object>) {
    return std::invoke(F, std::forward<Args>(args)...);
  } else {
    return std::invoke(F, std::forward<Object>(object), std::forward<Args>(args)...);
  }
}

// A blocking call: one allocation for the call, one hop to the pool, one back.
template <class R, class Invoker>
boost::asio::awaitable<R> run_blocking(runtime& rt, std::chrono::steady_clock::duration timeout, stats_cell& stats,
                                       Invoker invoker) {
  auto out = co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(outcome<R>)>(
      [&rt, timeout, &stats](auto handler, Invoker&& inv) {
        blocking_call<R, Invoker, decltype(handler)>::start(rt, timeout, stats, std::move(inv), std::move(handler));
      },
      boost::asio::use_awaitable, std::move(invoker));
  co_return std::move(out).get();
}

// A blocking function marked `inline_ok`: run on the caller's thread, no hop.
template <class R, class Invoker>
boost::asio::awaitable<R> run_inline(stats_cell& stats, Invoker invoker) {
  const auto started = std::chrono::steady_clock::now();
  outcome<R> out;
  out.capture(invoker);
  record_outcome(stats, started, out);
  co_return std::move(out).get();
}

template <class T, class Executor>
boost::asio::awaitable<outcome<T>, Executor> capture_async(boost::asio::awaitable<T, Executor> op) {
  outcome<T> out;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(op);
      out.set_value();
    } else {
      out.set_value(co_await std::move(op));
    }
  } catch (...) {
    out.set_error(std::current_exception());
  }
  co_return out;
}

// An async function under a deadline. `||` from awaitable_operators would wait
// for the first *success*, so a function that throws early would be reported
// only at the deadline; wait_for_one takes whichever finishes first.
template <class T, class Executor>
boost::asio::awaitable<T, Executor> await_with_deadline(boost::asio::awaitable<T, Executor> op,
                                                        std::chrono::steady_clock::duration timeout) {
  namespace asio = boost::asio;
  using clock = std::chrono::steady_clock;
  auto ex = co_await asio::this_coro::executor;
  asio::basic_waitable_timer<clock, asio::wait_traits<clock>, Executor> timer(ex, timeout);
  auto [order, spawn_error, out, timer_error] =
      co_await asio::experimental::make_parallel_group(asio::co_spawn(ex, capture_async(std::move(op)), asio::deferred),
                                                       timer.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable_t<Executor>{});
  if (order[0] == 1 && !timer_error) throw std::system_error(make_error_code(errc::timeout));
  if (spawn_error) std::rethrow_exception(spawn_error);
  if (out.has_error()) {
    const auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) throw std::system_error(make_error_code(errc::cancelled));
  }
  co_return std::move(out).get();
}

// A call of an actor's method (framex/actor.hpp).
template <auto F, class Awaitable, class... Ps, class T, class... Args>
Awaitable call_actor(type_list<Ps...>, const call_options& options, const actor<T>& handle, Args&&... args);

template <auto F, class Awaitable, class... Ps, class Object, class... Args>
Awaitable start_call(type_list<Ps...>, const call_options& options, Object&& object, Args&&... args) {
  using traits = fn_traits<decltype(F)>;
  using result = typename traits::result;
  if constexpr (actor_handle<std::remove_cvref_t<Object>>::value) {
    return call_actor<F, Awaitable>(type_list<Ps...>{}, options, object, std::forward<Args>(args)...);
  } else {
    runtime& rt = runtime::or_current(options.runtime);
    if constexpr (distributable<F>) {
      if (is_distributed(rt)) {
        return call_distributed<F, typename awaited<result>::type>(rt, options, std::forward<Object>(object),
                                                                   std::forward<Args>(args)...);
      }
    }
    if constexpr (awaited<result>::is_awaitable) {
      if (options.timeout <= std::chrono::steady_clock::duration::zero()) {
        return invoke_now<F>(std::forward<Object>(object), std::forward<Args>(args)...);
      }
      return await_with_deadline(invoke_now<F>(std::forward<Object>(object), std::forward<Args>(args)...),
                                 options.timeout);
    } else {
      using holder = std::conditional_t<traits::is_member, held_object<call_target<typename traits::object, Object>>,
                                        no_object>;
      static stats_cell& stats = stats_for(name_of<F>(), false);
      if constexpr (inline_ok<F>) {
        return run_inline<result>(stats, invoker<F, holder, Ps...>(std::forward<Object>(object), std::forward<Args>(args)...));
      } else {
        return run_blocking<result>(rt, options.timeout, stats,
                                    invoker<F, holder, Ps...>(std::forward<Object>(object), std::forward<Args>(args)...));
      }
    }
  }
}

}  // namespace framex::detail
