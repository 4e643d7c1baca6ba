// Helpers shared by the tests: run a coroutine to completion, measure time.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include <chrono>
#include <future>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "framex/config.hpp"
#include "framex/error.hpp"

/// Skips the test when this machine lacks what it needs (a tool, a right),
/// saying which; under CI=true, which runs as root with every tool
/// scripts/setup.sh installs, the same lack fails the test instead, so a
/// skip can never pass CI unnoticed.
#define FRAMEX_REQUIRE(available, why)                                                 \
  do {                                                                                 \
    if (!(available)) {                                                                \
      if (::framex::test::in_ci()) GTEST_FAIL() << "CI=true, and it cannot run: " << why; \
      GTEST_SKIP() << why;                                                             \
    }                                                                                  \
  } while (false)

namespace framex::test {

namespace asio = boost::asio;

/// True when CI=true is set: tests that need a tool or a right fail without it.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}
using clock = std::chrono::steady_clock;

/// Runs the coroutine made by `make()` on a fresh single-threaded io_context and
/// returns its result (or rethrows its exception).
template <class Make>
auto run(Make&& make) {
  asio::io_context io;
  auto result = asio::co_spawn(io, std::forward<Make>(make)(), asio::use_future);
  io.run();
  return result.get();
}

/// The framex error code a call failed with, or an empty code if it succeeded.
template <class Awaitable>
asio::awaitable<std::error_code> error_of(Awaitable call) {
  try {
    co_await std::move(call);
  } catch (const std::system_error& e) {
    co_return e.code();
  }
  co_return std::error_code{};
}

/// Distributed mode over `workers`, with a connect timeout generous enough for a
/// loaded machine.
inline framex::config distributed(std::vector<std::string> workers) {
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = std::move(workers);
  cfg.distributed.connect_timeout = std::chrono::seconds(10);
  return cfg;
}

/// A fresh directory under /tmp (for unix sockets and files a test writes),
/// removed with what is in it.
class temp_dir {
 public:
  temp_dir() {
    char pattern[] = "/tmp/framex-test-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  /// The directory.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// The path of `name` in the directory.
  [[nodiscard]] std::string at(const std::string& name) const { return (path_ / name).string(); }
  /// Writes `content` and a newline to `name` (0600: a token file may be
  /// read by its owner only); returns its path.
  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(path_ / name) << content << "\n";
    std::filesystem::permissions(path_ / name, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return at(name);
  }

 private:
  std::filesystem::path path_;
};

/// Polls `condition` every few milliseconds until it holds (true) or `limit`
/// passes (false): a test waits for a state, never for a guessed time.
template <class Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto give_up = clock::now() + limit;
  while (!condition()) {
    if (clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Runs `io` on `threads` threads until it runs out of work (true), or
/// stops it after `limit` (false): a test of "run() returns" cannot hang.
inline bool runs_to_completion(asio::io_context& io, int threads, std::chrono::seconds limit) {
  std::vector<std::future<void>> runners;
  for (int i = 0; i < threads; ++i) runners.push_back(std::async(std::launch::async, [&io] { io.run(); }));
  bool returned = true;
  for (auto& r : runners) returned = r.wait_for(limit) == std::future_status::ready && returned;
  if (!returned) io.stop();  // so the runners end and the test reports instead of hanging
  return returned;
}

/// A steady load: `callers` coroutines on a thread of their own, each making
/// `call()` again as soon as it returns, until the load is stopped (or
/// destroyed); successes and failures are counted.
class steady_load {
 public:
  steady_load(int callers, std::function<asio::awaitable<void>()> call) : call_(std::move(call)) {
    for (int c = 0; c < callers; ++c) {
      asio::co_spawn(
          io_,
          [this]() -> asio::awaitable<void> {
            while (!stop_) {
              try {
                co_await call_();
                ++ok_;
              } catch (const std::exception& e) {
                ++failed_;
                std::lock_guard lock(mutex_);
                if (first_failure_.empty()) first_failure_ = e.what();
              }
            }
          },
          asio::detached);
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~steady_load() { stop(); }
  steady_load(const steady_load&) = delete;
  steady_load& operator=(const steady_load&) = delete;

  /// True once `n` more calls have succeeded; false if that takes over 20 s.
  bool succeeds(int n) {
    const int before = ok_.load();
    return eventually([&] { return ok_.load() >= before + n; });
  }
  /// Lets the calls in flight finish, then ends.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] int failed() const { return failed_.load(); }
  [[nodiscard]] std::string first_failure() {
    std::lock_guard lock(mutex_);
    return first_failure_;
  }

 private:
  std::function<asio::awaitable<void>()> call_;
  asio::io_context io_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::mutex mutex_;
  std::string first_failure_;
  std::thread thread_;
};

inline std::chrono::milliseconds since(clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
}

}  // namespace framex::test
