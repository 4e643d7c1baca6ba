// framex::gather and framex::map, in local mode and against a worker process,
// on single- and multi-threaded callers (the suite also runs under TSan).
#include "framex/fan_out.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "framex/framex.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace fan_out_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using framex::test::run;
using framex::test::worker_process;

std::atomic<int> running{0}, most_running{0}, started{0};
int square_slowly(int x) {  // blocking: counts how many run at once
  ++started;
  const int now = ++running;
  int seen = most_running.load();
  while (now > seen && !most_running.compare_exchange_weak(seen, now)) {
  }
  std::this_thread::sleep_for(1ms);
  --running;
  if (x < 0) throw std::invalid_argument("negative input " + std::to_string(x));
  return x * x;
}
int fan_add(int a, int b) { return a + b; }
std::string fan_name(int x) { return "n" + std::to_string(x); }
void fan_nothing() {}

std::atomic<bool> saw_cancellation{false};
asio::awaitable<int> wait_long() {  // async: cancellation reaches its timer
  try {
    co_await asio::steady_timer(co_await asio::this_coro::executor, 30s).async_wait(asio::use_awaitable);
  } catch (const boost::system::system_error&) {
    saw_cancellation = true;
    throw;
  }
  co_return 0;
}
asio::awaitable<int> fail_soon() {
  co_await asio::steady_timer(co_await asio::this_coro::executor, 10ms).async_wait(asio::use_awaitable);
  throw std::runtime_error("the second call failed");
}

asio::awaitable<int> after_ms(int ms) {
  co_await asio::steady_timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms)).async_wait(asio::use_awaitable);
  if (ms < 0) throw std::invalid_argument("negative delay");
  co_return ms;
}

constexpr auto square = framex::remote<&square_slowly>;
constexpr auto add = framex::remote<&fan_add>;

void reset_counts() {
  running = 0;
  most_running = 0;
  started = 0;
}

TEST(Gather, YieldsEachResultInArgumentOrderVoidAsMonostate) {
  framex::runtime rt({.threads = 4});
  const auto [sum, name, nothing, sq] = run([&] {
    return framex::gather(add.with({.runtime = &rt}).remote(40, 2), framex::remote<&fan_name>.with({.runtime = &rt}).remote(7),
                          framex::remote<&fan_nothing>.with({.runtime = &rt}).remote(), square.with({.runtime = &rt}).remote(9));
  });
  EXPECT_EQ(sum, 42);
  EXPECT_EQ(name, "n7");
  EXPECT_EQ(nothing, std::monostate{});
  EXPECT_EQ(sq, 81);
}

TEST(Gather, TheFirstFailureCancelsTheRestUnlessAskedNotTo) {
  saw_cancellation = false;
  const auto start = framex::test::clock::now();
  EXPECT_THROW(run([] { return framex::gather(framex::remote<&wait_long>.remote(), framex::remote<&fail_soon>.remote()); }),
               std::runtime_error);
  EXPECT_LT(framex::test::since(start), 20s) << "the long call was not cancelled";
  EXPECT_TRUE(saw_cancellation.load());
  // Without cancel_on_failure every call runs to its end: the first failure in argument order is rethrown.
  framex::runtime rt({.threads = 2});
  try {
    run([&] {
      return framex::gather({.cancel_on_failure = false}, square.with({.runtime = &rt}).remote(-1), square.with({.runtime = &rt}).remote(-2),
                            add.with({.runtime = &rt}).remote(1, 1));
    });
    ADD_FAILURE() << "no failure";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "negative input -1");
  }
}

TEST(Map, ResultsInInputOrderWithAtMostMaxInFlightRunningAndProgressCounted) {
  framex::runtime rt({.threads = 16});
  reset_counts();
  std::vector<int> inputs(200);
  for (int i = 0; i < 200; ++i) inputs[i] = i;
  std::vector<std::size_t> progress;
  const auto out = run([&] {
    return framex::map(square.with({.runtime = &rt}), inputs,
                       {.max_in_flight = 8, .on_progress = [&](std::size_t done, std::size_t total) {
                          EXPECT_EQ(total, 200u);
                          progress.push_back(done);
                        }});
  });
  ASSERT_EQ(out.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(out[i], i * i);
  EXPECT_LE(most_running.load(), 8);
  EXPECT_GE(most_running.load(), 2) << "the calls did not overlap";
  ASSERT_EQ(progress.size(), 200u);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), 200u);
}

TEST(Map, AProgressBarWritesOnlyItsFinalLineWhenNotOnATerminal) {
  framex::runtime rt({.threads = 4});
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  std::vector<int> inputs(300, 2);
  const auto out = run([&] {
    return framex::map(square.with({.runtime = &rt}), inputs, {.on_progress = framex::progress_bar("squares", log)});
  });
  EXPECT_EQ(out.size(), 300u);
  std::rewind(log);
  char buf[256] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, log);
  std::fclose(log);
  const std::string text(buf, n);
  EXPECT_EQ(text.find("squares [####################] 300/300  "), 0u) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
}

// What a terminal shows of `written`: a carriage return goes back to the
// line's start, ESC[K erases to its end, characters overwrite.
std::vector<std::string> screen_lines(const std::string& written) {
  std::vector<std::string> lines{""};
  std::size_t column = 0;
  for (std::size_t i = 0; i < written.size(); ++i) {
    const char ch = written[i];
    if (ch == '\r') {
      column = 0;
    } else if (ch == '\n') {
      lines.emplace_back();
      column = 0;
    } else if (written.compare(i, 3, "\x1b[K") == 0) {
      lines.back().resize(std::min(column, lines.back().size()));
      i += 2;
    } else {
      if (column < lines.back().size()) {
        lines.back()[column] = ch;
      } else {
        lines.back() += ch;
      }
      ++column;
    }
  }
  return lines;
}

// On a terminal (a pseudo-terminal here), the final line reads as written,
// whatever a longer line drawn before it left.
TEST(Map, AProgressBarsFinalLineOnATerminalIsItsOwn) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int follower = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(follower, 0);
  std::FILE* terminal = ::fdopen(follower, "w");
  ASSERT_NE(terminal, nullptr);
  {
    const framex::progress_bar bar("squares", terminal, std::chrono::milliseconds(0));
    bar(5, 1'000'000'000'000);  // a long line: a long total, an ETA
    bar(3, 3);                  // the final one, shorter
  }
  std::fclose(terminal);
  std::string written;
  char buffer[4096];
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(master, buffer, sizeof buffer)) > 0;) written.append(buffer, static_cast<std::size_t>(n));
  ::close(master);
  const auto lines = screen_lines(written);
  ASSERT_GE(lines.size(), 1u) << written;
  const std::string& last = lines.size() >= 2 && lines.back().empty() ? lines[lines.size() - 2] : lines.back();
  EXPECT_TRUE(std::regex_match(last, std::regex(R"(squares \[#{20}\] 3/3  [0-9]+ calls/s  [0-9]+\.[0-9] s)"))) << last;
}

TEST(Map, UnorderedTuplesSpreadOverParametersVoidAndEmptyInputs) {
  framex::runtime rt({.threads = 4});
  const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  auto sums = run([&] { return framex::map(add.with({.runtime = &rt}), pairs, {.ordered = false}); });
  std::sort(sums.begin(), sums.end());
  EXPECT_EQ(sums, (std::vector<int>{3, 7, 11}));
  const std::vector<std::tuple<>> three(3);
  run([&] { return framex::map(framex::remote<&fan_nothing>.with({.runtime = &rt}), three); });
  const std::vector<int> none;
  EXPECT_TRUE(run([&] { return framex::map(square.with({.runtime = &rt}), none); }).empty());
}

TEST(Map, AFailureCancelsWhatIsLeftAndIsRethrown) {
  framex::runtime rt({.threads = 4});
  reset_counts();
  std::vector<int> inputs(1000, 1);
  inputs[10] = -5;
  try {
    run([&] { return framex::map(square.with({.runtime = &rt}), inputs, {.max_in_flight = 4}); });
    ADD_FAILURE() << "no failure";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "negative input -5");
  }
  EXPECT_LT(started.load(), 1000) << "the remaining inputs were still called after the failure";
}

TEST(Wait, YieldsTheFirstCallsToEndAndLeavesTheOthersRunning) {
  const auto [first_two, at_once, all, results] = run([]() -> asio::awaitable<
                                                            std::tuple<std::vector<std::size_t>, std::vector<std::size_t>, std::vector<std::size_t>, std::vector<int>>> {
    std::vector<framex::started<int>> calls;
    for (const int ms : {3000, 10, 2500, 300, 2000}) calls.push_back(co_await framex::start(framex::remote<&after_ms>.remote(ms)));
    auto first_two = co_await framex::wait(calls, 2);
    auto at_once = co_await framex::wait(calls, 5, std::chrono::steady_clock::duration::zero());  // those ended by now
    auto all = co_await framex::wait(calls, 5);
    std::vector<int> results;
    for (auto& c : calls) results.push_back(co_await c.get());
    co_return std::tuple{first_two, at_once, all, results};
  });
  EXPECT_EQ(first_two, (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(at_once, (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(all, (std::vector<std::size_t>{1, 3, 4, 2, 0}));  // 1 and 3 had ended before: index order, then as they end
  EXPECT_EQ(results, (std::vector<int>{3000, 10, 2500, 300, 2000}));
}

TEST(Wait, ATimeLimitCancellationAndAFailedCall) {
  run([]() -> asio::awaitable<void> {
    std::vector<framex::started<int>> calls;
    calls.push_back(co_await framex::start(framex::remote<&after_ms>.remote(1500)));
    calls.push_back(co_await framex::start(framex::remote<&after_ms>.remote(-1)));  // fails at once
    const auto limited = co_await framex::wait(calls, 2, 100ms);
    EXPECT_EQ(limited, (std::vector<std::size_t>{1}));
    bool threw = false;
    try {
      co_await calls[1].get();
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    // Cancelling the awaiting coroutine ends the wait.
    asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
    const auto raced = co_await (framex::wait(calls, 2) || timer.async_wait(asio::use_awaitable));
    EXPECT_EQ(raced.index(), 1u);
    EXPECT_FALSE(calls[0].ready());
  });
}

// A caller io_context run by four threads, calls shipped to a worker: the
// shared counters of map and gather are touched from all of them.
TEST(Map, ManyCallsToAWorkerFromAMultiThreadedCaller) {
  worker_process w;
  asio::io_context io(4);
  framex::runtime rt(framex::test::distributed({w.address()}), io);
  std::vector<std::tuple<int, int>> inputs;
  for (int i = 0; i < 3000; ++i) inputs.emplace_back(i, i);
  auto result = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<std::tuple<std::vector<int>, int>> {
        auto sums = co_await framex::map(add.with({.runtime = &rt}), inputs, {.max_in_flight = 64});
        auto [a, b] = co_await framex::gather(add.with({.runtime = &rt}).remote(1, 2), add.with({.runtime = &rt}).remote(3, 4));
        std::vector<framex::started<int>> started;
        for (int i = 0; i < 200; ++i) started.push_back(co_await framex::start(add.with({.runtime = &rt}).remote(i, 1)));
        const auto ended = co_await framex::wait(started, 200);
        int total = 0;
        for (const std::size_t i : ended) total += co_await started[i].get();
        rt.shutdown();
        co_return std::tuple{std::move(sums), a + b + total - 20100};
      },
      asio::use_future);
  EXPECT_TRUE(framex::test::runs_to_completion(io, 4, 120s));
  const auto [sums, gathered] = result.get();
  ASSERT_EQ(sums.size(), 3000u);
  for (int i = 0; i < 3000; ++i) EXPECT_EQ(sums[i], 2 * i);
  EXPECT_EQ(gathered, 10);
}

}  // namespace fan_out_test
