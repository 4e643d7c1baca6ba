// One msgpack message as received: what the wire layer (net/) hands up and
// the runtime decodes. Its objects live in a zone that is reused from message
// to message, and large strings and binaries stay in the read buffer they
// arrived in (which the message then keeps), so receiving a small message
// allocates nothing in steady state and a large one is not copied.
#pragma once

#include <msgpack.hpp>

#include <utility>

namespace framex::detail {

/// Where a received message's objects live; kept by the wire layer.
struct message_storage;
/// Gives `s` back for the next message. Any thread.
void release_message_storage(message_storage* s) noexcept;

class received_message {
 public:
  received_message() = default;
  received_message(const msgpack::object& root, message_storage* storage) noexcept : root_(root), storage_(storage) {}
  received_message(received_message&& o) noexcept : root_(o.root_), storage_(std::exchange(o.storage_, nullptr)) {}
  received_message& operator=(received_message&& o) noexcept {
    if (this != &o) {
      release_message_storage(storage_);
      root_ = o.root_;
      storage_ = std::exchange(o.storage_, nullptr);
    }
    return *this;
  }
  received_message(const received_message&) = delete;
  received_message& operator=(const received_message&) = delete;
  ~received_message() { release_message_storage(storage_); }

  /// The message's root object (nil when empty).
  [[nodiscard]] const msgpack::object& get() const noexcept { return root_; }

 private:
  msgpack::object root_;
  message_storage* storage_ = nullptr;
};

}  // namespace framex::detail
