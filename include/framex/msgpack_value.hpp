// framex/msgpack_value.hpp — any msgpack value, for answers whose shape is
// known only at run time (a dynamic API such as Neovim's `nvim_get_api_info`)
// and for the error objects of servers that are not framex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
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
  explicit msgpack_value(const msgpack::object& o) {
    auto h = std::make_shared<held>();
    copy(o, h->root, h->zone);
    held_ = std::move(h);
  }

  /// The value, valid while this (or a copy) lives.
  [[nodiscard]] const msgpack::object& get() const noexcept {
    static const msgpack::object nil;
    return held_ ? held_->root : nil;
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
  struct held {
    msgpack::zone zone;
    msgpack::object root;
  };

  // Copies `from` into `to`, its strings, binaries and containers into `z`.
  // (Not msgpack::clone: it passes a null pointer to memcpy for an empty bin.)
  static void copy(const msgpack::object& from, msgpack::object& to, msgpack::zone& z) {
    to = from;
    const auto bytes = [&z](const char* p, std::size_t n) -> const char* {
      if (n == 0) return nullptr;
      char* out = static_cast<char*>(z.allocate_align(n, 1));
      std::memcpy(out, p, n);
      return out;
    };
    switch (from.type) {
      case msgpack::type::STR: to.via.str.ptr = bytes(from.via.str.ptr, from.via.str.size); break;
      case msgpack::type::BIN: to.via.bin.ptr = bytes(from.via.bin.ptr, from.via.bin.size); break;
      case msgpack::type::EXT: to.via.ext.ptr = bytes(from.via.ext.ptr, std::size_t{from.via.ext.size} + 1); break;  // type byte, then data
      case msgpack::type::ARRAY: {
        const std::uint32_t n = from.via.array.size;
        auto* items = n == 0 ? nullptr : static_cast<msgpack::object*>(z.allocate_align(sizeof(msgpack::object) * n, alignof(msgpack::object)));
        for (std::uint32_t i = 0; i < n; ++i) copy(from.via.array.ptr[i], items[i], z);
        to.via.array.ptr = items;
        break;
      }
      case msgpack::type::MAP: {
        const std::uint32_t n = from.via.map.size;
        auto* kvs = n == 0 ? nullptr : static_cast<msgpack::object_kv*>(z.allocate_align(sizeof(msgpack::object_kv) * n, alignof(msgpack::object_kv)));
        for (std::uint32_t i = 0; i < n; ++i) {
          copy(from.via.map.ptr[i].key, kvs[i].key, z);
          copy(from.via.map.ptr[i].val, kvs[i].val, z);
        }
        to.via.map.ptr = kvs;
        break;
      }
      default: break;  // nil, bool, numbers: copied with `to = from`
    }
  }

  std::shared_ptr<const held> held_;
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
