#include "framex/detail/bound_completion.hpp"

#include <mutex>
#include <vector>

namespace framex::detail {

namespace {
// One lock for every registry: a completion being unbound may race with its
// registry's context being destroyed, so the lock must outlive both.
std::mutex& registries_mutex() {
  static std::mutex m;
  return m;
}
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
    std::vector<bound_completion*> pending;
    {
      std::lock_guard lock(registries_mutex());
      for (auto* c = head_; c != nullptr; c = c->next_) pending.push_back(c);
      for (auto* c : pending) c->registry_ = nullptr;
      head_ = nullptr;
    }
    for (auto* c : pending) c->detach();
  }

  bound_completion* head_ = nullptr;
};

void bind_completion(boost::asio::execution_context& ctx, bound_completion& c) {
  boost::asio::use_service<completion_registry>(ctx).bind(c);
}

bool unbind_completion(bound_completion& c, void (*deliver)(void*), void* arg) {
  std::lock_guard lock(registries_mutex());
  if (c.registry_ == nullptr) return false;  // detached: the context is gone or going
  c.registry_->unlink(c);
  deliver(arg);  // a post: it never runs the completion inline, so the lock is not held by it
  return true;
}

}  // namespace framex::detail
