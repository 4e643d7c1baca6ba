// The bytes of one outgoing msgpack message: what the typed templates pack
// into and the wire layer (net/) sends. It knows nothing of functions or
// calls, so the wire depends on it and not on the runtime's vocabulary.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace framex::detail {

/// The bytes of one outgoing message. Packing appends; `prepend` fills room
/// reserved at the front, so a header whose length depends on a message id
/// known only later is written without moving the body.
class message_buffer {
 public:
  message_buffer() = default;
  explicit message_buffer(std::size_t headroom) : begin_(headroom), end_(headroom) { grow(headroom + 112); }

  /// msgpack-c's stream interface. Growth never zero-fills: a 1 MiB argument
  /// costs one copy, not a memset and a copy.
  void write(const char* p, std::size_t n) {
    if (end_ + n > capacity_) grow(std::max(2 * capacity_, end_ + n));
    if (n != 0) std::memcpy(data_.get() + end_, p, n);
    end_ += n;
  }

  void prepend(const char* p, std::size_t n) {
    if (n > begin_) throw std::length_error("framex: message header larger than its reserved room");
    begin_ -= n;
    std::memcpy(data_.get() + begin_, p, n);
  }

  /// A copy, for a call that may be sent again.
  [[nodiscard]] message_buffer clone() const {
    message_buffer c;
    c.grow(capacity_);
    if (data_) std::memcpy(c.data_.get(), data_.get(), end_);
    c.begin_ = begin_;
    c.end_ = end_;
    return c;
  }

  [[nodiscard]] const char* data() const noexcept { return data_.get() + begin_; }
  [[nodiscard]] std::size_t size() const noexcept { return end_ - begin_; }

 private:
  void grow(std::size_t capacity) {
    std::unique_ptr<char[]> bigger(new char[capacity]);
    if (data_) std::memcpy(bigger.get(), data_.get(), end_);
    data_ = std::move(bigger);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace framex::detail
