// The bytes of one outgoing msgpack message: what the typed templates pack
// into and the wire layer (net/) sends. It knows nothing of functions or
// calls, so the wire depends on it and not on the runtime's vocabulary.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "framex/detail/pool.hpp"

namespace framex::detail {

/// The bytes of one outgoing message. Packing appends; `prepend` fills room
/// reserved at the front, so a header whose length depends on a message id
/// known only later is written without moving the body.
class message_buffer {
 public:
  message_buffer() = default;
  explicit message_buffer(std::size_t headroom) : begin_(headroom), end_(headroom) { grow(headroom + 112); }
  message_buffer(message_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        begin_(std::exchange(o.begin_, 0)),
        end_(std::exchange(o.end_, 0)) {}
  message_buffer& operator=(message_buffer&& o) noexcept {
    if (this != &o) {
      pool_free(data_, capacity_);
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      begin_ = std::exchange(o.begin_, 0);
      end_ = std::exchange(o.end_, 0);
    }
    return *this;
  }
  message_buffer(const message_buffer&) = delete;
  message_buffer& operator=(const message_buffer&) = delete;
  ~message_buffer() { pool_free(data_, capacity_); }

  /// msgpack-c's stream interface. Growth never zero-fills: a 1 MiB argument
  /// costs one copy, not a memset and a copy.
  void write(const char* p, std::size_t n) {
    if (end_ + n > capacity_) grow(std::max(2 * capacity_, end_ + n));
    if (n != 0) std::memcpy(data_ + end_, p, n);
    end_ += n;
  }

  void prepend(const char* p, std::size_t n) {
    if (n > begin_) throw std::length_error("framex: message header larger than its reserved room");
    begin_ -= n;
    std::memcpy(data_ + begin_, p, n);
  }

  /// A copy, for a call that may be sent again.
  [[nodiscard]] message_buffer clone() const {
    message_buffer c;
    c.grow(capacity_);
    if (data_ != nullptr) std::memcpy(c.data_, data_, end_);
    c.begin_ = begin_;
    c.end_ = end_;
    return c;
  }

  [[nodiscard]] const char* data() const noexcept { return data_ + begin_; }
  [[nodiscard]] std::size_t size() const noexcept { return end_ - begin_; }

 private:
  // Storage comes from the pool, which rounds it up to its block size.
  void grow(std::size_t capacity) {
    capacity = pool_block_size(capacity);
    char* bigger = static_cast<char*>(pool_allocate(capacity));
    if (data_ != nullptr) std::memcpy(bigger, data_, end_);
    pool_free(data_, capacity_);
    data_ = bigger;
    capacity_ = capacity;
  }

  char* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace framex::detail
