// The calling side of msgpack-RPC: one connection carrying any number of calls
// at once, and the requests and notifications the server sends back on it. Each call gets a message id; responses come back in any order and
// are matched by id. Whoever takes a call out of the table (its response, the
// connection's end, or the caller through `forget`) completes it, exactly once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>
#include <unordered_map>

#include "connection.hpp"
#include "framex/detail/pool.hpp"

namespace framex::net {

/// A call waiting for its response; implemented by the runtime.
class pending_call {
 public:
  /// The response arrived: `[1, msgid, error, result]`, shape checked.
  virtual void on_response(received_message message) noexcept = 0;
  /// The connection ended before the response.
  virtual void on_lost(std::error_code why) noexcept = 0;

 protected:
  ~pending_call() = default;
};

class client final : public connection {
 public:
  using connection::connection;

  /// Sends a request whose params `body` was packed after
  /// `detail::request_headroom` bytes of room, and files `call` under its id.
  /// Returns the id, or 0 when the connection is closed (`call` is not filed).
  /// Thread safety: any thread.
  std::uint32_t call(std::string_view method, message_buffer body, pending_call& call);

  /// Takes call `msgid` out of the table; true if it was still there, in
  /// which case the caller completes it. Thread safety: any thread.
  bool forget(std::uint32_t msgid);

  /// Sends `[2, method, [argument]]`. Thread safety: any thread.
  void notify(std::string_view method, std::uint64_t argument);

  /// The notification by which the server hears that the caller gave up on a
  /// call (framex's protocol names it; a server that does not speak it is
  /// never sent it). Set before the first call.
  void cancel_with(std::string notification) { cancel_notice_ = std::move(notification); }

  /// Tells the server that call `msgid` was given up, if it takes the
  /// notification named by `cancel_with`. Thread safety: any thread.
  void tell_cancelled(std::uint32_t msgid);

  /// What the client does with a request or notification its server sends
  /// (any not framex's own). Without one, a request is answered with
  /// `unknown_function` and a notification is ignored. On the strand; set
  /// before `start`.
  using incoming_handler = std::function<void(const std::shared_ptr<client>& from, incoming_request request)>;
  void on_incoming(incoming_handler f) { on_incoming_ = std::move(f); }

  /// `f` runs when unsent output drains below half the high-water mark
  /// (any thread, no lock held). Set before `start`.
  void on_drained(std::function<void()> f) { on_drained_ = std::move(f); }

  /// The notification by which the server says it is draining (framex's
  /// protocol names it; the wire does not). Set before `start`.
  void drain_on(std::string notification) { drain_notice_ = std::move(notification); }

  /// True once the server sent the notification named by `drain_on`: it
  /// takes no new call. Thread safety: any thread.
  [[nodiscard]] bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }

  /// Calls filed and not yet completed.
  [[nodiscard]] std::size_t outstanding() const noexcept { return outstanding_.load(std::memory_order_relaxed); }

 private:
  void on_message(received_message message, std::size_t cost) override;
  void on_close(std::error_code why) override;
  void on_writable() override {
    if (on_drained_) on_drained_();
  }

  std::mutex calls_mutex_;
  std::unordered_map<std::uint32_t, pending_call*, std::hash<std::uint32_t>, std::equal_to<>,
                     detail::pool_allocator<std::pair<const std::uint32_t, pending_call*>>>
      calls_;
  std::uint32_t next_id_ = 0;
  bool lost_ = false;
  std::atomic<std::size_t> outstanding_{0};
  std::atomic<bool> draining_{false};
  std::string drain_notice_;  // empty: none
  std::string cancel_notice_;  // empty: none
  std::function<void()> on_drained_;
  incoming_handler on_incoming_;
};

}  // namespace framex::net
