#include "framex/runtime.hpp"

#include <memory>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "framex/remote.hpp"
#include "support.hpp"

namespace runtime_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using framex::test::error_of;
using framex::test::run;

std::mutex ids_mutex;
std::condition_variable ids_grew;
std::set<std::thread::id> ids;
std::size_t ids_wanted = 0;

// Records its thread, then holds it until `ids_wanted` threads are recorded (at
// most 5 s), so each call of a batch as large as the pool needs its own thread.
int record_thread(int x) {
  std::unique_lock lock(ids_mutex);
  ids.insert(std::this_thread::get_id());
  ids_grew.notify_all();
  ids_grew.wait_for(lock, 5s, [] { return ids.size() >= ids_wanted; });
  return x;
}
constexpr auto recorded = framex::remote<&record_thread>;

// Runs `calls` concurrent calls of `fn` and returns the set of pool threads used.
template <class Fn>
std::set<std::thread::id> threads_used(Fn fn, int calls) {
  {
    std::lock_guard lock(ids_mutex);
    ids.clear();
    ids_wanted = static_cast<std::size_t>(calls);
  }
  asio::io_context io;
  for (int i = 0; i < calls; ++i) asio::co_spawn(io, fn.remote(i), asio::detached);
  io.run();
  std::lock_guard lock(ids_mutex);
  return ids;
}

TEST(Runtime, DefaultsToOneThreadPerHardwareThread) {
  framex::runtime rt;
  EXPECT_EQ(rt.thread_count(), std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(framex::runtime::current().thread_count(), rt.thread_count());
}

TEST(Runtime, TheThreadCountIsConfigurable) {
  framex::runtime rt({.threads = 3});
  EXPECT_EQ(rt.thread_count(), 3u);
}

TEST(Runtime, ACallRunsOnTheRuntimeNamedInItsOptions) {
  const std::size_t more = framex::runtime::current().thread_count() + 2;  // than the default runtime has
  framex::runtime rt({.threads = more});
  EXPECT_EQ(threads_used(recorded.with({.runtime = &rt}), static_cast<int>(more)).size(), more);
}

TEST(Runtime, AScopeMakesARuntimeCurrentAndRestoresThePreviousOne) {
  framex::runtime& before = framex::runtime::current();
  const std::size_t more = before.thread_count() + 1;
  framex::runtime rt({.threads = more});
  {
    framex::runtime_scope scope(rt);
    EXPECT_EQ(&framex::runtime::current(), &rt);
    EXPECT_EQ(threads_used(recorded, static_cast<int>(more)).size(), more);
  }
  EXPECT_EQ(&framex::runtime::current(), &before);
}

TEST(Runtime, ScopesThatEndOutOfOrderNeverLeaveAnEndedScopesRuntimeCurrent) {
  framex::runtime& before = framex::runtime::current();
  framex::runtime a({.threads = 1});
  framex::runtime b({.threads = 1});
  auto outer = std::make_unique<framex::runtime_scope>(a);
  auto inner = std::make_unique<framex::runtime_scope>(b);
  outer.reset();  // not last-in-first-out
  EXPECT_EQ(&framex::runtime::current(), &b);
  inner.reset();
  EXPECT_EQ(&framex::runtime::current(), &before);  // not `a`, whose scope ended first
}

std::promise<void>* gate_started = nullptr;
std::shared_future<void>* gate_open = nullptr;
int wait_at_gate(int x) {
  gate_started->set_value();
  gate_open->wait();
  return x;
}
std::atomic<int> queued_bodies_run{0};
int count_body(int x) {
  ++queued_bodies_run;
  return x;
}

TEST(Runtime, ShutdownLetsRunningCallsFinishAndCancelsQueuedOnes) {
  framex::runtime rt({.threads = 1});
  std::promise<void> started;
  std::promise<void> open;
  std::shared_future<void> open_future = open.get_future().share();
  gate_started = &started;
  gate_open = &open_future;

  asio::io_context io;
  auto running = asio::co_spawn(io, framex::remote<&wait_at_gate>.with({.runtime = &rt}).remote(7), asio::use_future);
  std::vector<std::future<std::error_code>> queued;
  for (int i = 0; i < 3; ++i) {
    queued.push_back(asio::co_spawn(io, error_of(framex::remote<&count_body>.with({.runtime = &rt}).remote(i)),
                                    asio::use_future));
  }
  std::thread io_thread([&] { io.run(); });

  started.get_future().wait();
  std::thread stopper([&] { rt.shutdown(); });
  while (!rt.stopping()) std::this_thread::yield();
  open.set_value();
  stopper.join();

  EXPECT_EQ(running.get(), 7);
  for (auto& q : queued) EXPECT_EQ(q.get(), framex::errc::cancelled);
  EXPECT_EQ(queued_bodies_run.load(), 0);

  // After shutdown a call completes at once, with cancelled.
  auto late = asio::co_spawn(io, error_of(framex::remote<&count_body>.with({.runtime = &rt}).remote(1)),
                             asio::use_future);
  io_thread.join();  // io.run() returned: no call was left holding work
  io.restart();
  io.run();
  EXPECT_EQ(late.get(), framex::errc::cancelled);
  EXPECT_EQ(queued_bodies_run.load(), 0);
}

TEST(Runtime, ShutdownIsIdempotentAndTheDestructorAfterItIsHarmless) {
  framex::runtime rt({.threads = 2});
  rt.shutdown();
  rt.shutdown();
  EXPECT_TRUE(rt.stopping());
}

}  // namespace runtime_test
