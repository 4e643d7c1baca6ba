#include "framex/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include "thread_pool.hpp"

namespace framex {
namespace detail {

class runtime_impl {
 public:
  explicit runtime_impl(const runtime_options& o)
      : pool(o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency())) {}

  thread_pool pool;
};

}  // namespace detail

namespace {
std::atomic<runtime*> installed{nullptr};
}  // namespace

runtime::runtime() : runtime(runtime_options{}) {}
runtime::runtime(runtime_options options) : impl_(std::make_unique<detail::runtime_impl>(options)) {}
runtime::~runtime() { shutdown(); }

std::size_t runtime::thread_count() const noexcept { return impl_->pool.size(); }
void runtime::shutdown() noexcept { impl_->pool.shutdown(); }
bool runtime::stopping() const noexcept { return impl_->pool.stopping(); }

runtime& runtime::current() noexcept {
  if (runtime* rt = installed.load(std::memory_order_acquire)) return *rt;
  static runtime fallback;
  return fallback;
}

void detail::submit(runtime& rt, pool_task& task) noexcept { rt.impl_->pool.submit(task); }

runtime_scope::runtime_scope(runtime& rt) noexcept
    : previous_(installed.exchange(&rt, std::memory_order_acq_rel)) {}

runtime_scope::~runtime_scope() { installed.store(previous_, std::memory_order_release); }

}  // namespace framex
