#include "core/thread_pool.hpp"

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace framex::detail {

namespace {

void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

thread_pool::thread_pool(std::size_t threads, std::chrono::microseconds spin)
    : spin_(spin), size_(threads == 0 ? 1 : threads) {
  threads_.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) threads_.emplace_back([this] { work(); });
}

thread_pool::~thread_pool() { shutdown(); }

void thread_pool::submit(pool_task& task, lane& l) noexcept {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    lock.unlock();
    task.run(true);
    return;
  }
  task.next_ = nullptr;
  if (l.tail_ != nullptr) {
    l.tail_->next_ = &task;
  } else {
    l.head_ = &task;
  }
  l.tail_ = &task;
  const std::size_t queued = queued_.load(std::memory_order_relaxed) + 1;
  queued_.store(queued, std::memory_order_release);
  if (!l.queued_) {
    l.queued_ = true;
    line_up(l);
  }
  // A busy thread picks the task up when it finishes, a spinning one at once;
  // only sleepers need waking.
  const bool wake = idle_ > 0 && queued > spinning_;
  lock.unlock();
  if (wake) wake_.notify_one();
}

// Under the mutex: `l` joins the end of the turn order.
void thread_pool::line_up(lane& l) noexcept {
  l.next_ = nullptr;
  (last_ != nullptr ? last_->next_ : first_) = &l;
  last_ = &l;
}

void thread_pool::work() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (first_ == nullptr && !stopping_ && spinning_ == 0 && spin_.count() > 0 && may_spin()) {
      // Spins that keep finding nothing (calls further apart than the
      // budget) are paused for a while, then tried again.
      const auto now = std::chrono::steady_clock::now();
      if (now >= spin_paused_until_) {
        if (spin(lock)) {
          spin_misses_ = 0;
        } else if (++spin_misses_ >= 8) {
          spin_misses_ = 4;
          spin_paused_until_ = now + std::chrono::milliseconds(100);
        }
      }
    }
    while (first_ == nullptr && !stopping_) {
      ++idle_;
      wake_.wait(lock);
      --idle_;
    }
    if (first_ == nullptr) return;  // stopping and drained
    // The first lane's oldest task; the lane goes to the back of the turn
    // order if it has more, and leaves it otherwise.
    lane& l = *first_;
    first_ = l.next_;
    if (first_ == nullptr) last_ = nullptr;
    pool_task* task = l.head_;
    l.head_ = task->next_;
    queued_.store(queued_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    if (l.head_ == nullptr) {
      l.tail_ = nullptr;
      l.queued_ = false;
    } else {
      line_up(l);
    }
    const bool stopping = stopping_;
    lock.unlock();
    task->run(stopping);
    lock.lock();
  }
}

// Under `lock`, which it releases meanwhile: watches for a task for up to
// spin_; true if one came.
bool thread_pool::spin(std::unique_lock<std::mutex>& lock) noexcept {
  ++spinning_;
  lock.unlock();
  const auto until = std::chrono::steady_clock::now() + spin_;
  for (unsigned i = 1; queued_.load(std::memory_order_acquire) == 0 && !stop_spinning_.load(std::memory_order_relaxed); ++i) {
    relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
  }
  lock.lock();
  --spinning_;
  return first_ != nullptr;
}

// True unless the machine is oversubscribed.
bool thread_pool::may_spin() noexcept {
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::int64_t checked = load_checked_.load(std::memory_order_relaxed);
  if (now - checked >= std::chrono::steady_clock::duration(std::chrono::seconds(1)).count() &&
      load_checked_.compare_exchange_strong(checked, now, std::memory_order_relaxed)) {
    // The load average counts this process's own busy threads (a spinner
    // among them), so only well above the core count is it other work's.
    double load = 0;
    const double cores = std::max(1u, std::thread::hardware_concurrency());
    overloaded_.store(::getloadavg(&load, 1) == 1 && load > 1.5 * cores, std::memory_order_relaxed);
  }
  return !overloaded_.load(std::memory_order_relaxed);
}

bool thread_pool::stopping() const noexcept {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void thread_pool::shutdown() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_spinning_.store(true, std::memory_order_relaxed);
  wake_.notify_all();
  std::lock_guard join_lock(join_mutex_);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace framex::detail
