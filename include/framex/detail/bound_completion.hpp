// Completions that outlive the caller's execution context safely.
//
// A call in flight holds its caller's handler and a work-tracking executor of
// the caller's context, and will post its completion there from another thread.
// If the caller destroys that context first (`io.stop()`, then return from
// `main`), posting would touch freed memory. So each call binds itself to the
// context's `completion_registry`, an Asio `execution_context::service`: when
// the context shuts down, the registry detaches every call still bound, which
// then drops what belongs to the context (handler, work, timers) while the
// context is still whole, and never posts to it. A call about to post unbinds
// under the registry's lock, so posting and shutting down never overlap.
#pragma once

#include <boost/asio/execution_context.hpp>

namespace framex::detail {

/// A call's completion, bound to the execution context it will complete on.
class bound_completion {
 public:
  /// The context is shutting down and the completion will never run: drop
  /// everything that belongs to it. Called once, without the registry's lock,
  /// on the thread destroying the context.
  virtual void detach() noexcept = 0;

 protected:
  bound_completion() = default;
  ~bound_completion() = default;
  bound_completion(const bound_completion&) = delete;
  bound_completion& operator=(const bound_completion&) = delete;

 private:
  friend class completion_registry;
  friend bool unbind_completion(bound_completion&, void (*)(void*), void*);
  bound_completion* prev_ = nullptr;
  bound_completion* next_ = nullptr;
  class completion_registry* registry_ = nullptr;
};

/// Binds `c` to `ctx`: if `ctx` shuts down first, `c.detach()` is called.
/// Thread safety: any thread.
void bind_completion(boost::asio::execution_context& ctx, bound_completion& c);

/// Unbinds `c` and, unless it was detached, runs `deliver(arg)` (which posts
/// the completion to the context) before the context can shut down. Returns
/// false if `c` was detached: nothing ran. Thread safety: any thread.
bool unbind_completion(bound_completion& c, void (*deliver)(void*), void* arg);

/// As above, for a callable.
template <class F>
bool unbind_completion(bound_completion& c, F&& deliver) {
  return unbind_completion(c, [](void* f) { (*static_cast<std::remove_reference_t<F>*>(f))(); }, &deliver);
}

}  // namespace framex::detail
