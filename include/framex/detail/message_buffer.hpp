// The bytes of one outgoing msgpack message: what the typed templates pack
// into and the wire layer (net/) sends. It knows nothing of functions or
// calls, so the wire depends on it and not on the runtime's vocabulary.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "framex/detail/pool.hpp"

namespace framex::detail {

/// The bytes of one outgoing message. Packing appends; `prepend` fills room
/// reserved at the front, so a header whose length depends on a message id
/// known only later is written without moving the body.
///
/// A buffer that `keep`s a value refers to that value's large strings and
/// binaries instead of copying them: the message is then its own bytes with
/// those in between (`for_each_segment`), sent by one gathered write, and the
/// value lives as long as the buffer.
class message_buffer {
 public:
  /// The smallest write a keeping buffer refers to rather than copies.
  static constexpr std::size_t refer_min = std::size_t{64} << 10;

  message_buffer() = default;
  explicit message_buffer(std::size_t headroom) : begin_(headroom), end_(headroom) { grow(headroom + 112); }
  message_buffer(message_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        begin_(std::exchange(o.begin_, 0)),
        end_(std::exchange(o.end_, 0)),
        kept_(std::exchange(o.kept_, nullptr)),
        leave_out_(o.leave_out_),
        left_out_(o.left_out_) {}
  message_buffer& operator=(message_buffer&& o) noexcept {
    if (this != &o) {
      pool_free(data_, capacity_);
      delete kept_;
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      begin_ = std::exchange(o.begin_, 0);
      end_ = std::exchange(o.end_, 0);
      kept_ = std::exchange(o.kept_, nullptr);
      leave_out_ = o.leave_out_;
      left_out_ = o.left_out_;
    }
    return *this;
  }
  message_buffer(const message_buffer&) = delete;
  message_buffer& operator=(const message_buffer&) = delete;
  ~message_buffer() {
    pool_free(data_, capacity_);
    delete kept_;
  }

  /// msgpack-c's stream interface. Growth never zero-fills: a 1 MiB argument
  /// costs one copy, not a memset and a copy. A buffer that keeps a value
  /// notes where a large write goes instead of copying it.
  void write(const char* p, std::size_t n) {
    if (n >= refer_min) {
      if (kept_ != nullptr && kept_->count < kept_->pieces.size()) {
        kept_->pieces[kept_->count++] = piece{end_, p, n};
        kept_->bytes += n;
        return;
      }
      if (leave_out_) {
        left_out_ = true;
        return;
      }
    }
    if (end_ + n > capacity_) grow(std::max(2 * capacity_, end_ + n));
    if (n != 0) std::memcpy(data_ + end_, p, n);
    end_ += n;
  }

  /// From now on a large write is left out, not copied, and `left_out()` says
  /// so: for a packing to be done again into a buffer that `keep`s the value.
  void leave_out_large() noexcept { leave_out_ = true; }
  [[nodiscard]] bool left_out() const noexcept { return left_out_; }

  /// Moves `value` into the buffer, which from now on refers to the large
  /// strings and binaries packed from it. Pack the returned value, not the
  /// argument. Nothing may have been written yet.
  template <class T>
  const T& keep(T&& value) {
    static_assert(!std::is_reference_v<T>, "keep takes a value it may move");
    auto* k = new kept<T>(std::move(value));
    delete kept_;
    kept_ = k;
    return k->value;
  }

  /// True when the message is all in its own bytes (`data()`, `size()`).
  [[nodiscard]] bool contiguous() const noexcept { return kept_ == nullptr || kept_->count == 0; }

  /// Calls `f(const char*, std::size_t)` for each stretch of the message, in
  /// order: its own bytes, with the ones it refers to in between.
  template <class F>
  void for_each_segment(F&& f) const {
    std::size_t at = begin_;
    if (kept_ != nullptr) {
      for (std::size_t i = 0; i < kept_->count; ++i) {
        const piece& x = kept_->pieces[i];
        if (x.at > at) f(data_ + at, x.at - at);
        f(x.data, x.size);
        at = x.at;
      }
    }
    if (end_ > at) f(data_ + at, end_ - at);
  }

  /// Copies what the buffer refers to into its own bytes, and lets the kept
  /// value go.
  void flatten() {
    if (contiguous()) return;
    message_buffer flat(begin_);
    for_each_segment([&](const char* p, std::size_t n) { flat.write(p, n); });
    *this = std::move(flat);
  }

  void prepend(const char* p, std::size_t n) {
    if (n > begin_) throw std::length_error("framex: message header larger than its reserved room");
    begin_ -= n;
    std::memcpy(data_ + begin_, p, n);
  }

  /// A copy, for a call that may be sent again; it holds all its bytes.
  [[nodiscard]] message_buffer clone() const {
    if (!contiguous()) {
      message_buffer flat(begin_);
      for_each_segment([&](const char* p, std::size_t n) { flat.write(p, n); });
      return flat;
    }
    message_buffer c;
    c.grow(capacity_);
    if (data_ != nullptr) std::memcpy(c.data_, data_, end_);
    c.begin_ = begin_;
    c.end_ = end_;
    return c;
  }

  /// The message's own bytes: all of it when `contiguous()`.
  [[nodiscard]] const char* data() const noexcept { return data_ + begin_; }
  /// The whole message's size, referred bytes included.
  [[nodiscard]] std::size_t size() const noexcept { return end_ - begin_ + (kept_ != nullptr ? kept_->bytes : 0); }

 private:
  // A large write referred to: `size` bytes at `data`, which go before the
  // own bytes from offset `at` on.
  struct piece {
    std::size_t at = 0;
    const char* data = nullptr;
    std::size_t size = 0;
  };
  struct kept_base {
    virtual ~kept_base() = default;
    std::array<piece, 8> pieces{};  // beyond these, large writes are copied
    std::size_t count = 0;
    std::size_t bytes = 0;
  };
  template <class T>
  struct kept final : kept_base {
    explicit kept(T&& v) : value(std::move(v)) {}
    T value;
  };

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
  kept_base* kept_ = nullptr;
  bool leave_out_ = false;
  bool left_out_ = false;
};

}  // namespace framex::detail
