// What a call allocates in steady state, counted: this executable counts every
// allocation of its process (bench/cost.cpp interposes glibc's allocator), and
// doubles as its own worker, whose count a remote call reads. Under a
// sanitizer, whose allocator is not counted, the tests are skipped (and
// scripts/test.sh leaves them out by name).
#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>

#include "cost.hpp"
#include "framex/framex.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;

int tiny_blocking(int x) { return x; }
int tiny_inline(int x) { return x; }
template <>
inline constexpr bool framex::inline_ok<&tiny_inline> = true;
std::uint64_t process_allocations() { return framex::bench::allocations(); }
std::uint64_t process_allocated_bytes() { return framex::bench::allocated_bytes(); }
std::string echo(std::string s) { return s; }
boost::asio::awaitable<std::string> echo_async(std::string s) { co_return s; }

namespace {

struct per_call {
  double caller = 0, worker = 0;
};

// Allocations per call of `F` on each side, over `calls` calls after as many to warm up.
template <auto F>
per_call measure(framex::runtime& rt, int calls, asio::io_context* caller_io = nullptr) {
  const auto calls_on = [&](auto make) {
    if (caller_io == nullptr) return framex::test::run(make);
    // The connection keeps `io` busy: the coroutine stops it when done.
    per_call result;
    asio::co_spawn(*caller_io, make(), [&](std::exception_ptr, per_call r) {
      result = r;
      caller_io->stop();
    });
    caller_io->restart();
    caller_io->run();
    return result;
  };
  return calls_on([&]() -> asio::awaitable<per_call> {
    const auto fn = framex::remote<F>.with({.runtime = &rt});
    const auto count = framex::remote<&process_allocations>.with({.runtime = &rt});
    for (int i = 0; i < calls; ++i) co_await fn.remote(i);
    const std::uint64_t w0 = co_await count.remote();
    const std::uint64_t c0 = framex::bench::allocations();
    for (int i = 0; i < calls; ++i) co_await fn.remote(i);
    const std::uint64_t c1 = framex::bench::allocations();
    const std::uint64_t w1 = co_await count.remote();
    co_return per_call{static_cast<double>(c1 - c0) / calls, static_cast<double>(w1 - w0) / calls};
  });
}

TEST(CallAllocations, ATinyBlockingCallAllocatesAlmostNothingOnEitherSide) {
  FRAMEX_REQUIRE(framex::bench::allocations_counted(), "a sanitizer's allocator is not counted (scripts/test.sh runs these in the optimised build only)");
  framex::test::worker_process w;
  framex::runtime rt(framex::test::distributed({w.address()}));
  for (const auto& [what, cost] : {std::pair{"pool", measure<&tiny_blocking>(rt, 2000)},
                                   std::pair{"inline_ok", measure<&tiny_inline>(rt, 2000)}}) {
    // Measured: about 0.01 per call. The bound leaves room for the odd
    // timer or table growth, not for an allocation on every call.
    EXPECT_LT(cost.caller, 0.5) << what;
    EXPECT_LT(cost.worker, 0.5) << what;
  }
}

TEST(CallAllocations, ACallThroughTheCallersIoContextAllocatesAlmostNothingOnEitherSide) {
  FRAMEX_REQUIRE(framex::bench::allocations_counted(), "a sanitizer's allocator is not counted (scripts/test.sh runs these in the optimised build only)");
  framex::test::worker_process w;
  asio::io_context io(1);
  framex::runtime rt(framex::test::distributed({w.address()}), io);
  for (const auto& [what, cost] : {std::pair{"pool", measure<&tiny_blocking>(rt, 2000, &io)},
                                   std::pair{"inline_ok", measure<&tiny_inline>(rt, 2000, &io)}}) {
    EXPECT_LT(cost.caller, 0.5) << what;
    EXPECT_LT(cost.worker, 0.5) << what;
  }
  rt.shutdown();
  io.restart();
  io.run();
}

// A large result is written from the value itself, not copied into the
// message first: echoing 1 MiB, the worker allocates the argument it decodes
// (1 MiB) and small change, not a second MiB for the packed result.
TEST(CallAllocations, ALargeResultIsWrittenFromTheValueNotFromACopy) {
  FRAMEX_REQUIRE(framex::bench::allocations_counted(), "a sanitizer's allocator is not counted (scripts/test.sh runs these in the optimised build only)");
  framex::test::worker_process w;
  framex::runtime rt(framex::test::distributed({w.address()}));
  const std::string mib(std::size_t{1} << 20, 'm');
  const auto per_call = [&]<auto F>() {
    return framex::test::run([&]() -> asio::awaitable<double> {
      const auto fn = framex::remote<F>.with({.runtime = &rt});
      const auto bytes = framex::remote<&process_allocated_bytes>.with({.runtime = &rt});
      constexpr int calls = 10;
      for (int i = 0; i < calls; ++i) EXPECT_EQ(co_await fn.remote(mib), mib);
      // The least of a few stretches: on a loaded machine a request may come
      // in pieces, and the reader then allocates for the rest of it too.
      double least = 1e12;
      for (int stretch = 0; stretch < 5; ++stretch) {
        const std::uint64_t w0 = co_await bytes.remote();
        for (int i = 0; i < calls; ++i) EXPECT_EQ(co_await fn.remote(mib), mib);
        const std::uint64_t w1 = co_await bytes.remote();
        least = std::min(least, static_cast<double>(w1 - w0) / calls);
      }
      co_return least;
    });
  };
  for (const auto& [what, bytes] : {std::pair{"blocking", per_call.operator()<&echo>()},
                                    std::pair{"async", per_call.operator()<&echo_async>()}}) {
    EXPECT_GE(bytes, 1.0 * (1 << 20)) << what;  // the argument is decoded into a string of its own
    EXPECT_LT(bytes, 1.5 * (1 << 20)) << what;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
