#include "framex/stats.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "framex/framex.hpp"
#include "support.hpp"

namespace stats_test {

int nap_ms(int ms) {
  if (ms < 0) throw std::invalid_argument("no negative naps");
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

const framex::function_stats* find(const framex::stats_snapshot& s, const std::string& name) {
  for (const auto& f : s.functions) {
    if (f.name == name && !f.remote) return &f;
  }
  return nullptr;
}

TEST(Stats, LocalBlockingCallsAreCountedWithTheirLatencyAndErrors) {
  framex::runtime rt({.threads = 2});
  framex::test::run([&]() -> boost::asio::awaitable<void> {
    for (int i = 0; i < 9; ++i) co_await framex::remote<&nap_ms>.with({.runtime = &rt}).remote(4);
    try {
      co_await framex::remote<&nap_ms>.with({.runtime = &rt}).remote(-1);
    } catch (const std::invalid_argument&) {
    }
  });
  const auto s = framex::stats(rt);
  EXPECT_EQ(s.mode, framex::mode::local);
  EXPECT_TRUE(s.workers.empty());
  const auto* f = find(s, "stats_test::nap_ms");  // the derived name
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->calls, 10u);
  EXPECT_EQ(f->errors, 1u);
  // 4 ms naps; buckets are a quarter octave wide. The upper bound catches a
  // wrong unit, not a slow machine.
  EXPECT_GT(f->p50_ms, 3.0);
  EXPECT_LT(f->p50_ms, 40.0);
  ASSERT_FALSE(s.recent_errors.empty());
  EXPECT_EQ(s.recent_errors.front().message, "no negative naps");
}

}  // namespace stats_test
