#include "framex/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "core/runtime_impl.hpp"
#include "framex/config.hpp"
#include "framex/detail/object_store.hpp"
#include "framex/detail/wire.hpp"
#include "core/stats.hpp"
#include "core/thread_pool.hpp"

namespace framex {

namespace {
std::atomic<runtime*> installed{nullptr};  // the newest live scope's runtime, read without a lock
std::mutex scopes_mutex;
runtime_scope* newest_scope = nullptr;
}  // namespace

runtime::runtime() : runtime(runtime_options{}) {}
runtime::runtime(runtime_options options) : impl_(std::make_unique<detail::runtime_impl>(options.threads, options.spin, nullptr)) {}
runtime::runtime(const config& cfg)
    : impl_(std::make_unique<detail::runtime_impl>(cfg.runtime.threads, cfg.runtime.spin,
                                                   cfg.runtime.mode == mode::distributed ? &cfg : nullptr)) {
  if (cfg.runtime.mode == mode::distributed) detail::configure_storage(cfg.storage);
}
runtime::runtime(const config& cfg, boost::asio::io_context& io)
    : impl_(std::make_unique<detail::runtime_impl>(cfg.runtime.threads, cfg.runtime.spin,
                                                   cfg.runtime.mode == mode::distributed ? &cfg : nullptr, &io)) {
  if (cfg.runtime.mode == mode::distributed) detail::configure_storage(cfg.storage);
}
runtime::~runtime() { shutdown(); }

std::size_t runtime::thread_count() const noexcept { return impl_->pool.size(); }
void runtime::shutdown() noexcept {
  if (impl_->remote) impl_->remote->shutdown();
  impl_->pool.shutdown();
}
bool runtime::stopping() const noexcept { return impl_->pool.stopping(); }
mode runtime::current_mode() const noexcept { return impl_->remote ? mode::distributed : mode::local; }

runtime& runtime::current() {
  if (runtime* rt = installed.load(std::memory_order_acquire)) return *rt;
  static runtime fallback(config::load());
  return fallback;
}

void detail::submit(runtime& rt, pool_task& task) noexcept { rt.impl_->pool.submit(task); }

bool detail::is_distributed(const runtime& rt) noexcept { return rt.impl_->remote.has_value(); }

detail::runtime_impl& detail::impl_of(runtime& rt) noexcept { return *rt.impl_; }

void detail::start_remote(runtime& rt, const function_entry& fn, message_buffer params,
                          std::chrono::steady_clock::duration timeout, const resource_needs& needs,
                          const boost::asio::any_io_executor& caller, reply_handler handler) {
  rt.impl_->remote->start(fn, std::move(params), timeout, needs, caller, std::move(handler));
}

stats_snapshot stats(const runtime& rt) {
  stats_snapshot out;
  out.mode = rt.current_mode();
  if (rt.impl_->remote) rt.impl_->remote->fill(out);
  detail::fill_function_stats(out);
  detail::fill_actor_stats(out);
  return out;
}

runtime_scope::runtime_scope(runtime& rt) noexcept : runtime_(rt) {
  std::lock_guard lock(scopes_mutex);
  older_ = newest_scope;
  if (older_ != nullptr) older_->newer_ = this;
  newest_scope = this;
  installed.store(&rt, std::memory_order_release);
}

runtime_scope::~runtime_scope() {
  std::lock_guard lock(scopes_mutex);
  if (older_ != nullptr) older_->newer_ = newer_;
  if (newer_ != nullptr) {
    newer_->older_ = older_;  // ended out of order: a newer scope stays current
  } else {
    newest_scope = older_;
  }
  installed.store(newest_scope != nullptr ? &newest_scope->runtime_ : nullptr, std::memory_order_release);
}

}  // namespace framex
