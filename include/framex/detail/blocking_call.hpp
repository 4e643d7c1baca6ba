// The asynchronous operation behind `.remote()` of a blocking function in local
// mode: run the body on the runtime's pool, resume the caller on its own
// executor.
//
// Flow. `start` (caller's executor) allocates one `blocking_call`, which is at
// once the pool task, the cancellation handler's target and the timer's target,
// and queues it. A pool thread runs the body and posts `deliver` to the caller's
// executor, which invokes the handler. A cancellation or the timeout (both on
// the caller's executor) may win instead: a call not yet started is dropped from
// the pool's point of view; a running one is abandoned (its body finishes, its
// result is destroyed) unless it is pinned to caller memory, in which case the
// error is delivered when the body returns. The phase decides who completes the
// handler: `deliver` is posted only if no cancellation moved the call to
// `abandoned` first, and only the cancellation that made that move completes.
//
// References: one for the caller (dropped when the handler runs), one for the
// pool (dropped after the body, or in `deliver`), one for a pending timer wait,
// and one for the binding to the caller's execution context (see
// bound_completion.hpp), dropped by whoever unbinds: the completion's post, or
// `detach` when the caller destroys its context with the call in flight, in
// which case the caller's reference goes too, with its handler. A step posted
// to the caller's executor owns the references it will drop, so a caller's
// io_context that stops and is destroyed with the step still queued frees the
// call, its handler and the coroutine frames behind it.
#pragma once

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

#include "framex/detail/bound_completion.hpp"
#include "framex/detail/outcome.hpp"
#include "framex/runtime.hpp"
#include "framex/stats.hpp"

namespace framex::detail {

template <class R, class Invoker, class Handler>
class blocking_call final : public pool_task, public bound_completion {
  using work_executor = std::decay_t<decltype(boost::asio::prefer(
      boost::asio::get_associated_executor(std::declval<Handler&>()),
      boost::asio::execution::outstanding_work.tracked))>;
  using slot_type = boost::asio::associated_cancellation_slot_t<Handler>;
  // The timer must not track work: it lives as long as the call, and an
  // abandoned call may outlive its caller's interest by the whole body.
  using timer_type = boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                                       boost::asio::wait_traits<std::chrono::steady_clock>,
                                                       boost::asio::associated_executor_t<Handler>>;

  enum phase : std::uint8_t { queued, running, cancel_requested, finished, abandoned };

 public:
  static void start(runtime& rt, std::chrono::steady_clock::duration timeout, stats_cell& stats, Invoker&& invoker,
                    Handler&& handler) {
    auto* self = new blocking_call(std::move(invoker), std::move(handler));
    self->stats_ = &stats;
    const auto executor = boost::asio::get_associated_executor(*self->handler_);
    // Bound first: on a multi-threaded context the timer (or a cancellation)
    // can fire on another thread at once, and its completion must find the
    // binding, or it is dropped and the caller's work is never given back.
    bind_completion(boost::asio::query(executor, boost::asio::execution::context), *self);
    if (self->slot_.is_connected()) self->slot_.template emplace<cancel_handler>(self);
    if (timeout > std::chrono::steady_clock::duration::zero()) {
      self->timer_.emplace(executor, timeout);
      self->timer_->async_wait([ref = reference(self)](const boost::system::error_code& ec) {
        if (!ec) ref.call->cancel(errc::timeout);
      });
    }
    submit(rt, *self);
  }

  // Pool thread.
  void run(bool stopping) noexcept override {
    std::uint8_t expected = queued;
    if (stopping) {
      if (!phase_.compare_exchange_strong(expected, finished, std::memory_order_acq_rel)) return release();
      result_.set_error(errc::cancelled);
      return post_deliver();
    }
    if (!phase_.compare_exchange_strong(expected, running, std::memory_order_acq_rel)) return release();
    result_.capture(invoker_);
    const std::uint8_t before = phase_.exchange(finished, std::memory_order_acq_rel);
    if (before == abandoned) return release();  // nobody waits (counted when abandoned); the result dies here
    record_outcome(*stats_, started_, result_);  // here, not on the caller's thread, which is the busier
    cancel_seen_ = before == cancel_requested;
    post_deliver();
  }

 private:
  struct cancel_handler {
    explicit cancel_handler(blocking_call* s) noexcept : self(s) {}
    blocking_call* self;
    void operator()(boost::asio::cancellation_type type) const {
      if (type != boost::asio::cancellation_type::none) self->cancel(errc::cancelled);
    }
  };

  // A counted reference that a handler holds: released whether the handler
  // runs or is destroyed unrun.
  struct reference {
    explicit reference(blocking_call* c) noexcept : call(c) { c->refs_.fetch_add(1, std::memory_order_relaxed); }
    reference(reference&& o) noexcept : call(std::exchange(o.call, nullptr)) {}
    reference& operator=(reference&&) = delete;
    ~reference() {
      if (call != nullptr) call->release();
    }
    blocking_call* call;
  };

  // A step posted to the caller's executor that owns `Refs` references: it
  // runs the step, which gives them up, or, destroyed unrun (the caller's
  // io_context stopped and is destroyed with it queued), releases them, and
  // with the last one the handler and the coroutine frames it keeps.
  template <void (blocking_call::*Step)(), int Refs>
  struct posted_step {
    explicit posted_step(blocking_call* c) noexcept : call(c) {}
    posted_step(posted_step&& o) noexcept : call(std::exchange(o.call, nullptr)) {}
    posted_step& operator=(posted_step&&) = delete;
    ~posted_step() {
      if (call != nullptr) call->release(Refs);
    }
    void operator()() { (std::exchange(call, nullptr)->*Step)(); }
    blocking_call* call;
  };

  blocking_call(Invoker&& invoker, Handler&& handler)
      : invoker_(std::move(invoker)),
        handler_(std::in_place, std::move(handler)),
        slot_(boost::asio::get_associated_cancellation_slot(*handler_)),
        work_(std::in_place, boost::asio::prefer(boost::asio::get_associated_executor(*handler_),
                                                 boost::asio::execution::outstanding_work.tracked)) {}

  void release(int n = 1) noexcept {
    if (refs_.fetch_sub(n, std::memory_order_acq_rel) == n) delete this;
  }

  // Posts `Step` to the caller's executor unless the caller's context is gone
  // (then `detach` dropped the binding's reference; here the post drops it).
  template <void (blocking_call::*Step)(), int Refs>
  bool post_to_caller() noexcept {
    if (!unbind_completion(*this, [&] { boost::asio::post(*work_, posted_step<Step, Refs>(this)); })) return false;
    release();
    return true;
  }

  void post_deliver() noexcept {
    // deliver gives up the caller's reference and the pool's.
    if (!post_to_caller<&blocking_call::deliver, 2>()) release();  // the pool's: deliver will not run
  }

  // The caller's context shuts down with this call in flight (bound_completion).
  void detach() noexcept override {
    if (slot_.is_connected()) slot_.clear();
    handler_.reset();
    timer_.reset();
    work_.reset();
    release();  // the caller's: its handler is gone
    release();  // the binding's
  }

  // Caller's executor, after the body finished (or was skipped at shutdown).
  void deliver() {
    if (cancel_seen_) {
      outcome<R> out;
      out.set_error(deferred_);
      return complete(std::move(out), 2);
    }
    complete(std::move(result_), 2);  // moved into complete's parameter before `this` may go
  }

  // Caller's executor, after a cancellation abandoned the call.
  void deliver_abandoned() {
    outcome<R> out;
    out.set_error(deferred_);
    record_outcome(*stats_, started_, out);
    complete(std::move(out), 1);
  }

  // Caller's executor: the slot fired or the timer expired.
  void cancel(errc why) {
    std::uint8_t p = phase_.load(std::memory_order_acquire);
    for (;;) {
      if (p == queued || (p == running && !Invoker::pinned)) {
        if (!phase_.compare_exchange_weak(p, abandoned, std::memory_order_acq_rel)) continue;
        deferred_ = why;
        // Not from inside the slot's emit: the handler runs from the executor.
        post_to_caller<&blocking_call::deliver_abandoned, 1>();  // the caller's reference
        return;
      }
      if (p == running) {  // pinned: the body may write into the caller's memory
        deferred_ = why;
        if (!phase_.compare_exchange_weak(p, cancel_requested, std::memory_order_acq_rel)) continue;
      }
      return;  // finished (delivery is on its way) or already cancelled
    }
  }

  void complete(outcome<R> out, int references) {
    if (slot_.is_connected()) slot_.clear();
    Handler handler = std::move(*handler_);
    handler_.reset();
    // Drop everything that belongs to the caller's execution context now: an
    // abandoned body may run on long after the caller, and its io_context, are
    // gone. Destroying the timer aborts a pending wait, whose handler holds its
    // own reference. Nothing posts through work_ again after this point.
    timer_.reset();
    work_.reset();
    if (refs_.fetch_sub(references, std::memory_order_acq_rel) == references) delete this;
    std::move(handler)(std::move(out));
  }

  Invoker invoker_;
  std::optional<Handler> handler_;
  stats_cell* stats_ = nullptr;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  slot_type slot_;
  std::optional<work_executor> work_;
  std::optional<timer_type> timer_;
  outcome<R> result_;
  errc deferred_ = errc::cancelled;
  bool cancel_seen_ = false;
  std::atomic<std::uint8_t> phase_{queued};
  std::atomic<int> refs_{3};  // the caller's, the pool's, the binding's
};

}  // namespace framex::detail
