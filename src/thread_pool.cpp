#include "thread_pool.hpp"

namespace framex::detail {

thread_pool::thread_pool(std::size_t threads) : size_(threads == 0 ? 1 : threads) {
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
  if (!l.queued_) {
    l.queued_ = true;
    line_up(l);
  }
  // A busy thread picks the task up when it finishes; only sleepers need waking.
  const bool wake = idle_ > 0;
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

bool thread_pool::stopping() const noexcept {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void thread_pool::shutdown() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  std::lock_guard join_lock(join_mutex_);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace framex::detail
