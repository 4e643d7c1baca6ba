// Counters behind framex/stats.hpp: a lock-free latency histogram, per-function
// cells kept for the life of the process, and a short list of recent errors.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "framex/stats.hpp"

namespace framex::detail {

/// Latencies in buckets a factor 2^(1/4) apart, from 1 us to ~1 hour.
class latency_histogram {
 public:
  static constexpr std::size_t buckets = 128;
  void add(std::int64_t nanoseconds) noexcept;
  /// The latency below which `fraction` of the samples fall, in milliseconds.
  [[nodiscard]] double quantile_ms(double fraction) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
};

class stats_cell {
 public:
  stats_cell(std::string name, bool remote) : name(std::move(name)), remote(remote) {}
  const std::string name;
  const bool remote;
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> errors{0};
  latency_histogram latency;
};

/// Adds to the recent errors (kept: the newest 20).
void note_error(const std::string& function, const std::string& message);

/// Adds every function called so far, and the recent errors, to `out`.
void fill_function_stats(stats_snapshot& out);

}  // namespace framex::detail
