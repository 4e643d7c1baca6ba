#include "core/stats.hpp"

#include <bit>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

namespace framex::detail {
namespace {

struct registry {
  std::mutex mutex;
  std::map<std::pair<std::string, bool>, std::unique_ptr<stats_cell>> cells;
  std::deque<error_record> errors;
};

registry& the_registry() {
  static registry r;
  return r;
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void latency_histogram::add(std::int64_t nanoseconds) noexcept {
  // Bucket 4*log2(us), from the position of the top bit and the two bits below
  // it: no floating point on the hot path.
  const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(nanoseconds / 1000, 1));
  const int top = std::bit_width(us) - 1;
  const auto quarter = static_cast<std::size_t>(top >= 2 ? (us >> (top - 2)) & 3 : (us << (2 - top)) & 3);
  const std::size_t i = static_cast<std::size_t>(top) * 4 + quarter;
  counts_[std::min(i, buckets - 1)].fetch_add(1, std::memory_order_relaxed);
}

double latency_histogram::quantile_ms(double fraction) const noexcept {
  std::array<std::uint64_t, buckets> c{};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < buckets; ++i) total += c[i] = counts_[i].load(std::memory_order_relaxed);
  if (total == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets; ++i) {
    seen += c[i];
    if (seen >= rank) return std::exp2((static_cast<double>(i) + 0.5) / 4.0) / 1000.0;  // the bucket's middle
  }
  return 0;
}

stats_cell& stats_for(const std::string& name, bool remote) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  auto& cell = r.cells[{name, remote}];
  if (!cell) cell = std::make_unique<stats_cell>(name, remote);
  return *cell;
}

void record(stats_cell& cell, std::int64_t nanoseconds, const std::string* error) noexcept {
  cell.calls.fetch_add(1, std::memory_order_relaxed);
  cell.latency.add(nanoseconds);
  if (error != nullptr) {
    cell.errors.fetch_add(1, std::memory_order_relaxed);
    try {
      note_error(cell.name, *error);
    } catch (...) {  // counting must never fail a call
    }
  }
}

void note_error(const std::string& function, const std::string& message) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  r.errors.push_front({utc_now(), function, message});
  if (r.errors.size() > 20) r.errors.pop_back();
}

void fill_function_stats(stats_snapshot& out) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  for (const auto& [key, cell] : r.cells) {
    if (cell->calls.load() == 0) continue;
    out.functions.push_back({cell->name, cell->remote, cell->calls.load(), cell->errors.load(),
                             cell->latency.quantile_ms(0.5), cell->latency.quantile_ms(0.99)});
  }
  out.recent_errors.assign(r.errors.begin(), r.errors.end());
}

}  // namespace framex::detail
