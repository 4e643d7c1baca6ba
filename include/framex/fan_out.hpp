// framex/fan_out.hpp — many calls at a time: `gather` a few different ones,
// `map` one function over a range, bounded in flight, and `wait` for the
// first of many `start`ed calls (as Ray's `ray.wait`); `progress_bar` shows a
// `map` going.
//
// @code
// auto [a, b] = co_await framex::gather(heavy.remote(1), scale.remote(2));
// std::vector<int> out = co_await framex::map(heavy, inputs, {.max_in_flight = 64});
// std::vector<framex::started<int>> calls;
// for (int x : inputs) calls.push_back(co_await framex::start(heavy.remote(x)));
// std::vector<std::size_t> ready = co_await framex::wait(calls, 3, 500ms);   // the first 3 done, or fewer at 500 ms
// int first = co_await calls[ready[0]].get();
// @endcode
//
// With GCC 12, build a `map_options` that holds an `on_progress` in its own
// statement, not inside the `co_await` expression: GCC 12 destroys such a
// temporary twice.
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
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <cstddef>
#include <cstdio>
#include <string>
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
///
/// @par Per-operation cancellation
/// `terminal`, from the awaiting coroutine: every call still running is
/// cancelled, and the await throws `errc::cancelled`. No other type.
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
///
/// @par Per-operation cancellation
/// `terminal`, from the awaiting coroutine: the calls in flight are
/// cancelled, no new one starts, and the await throws `errc::cancelled`.
/// No other type.
///
/// @par Thread safety
/// Runs on the awaiting coroutine's executor; `fn` must be safe to call
/// from it (every `framex::remote` wrapper is).
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

/// A `map_options::on_progress` that draws a bar on a terminal:
/// `label [##########..........] 512/1000  2345 calls/s  ETA 0.2 s`, redrawn
/// at most every `every` and at the end. When `out` is not a terminal (a log
/// file, a pipe) only the final line is written. Copies share one bar.
class progress_bar {
 public:
  explicit progress_bar(std::string label = {}, std::FILE* out = stderr,
                        std::chrono::milliseconds every = std::chrono::milliseconds(100))
      : state_(std::make_shared<state>(std::move(label), out, every)) {}

  void operator()(std::size_t done, std::size_t total) const {
    state& s = *state_;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(s.mutex);
    const bool last = done >= total;
    if (!last && (!s.terminal || now - s.drawn < s.every)) return;
    s.drawn = now;
    const double seconds = std::chrono::duration<double>(now - s.started).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
    constexpr std::size_t width = 20;
    const std::size_t filled = total == 0 ? width : std::min(width, done * width / total);
    std::string bar(filled, '#');
    bar.append(width - filled, '.');
    std::fprintf(s.out, "%s%s%s[%s] %zu/%zu  %.0f calls/s", s.terminal ? "\r" : "", s.label.c_str(), s.label.empty() ? "" : " ",
                 bar.c_str(), done, total, rate);
    if (last) {
      std::fprintf(s.out, "  %.1f s", seconds);
    } else if (rate > 0) {
      std::fprintf(s.out, "  ETA %.1f s", static_cast<double>(total - done) / rate);
    }
    // On a terminal, what a longer drawing before left of the line goes.
    std::fputs(s.terminal ? "\x1b[K" : "", s.out);
    if (last) std::fputc('\n', s.out);
    std::fflush(s.out);
  }

 private:
  struct state {
    state(std::string l, std::FILE* o, std::chrono::milliseconds e)
        : label(std::move(l)), out(o), every(e), terminal(::isatty(::fileno(o)) == 1) {}
    std::string label;
    std::FILE* out;
    std::chrono::milliseconds every;
    bool terminal;
    std::mutex mutex;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point drawn{};
  };
  std::shared_ptr<state> state_;
};

/// A call running on its own (see `start`): its result is taken once with
/// `get`, from any coroutine; `wait` watches several. Dropping every copy
/// does not stop the call: its result is then dropped. Copies share the call.
template <class T>
class started {
 public:
  /// True once the call has ended (with a result or an exception).
  [[nodiscard]] bool ready() const {
    std::lock_guard lock(state_->mutex);
    return state_->ended;
  }
  /// Waits for the call's end; yields its result or rethrows its exception.
  /// Call once.
  boost::asio::awaitable<T> get() const {
    std::vector<std::shared_ptr<state>> one{state_};
    const std::vector<std::size_t> ended = co_await wait_for(std::move(one), 1, std::chrono::steady_clock::duration::max());
    if (ended.empty()) throw boost::system::system_error(boost::asio::error::operation_aborted);
    std::lock_guard lock(state_->mutex);
    if (state_->failure) std::rethrow_exception(state_->failure);
    if constexpr (!std::is_void_v<T>) co_return std::move(*state_->value);
  }

  // What a started call and its handles share.
  struct state {
    std::mutex mutex;
    bool ended = false;
    std::exception_ptr failure;
    std::optional<detail::result_slot<T>> value;
    std::vector<std::function<void()>> waiters;  // run (once) when it ends
  };
  explicit started(std::shared_ptr<state> s) : state_(std::move(s)) {}
  [[nodiscard]] const std::shared_ptr<state>& shared_state() const noexcept { return state_; }

  // Waits until `n` of `calls` have ended or `limit` passes; their indexes in
  // the order they ended (ended before the wait: in index order first). Each
  // call's end is sent on a channel that the wait receives from, racing the
  // time limit.
  static boost::asio::awaitable<std::vector<std::size_t>> wait_for(std::vector<std::shared_ptr<state>> calls, std::size_t n,
                                                                   std::chrono::steady_clock::duration limit) {
    namespace asio = boost::asio;
    using channel = asio::experimental::concurrent_channel<void(boost::system::error_code, std::size_t)>;
    const auto ex = co_await asio::this_coro::executor;
    auto ends = std::make_shared<channel>(ex, calls.size());  // room for every call's end: a send never blocks
    n = std::min(n, calls.size());
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      std::lock_guard lock(calls[i]->mutex);
      if (calls[i]->ended) {
        if (out.size() < n) out.push_back(i);
      } else {
        calls[i]->waiters.push_back([ends, i] { (void)ends->try_send(boost::system::error_code{}, i); });
      }
    }
    asio::steady_timer timer(ex);
    timer.expires_at(limit == std::chrono::steady_clock::duration::max() ? std::chrono::steady_clock::time_point::max()
                                                                         : std::chrono::steady_clock::now() + limit);
    while (out.size() < n) {
      auto [order, received, index, timed] =
          co_await asio::experimental::make_parallel_group(ends->async_receive(asio::deferred), timer.async_wait(asio::deferred))
              .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
      (void)timed;
      if (order[0] == 1) break;  // the time limit
      if (received) throw boost::system::system_error(received);  // cancelled
      out.push_back(index);
    }
    co_return out;
  }

 private:
  std::shared_ptr<state> state_;
};

/// Starts `call` on the awaiting coroutine's executor and returns at once,
/// with a handle to its result.
template <class T>
boost::asio::awaitable<started<T>> start(boost::asio::awaitable<T> call) {
  namespace asio = boost::asio;
  auto s = std::make_shared<typename started<T>::state>();
  const auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex, detail::as_slot(std::move(call)), [s](std::exception_ptr e, detail::result_slot<T> v) {
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(s->mutex);
      s->ended = true;
      s->failure = e;
      if (!e) s->value.emplace(std::move(v));
      waiters.swap(s->waiters);
    }
    for (auto& w : waiters) w();
  });
  co_return started<T>(std::move(s));
}

/// Waits until `n` of `calls` have ended, or `limit` has passed (zero: do
/// not wait; the default: no limit). Yields the indexes of those that ended,
/// at most `n`, in the order they ended (those ended before the wait first,
/// by index); take their results with `calls[i].get()`. The others run on.
/// Honours the awaiting coroutine's cancellation.
template <class T>
boost::asio::awaitable<std::vector<std::size_t>> wait(const std::vector<started<T>>& calls, std::size_t n,
                                                      std::chrono::steady_clock::duration limit = std::chrono::steady_clock::duration::max()) {
  std::vector<std::shared_ptr<typename started<T>::state>> states;
  states.reserve(calls.size());
  for (const auto& c : calls) states.push_back(c.shared_state());
  return started<T>::wait_for(std::move(states), n, limit);
}

}  // namespace framex
