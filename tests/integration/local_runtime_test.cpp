// The local runtime under real load: real threads, real timers, real time.
// Time bounds here are generous functional limits (is the work parallel, does a
// timeout end the wait early), not performance figures.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "support.hpp"

namespace local_runtime_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using framex::test::clock;
using framex::test::error_of;
using framex::test::run;
using framex::test::since;

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
constexpr auto sleeper = framex::remote<&sleep_ms>;

TEST(LocalRuntime, TheCallersIoContextKeepsServingTimersWhileBlockingCallsRun) {
  framex::runtime rt({.threads = 4});
  asio::io_context io;  // one thread: everything below shares it
  std::atomic<int> finished{0};
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      co_await sleeper.with({.runtime = &rt}).remote(1000);
      ++finished;
    }, asio::detached);
  }
  std::vector<std::chrono::milliseconds> gaps;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer timer(io);
    auto last = clock::now();
    while (finished < 4) {
      timer.expires_after(10ms);
      co_await timer.async_wait(asio::use_awaitable);
      gaps.push_back(since(last));
      last = clock::now();
    }
  }, asio::detached);
  io.run();

  EXPECT_EQ(finished, 4);
  ASSERT_GE(gaps.size(), 10u);  // ~100 ticks of 10 ms fit in 1 s
  // A blocked io_context would show one gap of a whole call (1 s); a loaded
  // machine may delay a tick, but not by half of that.
  for (const auto gap : gaps) EXPECT_LT(gap, 900ms) << "the io_context was blocked";
}

// Each call waits (at most 5 s) until `n` calls run at once, and counts the
// most it saw: calls run one after another would see 1.
std::mutex meeting;
std::condition_variable arrived;
int running_now = 0;
int most_at_once = 0;
int meet(int n) {
  std::unique_lock lock(meeting);
  most_at_once = std::max(most_at_once, ++running_now);
  arrived.notify_all();
  arrived.wait_for(lock, 5s, [&] { return most_at_once >= n; });
  --running_now;
  return n;
}

TEST(LocalRuntime, BlockingCallsRunInParallelUpToThePoolSize) {
  constexpr int n = 4;
  framex::runtime rt({.threads = n});
  const auto meeting = framex::remote<&meet>.with({.runtime = &rt});
  run([&]() -> asio::awaitable<void> {
    co_await (meeting.remote(n) && meeting.remote(n) && meeting.remote(n) && meeting.remote(n));
  });
  EXPECT_EQ(most_at_once, n) << "calls on a pool of " << n << " threads did not all run at once";
}

int add_one(int x) { return x + 1; }

// Marked cheap: it runs on the caller's thread.
std::thread::id where_it_ran() { return std::this_thread::get_id(); }
}  // namespace local_runtime_test
template <>
inline constexpr bool framex::inline_ok<&local_runtime_test::where_it_ran> = true;
namespace local_runtime_test {

TEST(LocalRuntime, AFunctionMarkedInlineOkRunsOnTheCallersThread) {
  framex::runtime rt({.threads = 2});
  const auto [caller, ran] = run([&]() -> asio::awaitable<std::pair<std::thread::id, std::thread::id>> {
    co_return std::pair{std::this_thread::get_id(), co_await framex::remote<&where_it_ran>.with({.runtime = &rt}).remote()};
  });
  EXPECT_EQ(ran, caller);
  const auto all = framex::stats(rt).functions;
  const auto counted = std::find_if(all.begin(), all.end(), [](const auto& f) { return f.name == "local_runtime_test::where_it_ran"; });
  ASSERT_NE(counted, all.end());
  EXPECT_EQ(counted->calls, 1u);
}
asio::awaitable<int> async_add_two(int x) { co_return x + 2; }

TEST(LocalRuntime, AHundredThousandConcurrentCallsAllCompleteWithTheRightResults) {
  constexpr int calls = 100'000;
  framex::runtime rt({.threads = 4});
  framex::runtime_scope scope(rt);
  asio::io_context io;
  std::atomic<int> right{0};
  std::atomic<int> wrong{0};
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(io, [i, &right, &wrong]() -> asio::awaitable<void> {
      const bool blocking = i % 2 == 0;
      const int got = blocking ? co_await framex::remote<&add_one>.remote(i)
                               : co_await framex::remote<&async_add_two>.remote(i);
      (got == i + (blocking ? 1 : 2) ? right : wrong)++;
    }, asio::detached);
  }
  std::thread second([&] { io.run(); });  // two threads drive the callers
  io.run();
  second.join();
  EXPECT_EQ(right, calls);
  EXPECT_EQ(wrong, 0);
}

// ---- timeouts ----

std::atomic<int> live_results{0};
std::atomic<bool> slow_body_done{false};
struct counted {
  counted() { ++live_results; }
  counted(const counted&) { ++live_results; }
  counted(counted&&) noexcept { ++live_results; }
  ~counted() { --live_results; }
};
counted slow_counted(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  slow_body_done = true;
  return {};
}

TEST(LocalRuntime, ATimeoutEndsTheWaitWhileTheBodyFinishesInTheBackgroundAndItsResultIsDropped) {
  framex::runtime rt({.threads = 1});
  slow_body_done = false;
  const auto ec = run([&]() {
    return error_of(framex::remote<&slow_counted>.with({.timeout = 30ms, .runtime = &rt}).remote(2000));
  });
  EXPECT_EQ(ec, framex::errc::timeout);
  EXPECT_FALSE(slow_body_done);  // the wait did not wait for the body
  rt.shutdown();                 // joins the pool: the body has finished
  EXPECT_TRUE(slow_body_done);
  EXPECT_EQ(live_results, 0);    // and its result was destroyed, not leaked
}

TEST(LocalRuntime, ACallThatFinishesBeforeItsTimeoutReturnsItsValue) {
  EXPECT_EQ(run([]() -> asio::awaitable<int> { co_return co_await sleeper.with({.timeout = 5s}).remote(1); }), 1);
}

std::atomic<bool> queued_body_ran{false};
int mark_ran(int x) {
  queued_body_ran = true;
  return x;
}

TEST(LocalRuntime, ACallTimedOutBeforeItStartedNeverRuns) {
  framex::runtime rt({.threads = 1});
  queued_body_ran = false;
  asio::io_context io;
  asio::co_spawn(io, sleeper.with({.runtime = &rt}).remote(1000), asio::detached);  // occupies the only thread
  auto ec = asio::co_spawn(io, error_of(framex::remote<&mark_ran>.with({.timeout = 20ms, .runtime = &rt}).remote(1)),
                           asio::use_future);
  io.run();
  EXPECT_EQ(ec.get(), framex::errc::timeout);
  rt.shutdown();
  EXPECT_FALSE(queued_body_ran);
}

// A service stopped with blocking calls in flight, in the order the README
// recommends (the io_context stops, the runtime declared after it shuts down and
// goes, then the io_context goes): every call's completion was posted to an
// io_context that never runs again, and destroying it frees each call and the
// coroutine frame waiting on it.
struct frame_guard {
  std::atomic<int>& freed;
  ~frame_guard() { ++freed; }
};

TEST(LocalRuntime, CallsInFlightWhenTheServiceStopsFreeTheirCoroutineFrames) {
  std::atomic<int> started{0};
  std::atomic<int> freed{0};
  {
    asio::io_context io;
    framex::runtime rt({.threads = 2});
    for (int i = 0; i < 4; ++i) {  // two run, two wait in the pool's queue
      asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        const frame_guard guard{freed};
        ++started;
        co_await sleeper.with({.runtime = &rt}).remote(100);
      }, asio::detached);
    }
    while (started < 4) io.run_one();
    io.stop();      // SIGTERM: the service's io_context returns from run()
    rt.shutdown();  // the bodies that run finish; the queued ones are cancelled
    EXPECT_EQ(freed, 0);  // every completion waits in the stopped io_context
  }
  EXPECT_EQ(freed, 4);
}

void fill_slowly(std::vector<int>& out) {
  std::this_thread::sleep_for(150ms);
  out.assign(1000, 1);  // writes into the caller's vector
}

TEST(LocalRuntime, ACallAliasingCallerMemoryEndsItsTimeoutOnlyWhenTheBodyReturns) {
  std::vector<int> out;
  const auto start = clock::now();
  const auto ec = run([&]() { return error_of(framex::remote<&fill_slowly>.with({.timeout = 20ms}).remote(out)); });
  EXPECT_EQ(ec, framex::errc::timeout);
  EXPECT_GE(since(start), 140ms);
  EXPECT_EQ(out.size(), 1000u);  // the frame owning `out` was still there for the write
}

asio::awaitable<int> async_wait_long() {
  asio::steady_timer t(co_await asio::this_coro::executor, 10s);
  co_await t.async_wait(asio::use_awaitable);
  co_return 1;
}

TEST(LocalRuntime, AnAsyncFunctionUnderATimeoutIsCancelledAndReportsTimeout) {
  const auto start = clock::now();
  const auto ec = run([]() { return error_of(framex::remote<&async_wait_long>.with({.timeout = 30ms}).remote()); });
  EXPECT_EQ(ec, framex::errc::timeout);
  EXPECT_LT(since(start), 2s);
}

// ---- cancellation ----

TEST(LocalRuntime, AwaitableOperatorsCancelABlockingCallWhenATimerWinsTheRace) {
  framex::runtime rt({.threads = 1});
  const auto winner = run([&]() -> asio::awaitable<std::size_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
    auto result = co_await (sleeper.with({.runtime = &rt}).remote(2000) || timer.async_wait(asio::use_awaitable));
    co_return result.index();
  });
  EXPECT_EQ(winner, 1u);  // the wait for the call ended when the timer won
}

TEST(LocalRuntime, ACancellationSignalEndsTheWaitWithCancelled) {
  framex::runtime rt({.threads = 1});
  asio::io_context io;
  asio::cancellation_signal signal;
  std::error_code got;
  asio::co_spawn(io, sleeper.with({.runtime = &rt}).remote(2000),
                 asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, int) {
                   try {
                     if (e) std::rethrow_exception(e);
                   } catch (const std::system_error& err) {
                     got = err.code();
                   }
                 }));
  asio::steady_timer timer(io, 20ms);
  timer.async_wait([&](auto) { signal.emit(asio::cancellation_type::terminal); });
  io.run();
  EXPECT_EQ(got, framex::errc::cancelled);  // not the value the body returns
}

TEST(LocalRuntime, AwaitableOperatorsCancelAnAsyncCall) {
  const auto winner = run([]() -> asio::awaitable<std::size_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
    auto result = co_await (framex::remote<&async_wait_long>.remote() || timer.async_wait(asio::use_awaitable));
    co_return result.index();
  });
  EXPECT_EQ(winner, 1u);
}

}  // namespace local_runtime_test
