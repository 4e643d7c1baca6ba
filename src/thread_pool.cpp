#include "thread_pool.hpp"

namespace framex::detail {

thread_pool::thread_pool(std::size_t threads) : size_(threads == 0 ? 1 : threads) {
  threads_.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) threads_.emplace_back([this] { work(); });
}

thread_pool::~thread_pool() { shutdown(); }

void thread_pool::submit(pool_task& task) noexcept {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    lock.unlock();
    task.run(true);
    return;
  }
  task.next_ = nullptr;
  if (tail_ != nullptr) {
    tail_->next_ = &task;
  } else {
    head_ = &task;
  }
  tail_ = &task;
  // A busy thread picks the task up when it finishes; only sleepers need waking.
  const bool wake = idle_ > 0;
  lock.unlock();
  if (wake) wake_.notify_one();
}

void thread_pool::work() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    while (head_ == nullptr && !stopping_) {
      ++idle_;
      wake_.wait(lock);
      --idle_;
    }
    if (head_ == nullptr) return;  // stopping and drained
    pool_task* task = head_;
    head_ = task->next_;
    if (head_ == nullptr) tail_ = nullptr;
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
