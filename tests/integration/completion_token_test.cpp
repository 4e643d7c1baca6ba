// async_remote and rpc_client::async_call with Asio completion tokens other
// than use_awaitable: futures from plain threads, callbacks, deferred,
// as_tuple, a bound executor; locally, on a worker, and on an actor.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "framex/framex.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace completion_token_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using framex::test::worker_process;

int twice(int x) {
  if (x < 0) throw std::invalid_argument("negative " + std::to_string(x));
  return 2 * x;
}
std::atomic<int> touched{0};
void touch(int x) { touched += x; }
asio::awaitable<std::string> greet(std::string name) {
  co_await asio::steady_timer(co_await asio::this_coro::executor, 1ms).async_wait(asio::use_awaitable);
  co_return "hello " + name;
}
int pid_here() { return static_cast<int>(::getpid()); }

struct Tally {
  int total = 0;
  int add(int n) { return total += n; }
};

constexpr auto twice_fn = framex::remote<&twice>;
constexpr auto touch_fn = framex::remote<&touch>;
constexpr auto greet_fn = framex::remote<&greet>;
constexpr auto tally_add = framex::remote<&Tally::add>;

TEST(CompletionTokens, AFutureFromAPlainThreadCallbacksDeferredAndAsTuple) {
  framex::runtime rt({.threads = 2});
  const auto fn = twice_fn.with({.runtime = &rt});
  // A future, from a thread that runs no io_context.
  EXPECT_EQ(fn.async_remote(21, asio::use_future).get(), 42);
  try {
    fn.async_remote(-1, asio::use_future).get();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "negative -1");
  }
  // A callback: the exception_ptr, then the value.
  std::promise<std::pair<bool, int>> got;
  fn.async_remote(5, [&](std::exception_ptr e, int v) { got.set_value({e != nullptr, v}); });
  EXPECT_EQ(got.get_future().get(), (std::pair<bool, int>{false, 10}));
  // deferred: nothing runs until it is launched.
  touched = 0;
  auto later = touch_fn.with({.runtime = &rt}).async_remote(3, asio::deferred);
  std::this_thread::sleep_for(50ms);  // a chance to run, had it started: nothing to wait for
  EXPECT_EQ(touched.load(), 0);
  std::move(later)(asio::use_future).get();
  EXPECT_EQ(touched.load(), 3);
  // as_tuple: the outcome as one value.
  std::promise<std::tuple<std::exception_ptr, int>> outcome;
  fn.async_remote(-4, asio::as_tuple([&](std::tuple<std::exception_ptr, int> t) { outcome.set_value(std::move(t)); }));
  const auto [error, value] = outcome.get_future().get();
  EXPECT_NE(error, nullptr);
  EXPECT_EQ(value, 0);
}

TEST(CompletionTokens, AnAsyncFunctionAndABoundExecutor) {
  asio::io_context io;
  std::string greeting;
  std::thread::id ran_on;
  greet_fn.async_remote("io", asio::bind_executor(io, [&](std::exception_ptr e, std::string s) {
                          EXPECT_EQ(e, nullptr);
                          greeting = std::move(s);
                          ran_on = std::this_thread::get_id();
                        }));
  io.run();  // the call runs, and completes, here
  EXPECT_EQ(greeting, "hello io");
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(CompletionTokens, OnAWorkerAnActorAndAnRpcClient) {
  worker_process w;
  framex::runtime rt(framex::test::distributed({w.address()}));
  EXPECT_NE(framex::remote<&pid_here>.with({.runtime = &rt}).async_remote(asio::use_future).get(), static_cast<int>(::getpid()));
  EXPECT_EQ(twice_fn.with({.runtime = &rt}).async_remote(8, asio::use_future).get(), 16);
  EXPECT_THROW(twice_fn.with({.runtime = &rt}).async_remote(-8, asio::use_future).get(), framex::remote_error);
  // An actor's method, from a plain thread.
  auto tally = framex::test::run([&] { return framex::spawn<Tally>({.runtime = &rt}); });
  EXPECT_EQ(tally_add.with({.runtime = &rt}).async_remote(tally, 4, asio::use_future).get(), 4);
  EXPECT_EQ(tally_add.with({.runtime = &rt}).async_remote(tally, 5, asio::use_future).get(), 9);
  // rpc_client: by method name, the token last; it completes on the client's executor.
  asio::io_context io;
  framex::rpc_client client(io.get_executor(), w.address());
  auto doubled = client.async_call<int>(framex::detail::registration<&twice>::entry.name, 11, asio::use_future);
  std::thread runner([&] { io.run_for(10s); });
  EXPECT_EQ(doubled.get(), 22);
  client.close();
  runner.join();
}

// framex::as_error_code: the same completions as (error code, value), so
// Asio's error-code tokens work: a callback, redirect_error, as_tuple and a
// future (which throws the code); locally, on a worker and on an actor.
TEST(CompletionTokens, AsErrorCodeGivesAsioTheSignatureItsTokensKnow) {
  worker_process w;
  framex::runtime local({.threads = 2});
  framex::runtime remote(framex::test::distributed({w.address()}));
  for (framex::runtime* rt : {&local, &remote}) {
    const auto fn = twice_fn.with({.runtime = rt});
    std::promise<std::pair<boost::system::error_code, int>> called;
    fn.async_remote(-1, framex::as_error_code([&](boost::system::error_code ec, int v) { called.set_value({ec, v}); }));
    const auto [ec, v] = called.get_future().get();
    EXPECT_EQ(ec, framex::errc::exception) << ec.message();
    EXPECT_EQ(v, 0);
    EXPECT_EQ(fn.async_remote(4, framex::as_error_code(asio::use_future)).get(), 8);
    auto failed = fn.async_remote(-4, framex::as_error_code(asio::use_future));
    try {
      failed.get();
      ADD_FAILURE() << "no error";
    } catch (const boost::system::system_error& e) {
      EXPECT_EQ(e.code(), framex::errc::exception);
    }
    framex::test::run([&]() -> asio::awaitable<void> {
      boost::system::error_code code;
      const int got = co_await fn.async_remote(-2, framex::as_error_code(asio::redirect_error(asio::use_awaitable, code)));
      EXPECT_EQ(code, framex::errc::exception);
      EXPECT_EQ(got, 0);
      auto [late, value] = co_await twice_fn.with({.timeout = 1ms, .runtime = rt})
                               .async_remote(3, framex::as_error_code(asio::as_tuple(asio::use_awaitable)));
      EXPECT_TRUE(!late || late == framex::errc::timeout) << late.message();  // a 1 ms deadline may or may not pass first
      if (!late) {
        EXPECT_EQ(value, 6);
      }
      auto tally = co_await framex::spawn<Tally>({.runtime = rt});
      auto [added_ec, added] = co_await tally_add.with({.runtime = rt}).async_remote(tally, 7, framex::as_error_code(asio::as_tuple(asio::use_awaitable)));
      EXPECT_FALSE(added_ec);
      EXPECT_EQ(added, 7);
    });
  }
  // A void function: void(error_code).
  std::promise<boost::system::error_code> touched_done;
  touch_fn.with({.runtime = &remote}).async_remote(1, framex::as_error_code([&](boost::system::error_code ec) { touched_done.set_value(ec); }));
  EXPECT_FALSE(touched_done.get_future().get());
}

}  // namespace completion_token_test
