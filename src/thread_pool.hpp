// A fixed-size pool of threads running intrusive `pool_task`s in FIFO order.
// Tasks are queued by pointer, so submitting allocates nothing. On shutdown,
// tasks still queued are handed to `run(true)` so their callers complete with
// `cancelled` rather than waiting forever.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "framex/runtime.hpp"

namespace framex::detail {

class thread_pool {
 public:
  explicit thread_pool(std::size_t threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  void submit(pool_task& task) noexcept;
  void shutdown() noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool stopping() const noexcept;

 private:
  void work() noexcept;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  pool_task* head_ = nullptr;
  pool_task* tail_ = nullptr;
  std::size_t idle_ = 0;
  bool stopping_ = false;
  std::size_t size_;
  std::vector<std::thread> threads_;
  std::mutex join_mutex_;  // serialises concurrent shutdown() calls
};

}  // namespace framex::detail
