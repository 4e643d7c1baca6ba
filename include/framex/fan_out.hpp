// framex/fan_out.hpp — many calls at a time: `gather` a few different ones,
// `map` one function over a range, bounded in flight.
//
// @code
// auto [a, b] = co_await framex::gather(heavy.remote(1), scale.remote(2));
// std::vector<int> out = co_await framex::map(heavy, inputs, {.max_in_flight = 64});
// @endcode
//
// Both run their calls as coroutines on the awaiting coroutine's executor
// (several threads may run it) and end when every call has. The first failure
// cancels the calls still running (through Asio's cancellation, which a
// framex call honours at once) and is rethrown; cancelling the awaiting
// coroutine cancels them all the same way.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "framex/detail/signature.hpp"

namespace framex {

/// How `gather` ends when a call fails.
struct gather_options {
  /// True: the first failure cancels the other calls and is rethrown at once.
  /// False: every call runs to its end, then the first failure (in argument
  /// order) is rethrown.
  bool cancel_on_failure = true;
};

/// How `map` runs.
struct map_options {
  /// Calls in flight at most (at least 1).
  std::size_t max_in_flight = 64;
  /// True: results in the order of the inputs. False: in the order the calls
  /// completed (cheaper to consume as a stream of work done).
  bool ordered = true;
  /// Called after each call completes with (calls done, calls in all); on the
  /// thread that completed it, one call at a time.
  std::function<void(std::size_t done, std::size_t total)> on_progress{};
};

namespace detail {

// What an awaitable of `void` contributes to a tuple of results.
template <class T>
using result_slot = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
boost::asio::awaitable<result_slot<T>> as_slot(boost::asio::awaitable<T> call) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(call);
    co_return std::monostate{};
  } else {
    co_return co_await std::move(call);
  }
}

// A parallel group's condition: the first failure cancels the other
// operations, when `enabled`.
struct cancel_on_failure {
  bool enabled;
  template <class... Rest>
  boost::asio::cancellation_type_t operator()(const std::exception_ptr& e, Rest&&...) const {
    return enabled && e ? boost::asio::cancellation_type::all : boost::asio::cancellation_type::none;
  }
};

// The value of `fn.remote(x)`, with `x` spread over the parameters when it is a tuple.
template <class Fn, class X>
auto remote_of(const Fn& fn, X&& x) {
  // A call that does not fit is routed to a `void` overload that names the misfit.
  if constexpr (!std::is_void_v<decltype(fn.remote(static_cast<X&&>(x)))>) {
    return fn.remote(static_cast<X&&>(x));
  } else {
    return std::apply([&](auto&&... a) { return fn.remote(static_cast<decltype(a)&&>(a)...); }, static_cast<X&&>(x));
  }
}

}  // namespace detail

/// Runs `calls` (awaitables, e.g. `fn.remote(...)`) concurrently and yields
/// their results as a tuple, in argument order (`std::monostate` for a
/// `void` one).
template <class... T>
boost::asio::awaitable<std::tuple<detail::result_slot<T>...>> gather(boost::asio::awaitable<T>... calls) {
  return gather(gather_options{}, std::move(calls)...);
}

template <class... T>
boost::asio::awaitable<std::tuple<detail::result_slot<T>...>> gather(gather_options options, boost::asio::awaitable<T>... calls) {
  namespace asio = boost::asio;
  namespace x = asio::experimental;
  const auto ex = co_await asio::this_coro::executor;
  auto outcome = co_await x::make_parallel_group(asio::co_spawn(ex, detail::as_slot(std::move(calls)), asio::deferred)...)
                     .async_wait(detail::cancel_on_failure{options.cancel_on_failure}, asio::use_awaitable);
  // outcome: (order, e0, r0, e1, r1, ...)
  {
    std::exception_ptr failure;
    const auto& order = std::get<0>(outcome);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      const std::exception_ptr errors[] = {std::get<1 + 2 * I>(outcome)...};
      if (options.cancel_on_failure) {
        for (const std::size_t i : order) {
          if (errors[i]) {
            failure = errors[i];
            break;
          }
        }
      } else {
        for (const auto& e : errors) {
          if (e && !failure) failure = e;
        }
      }
    }(std::index_sequence_for<T...>{});
    if (failure) std::rethrow_exception(failure);
  }
  co_return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<detail::result_slot<T>...>(std::move(std::get<2 + 2 * I>(outcome))...);
  }(std::index_sequence_for<T...>{});
}

/// Calls `fn` (a `framex::remote<&f>`, bound or with options, or anything
/// with a `.remote(...)`) once per element of `inputs`, at most
/// `max_in_flight` at a time; an element that is a tuple is spread over the
/// parameters. Yields the results (`ordered`: in input order), or nothing
/// for a function returning `void`. `fn` is copied; `inputs` is referred
/// to, and must outlive the await.
template <class Fn, std::ranges::forward_range Range>
auto map(Fn fn, const Range& inputs, map_options options = {})
    -> boost::asio::awaitable<std::conditional_t<
        std::is_void_v<typename detail::awaited<decltype(detail::remote_of(fn, *std::ranges::begin(inputs)))>::type>, void,
        std::vector<typename detail::awaited<decltype(detail::remote_of(fn, *std::ranges::begin(inputs)))>::type>>> {
  namespace asio = boost::asio;
  using value = typename detail::awaited<decltype(detail::remote_of(fn, *std::ranges::begin(inputs)))>::type;
  using iterator = std::ranges::iterator_t<const Range>;
  std::vector<iterator> items;
  for (auto it = std::ranges::begin(inputs); it != std::ranges::end(inputs); ++it) items.push_back(it);
  const std::size_t total = items.size();
  // Each slot is written by the one call that took its index.
  std::vector<std::optional<detail::result_slot<value>>> results(total);
  std::atomic<std::size_t> next{0}, done{0}, filled{0};
  std::mutex progress;  // on_progress one call at a time
  const auto one_worker = [&]() -> asio::awaitable<void> {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < total;) {
      auto call = detail::remote_of(fn, *items[i]);
      if constexpr (std::is_void_v<value>) {
        co_await std::move(call);
      } else {
        auto r = co_await std::move(call);
        results[options.ordered ? i : filled.fetch_add(1, std::memory_order_relaxed)].emplace(std::move(r));
      }
      const std::size_t now = done.fetch_add(1, std::memory_order_acq_rel) + 1;
      if (options.on_progress) {
        std::lock_guard lock(progress);
        options.on_progress(now, total);
      }
    }
  };
  const std::size_t workers = std::min(std::max<std::size_t>(1, options.max_in_flight), total);
  if (workers != 0) {
    const auto ex = co_await asio::this_coro::executor;
    using op = decltype(asio::co_spawn(ex, one_worker(), asio::deferred));
    std::vector<op> ops;
    ops.reserve(workers);
    for (std::size_t w = 0; w < workers; ++w) ops.push_back(asio::co_spawn(ex, one_worker(), asio::deferred));
    auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                               .async_wait(asio::experimental::wait_for_one_error(), asio::use_awaitable);
    for (const std::size_t w : order) {
      if (errors[w]) std::rethrow_exception(errors[w]);
    }
  }
  if constexpr (!std::is_void_v<value>) {
    std::vector<value> out;
    out.reserve(total);
    for (auto& r : results) out.push_back(std::move(*r));
    co_return out;
  }
}

}  // namespace framex
