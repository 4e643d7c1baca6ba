// framex/msgpack_value.hpp — any msgpack value, for answers whose shape is
// known only at run time (a dynamic API such as Neovim's `nvim_get_api_info`)
// and for the error objects of servers that are not framex.
#pragma once

#include <memory>
#include <ostream>
#include <sstream>
#include <string>

#include "framex/codec.hpp"

namespace framex {

/// An owned copy of one msgpack value (nil by default). Copies share it; it is
/// never changed. Decode it, or a part of it, with `as<T>()`.
class msgpack_value {
 public:
  msgpack_value() = default;
  /// A deep copy of `o`.
  explicit msgpack_value(const msgpack::object& o) : handle_(std::make_shared<msgpack::object_handle>(msgpack::clone(o))) {}

  /// The value, valid while this (or a copy) lives.
  [[nodiscard]] const msgpack::object& get() const noexcept {
    static const msgpack::object nil;
    return handle_ ? handle_->get() : nil;
  }
  [[nodiscard]] const msgpack::object& operator*() const noexcept { return get(); }
  [[nodiscard]] const msgpack::object* operator->() const noexcept { return &get(); }
  [[nodiscard]] bool is_nil() const noexcept { return get().type == msgpack::type::NIL; }

  /// Decodes the value as `T`; throws `framex::decode_error` when it is not one.
  template <class T>
  [[nodiscard]] T as() const {
    T out{};
    codec<T>::unpack(get(), out);
    return out;
  }

  /// The value as text, JSON-like (msgpack-c's rendering).
  [[nodiscard]] std::string to_string() const {
    std::ostringstream s;
    s << get();
    return s.str();
  }

 private:
  std::shared_ptr<const msgpack::object_handle> handle_;
};

inline std::ostream& operator<<(std::ostream& os, const msgpack_value& v) { return os << v.get(); }

template <>
struct codec<msgpack_value> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const msgpack_value& v) {
    p.pack(v.get());
  }
  static void unpack(const msgpack::object& o, msgpack_value& v) { v = msgpack_value(o); }
  static std::string schema() { return "any"; }
};

}  // namespace framex
