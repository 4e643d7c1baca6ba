// Helpers shared by the tests: run a coroutine to completion, measure time.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "framex/config.hpp"
#include "framex/error.hpp"

namespace framex::test {

namespace asio = boost::asio;
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

inline std::chrono::milliseconds since(clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
}

}  // namespace framex::test
