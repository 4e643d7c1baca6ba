#include "framex/detail/bound_completion.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace framex::detail {

namespace {

// One lock for every registry: a completion being unbound may race with its
// registry's context being destroyed, so the lock must outlive both. It is
// held for a few pointer writes; posts happen outside it.
std::mutex& registries_mutex() {
  static std::mutex m;
  return m;
}

// Registries shut down so far: a thread's cached registry is valid only while
// this has not moved (a new context may reuse a destroyed one's address).
std::atomic<std::uint64_t> shutdowns{0};

}  // namespace

// The calls bound to one execution context, in an intrusive list.
class completion_registry final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  explicit completion_registry(boost::asio::execution_context& ctx) : service(ctx) {}

  void bind(bound_completion& c) {
    std::lock_guard lock(registries_mutex());
    c.registry_ = this;
    c.prev_ = nullptr;
    c.next_ = head_;
    if (head_ != nullptr) head_->prev_ = &c;
    head_ = &c;
  }

  // Under registries_mutex().
  void unlink(bound_completion& c) noexcept {
    (c.prev_ != nullptr ? c.prev_->next_ : head_) = c.next_;
    if (c.next_ != nullptr) c.next_->prev_ = c.prev_;
    c.registry_ = nullptr;
  }

 private:
  // The context is being destroyed (before its scheduler drops its queue).
  void shutdown() override {
    shutdowns.fetch_add(1, std::memory_order_acq_rel);
    std::vector<bound_completion*> pending;
    {
      std::lock_guard lock(registries_mutex());
      for (auto* c = head_; c != nullptr; c = c->next_) pending.push_back(c);
      for (auto* c : pending) c->registry_ = nullptr;
      head_ = nullptr;
    }
    // A completion unbound just before may still be posting: the context
    // must outlive that post, so its destruction waits here.
    while (posting_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    for (auto* c : pending) c->detach();
  }

 public:
  std::atomic<int> posting_{0};  // posts under way to this registry's context

 private:

  bound_completion* head_ = nullptr;
};

void bind_completion(boost::asio::execution_context& ctx, bound_completion& c) {
  // Finding a context's service takes Asio's registry lock; a caller binds
  // every call to the same context, so the last one found is remembered.
  thread_local boost::asio::execution_context* last_context = nullptr;
  thread_local completion_registry* last_registry = nullptr;
  thread_local std::uint64_t seen_shutdowns = 0;
  const std::uint64_t now = shutdowns.load(std::memory_order_acquire);
  if (last_context != &ctx || seen_shutdowns != now) {
    last_registry = &boost::asio::use_service<completion_registry>(ctx);
    last_context = &ctx;
    seen_shutdowns = now;
  }
  last_registry->bind(c);
}

bool unbind_completion(bound_completion& c, void (*deliver)(void*), void* arg) {
  completion_registry* r = nullptr;
  {
    std::lock_guard lock(registries_mutex());
    r = c.registry_;
    if (r == nullptr) return false;  // detached: the context is gone or going
    r->unlink(c);
    r->posting_.fetch_add(1, std::memory_order_relaxed);
  }
  deliver(arg);  // outside the lock; the registry's shutdown waits for it
  r->posting_.fetch_sub(1, std::memory_order_release);
  return true;
}

}  // namespace framex::detail
