// A fixed-size pool of threads running intrusive `pool_task`s. Tasks wait in
// lanes: first-in-first-out within a lane, and the lanes that have work take
// turns (round robin), so one busy submitter cannot starve the others. A pool
// used through `submit(task)` alone is a plain FIFO. Tasks are queued by
// pointer, so submitting allocates nothing. On shutdown, tasks still queued are
// handed to `run(true)` so their callers complete with `cancelled` rather than
// waiting forever.
//
// Spinning. A thread that runs out of tasks first watches for new ones for up
// to `spin` before it sleeps, so a task submitted meanwhile starts without the
// wake-up (a futex call on each side and the scheduler's latency). At most one
// thread spins at a time, and none while the machine is oversubscribed (a
// load average above 1.5 per core, looked at once a second): spinning then
// would take a core from other work. Spinning that keeps finding nothing (calls
// further apart than the budget) pauses for 100 ms at a time.
#pragma once

#include <atomic>
#include <chrono>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "framex/runtime.hpp"

namespace framex::detail {

class thread_pool {
 public:
  /// A queue of tasks that takes turns with the pool's other lanes. It must
  /// outlive the tasks queued in it.
  class lane {
    friend class thread_pool;
    pool_task* head_ = nullptr;
    pool_task* tail_ = nullptr;
    lane* next_ = nullptr;  // in the ring of lanes with work
    bool queued_ = false;
  };

  explicit thread_pool(std::size_t threads, std::chrono::microseconds spin = std::chrono::microseconds(0));
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Queues `task` in the pool's own lane.
  void submit(pool_task& task) noexcept { submit(task, default_lane_); }
  /// Queues `task` in `l`.
  void submit(pool_task& task, lane& l) noexcept;
  void shutdown() noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Tasks waiting for a thread, at about this moment.
  [[nodiscard]] std::size_t queued() const noexcept { return queued_.load(std::memory_order_relaxed); }
  [[nodiscard]] bool stopping() const noexcept;

 private:
  void work() noexcept;
  void line_up(lane& l) noexcept;
  bool spin(std::unique_lock<std::mutex>& lock) noexcept;
  [[nodiscard]] bool may_spin() noexcept;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  lane default_lane_;
  lane* first_ = nullptr;  // lanes with work, in turn order
  lane* last_ = nullptr;
  std::size_t idle_ = 0;
  std::size_t spinning_ = 0;            // under the mutex
  std::atomic<std::size_t> queued_{0};  // tasks queued; written under the mutex, watched by a spinner
  std::atomic<bool> stop_spinning_{false};
  std::chrono::microseconds spin_;
  unsigned spin_misses_ = 0;                               // under the mutex
  std::chrono::steady_clock::time_point spin_paused_until_{};  // under the mutex
  std::atomic<std::int64_t> load_checked_{0};  // steady clock ticks
  std::atomic<bool> overloaded_{false};
  bool stopping_ = false;
  std::size_t size_;
  std::vector<std::thread> threads_;
  std::mutex join_mutex_;  // serialises concurrent shutdown() calls
};

}  // namespace framex::detail
