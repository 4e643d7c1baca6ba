// A retry pause that doubles from a first to a last length, each pause taken
// at random between half and all of its length: peers that failed together
// (callers that lost one worker, workers that lost etcd) do not come back
// together. Used by the caller's reconnects and by etcd's registration and watch.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace framex::detail {

/// Between half and all of `d`. Thread safety: any thread.
template <class Rep, class Period>
std::chrono::duration<Rep, Period> jittered(std::chrono::duration<Rep, Period> d) noexcept {
  static std::atomic<std::uint64_t> seed{0x9e3779b97f4a7c15ULL};
  std::uint64_t x = seed.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);  // splitmix64
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  const auto half = static_cast<std::uint64_t>(d.count() / 2 + 1);
  return d / 2 + std::chrono::duration<Rep, Period>(static_cast<Rep>(x % half));
}

/// Not thread safe: one per thing that retries, used under its owner's lock or strand.
class backoff {
 public:
  using duration = std::chrono::steady_clock::duration;
  constexpr backoff(duration first, duration last) noexcept : first_(first), last_(last), next_(first) {}

  /// The pause before the next try (jittered); the one after it is twice as long, up to the last.
  [[nodiscard]] duration next() noexcept {
    const duration now = next_;
    next_ = std::min<duration>(next_ * 2, last_);
    return jittered(now);
  }
  /// After a success: the next failure waits the first length again.
  void reset() noexcept { next_ = first_; }

 private:
  duration first_, last_, next_;
};

}  // namespace framex::detail
