// framex/impl/codec.hpp — the `codec<T>` of every type framex supports without
// extra code (the table at the top of framex/codec.hpp): scalars, enums,
// containers, nullables, variants, described structs and msgpack-c's own
// types. Included by framex/codec.hpp; not for direct inclusion.
#pragma once

#include "framex/codec.hpp"

namespace framex {

// ---- scalars ----

template <>
struct codec<bool> {
  template <class S>
  static void pack(msgpack::packer<S>& p, bool v) {
    p.pack(v);
  }
  static void unpack(const msgpack::object& o, bool& v) {
    if (o.type != msgpack::type::BOOLEAN) detail::codec_impl::mismatch("bool", o);
    v = o.via.boolean;
  }
  static std::string schema() { return "bool"; }
};

template <class T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
struct codec<T> {
  template <class S>
  static void pack(msgpack::packer<S>& p, T v) {
    if constexpr (std::is_signed_v<T>) {
      p.pack(static_cast<std::int64_t>(v));
    } else {
      p.pack(static_cast<std::uint64_t>(v));
    }
  }
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) range(o);
      v = static_cast<T>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      if constexpr (std::is_unsigned_v<T>) {
        range(o);
      } else {
        if (o.via.i64 < static_cast<std::int64_t>(std::numeric_limits<T>::min())) range(o);
        v = static_cast<T>(o.via.i64);
      }
    } else {
      detail::codec_impl::mismatch(schema(), o);
    }
  }
  static std::string schema() {
    std::string s(1, std::is_signed_v<T> ? 'i' : 'u');  // not `"i" + std::string`: GCC 12 -Wrestrict false positive (PR105329)
    s += std::to_string(sizeof(T) * 8);
    return s;
  }

 private:
  [[noreturn]] static void range(const msgpack::object& o) {
    throw decode_error(schema(), o.type == msgpack::type::POSITIVE_INTEGER ? std::to_string(o.via.u64)
                                                                            : std::to_string(o.via.i64));
  }
};

template <std::floating_point T>
struct codec<T> {
  // Always float32/float64 on the wire: msgpack-cxx 4.1.3's pack_float and
  // pack_double write integral values as integers, which turns -0.0 into 0 and
  // hands other languages an int where the signature says a float.
  template <class S>
  static void pack(msgpack::packer<S>& p, T v) {
    using bits_type = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    bits_type bits;
    std::memcpy(&bits, &v, sizeof bits);
    char bytes[1 + sizeof bits];
    bytes[0] = static_cast<char>(sizeof(T) == 4 ? 0xca : 0xcb);
    for (std::size_t i = 0; i < sizeof bits; ++i) bytes[1 + i] = static_cast<char>(bits >> (8 * (sizeof bits - 1 - i)));
    p.pack_bin_body(bytes, sizeof bytes);  // appends the bytes as they are
  }
  static void unpack(const msgpack::object& o, T& v) {
    switch (o.type) {
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64:
        // Narrowing a finite double beyond T's range is undefined behaviour.
        if (std::isfinite(o.via.f64) && std::abs(o.via.f64) > static_cast<double>(std::numeric_limits<T>::max())) {
          throw decode_error(schema(), std::to_string(o.via.f64));
        }
        v = static_cast<T>(o.via.f64);
        return;
      case msgpack::type::POSITIVE_INTEGER: v = static_cast<T>(o.via.u64); return;
      case msgpack::type::NEGATIVE_INTEGER: v = static_cast<T>(o.via.i64); return;
      default: detail::codec_impl::mismatch(schema(), o);
    }
  }
  static std::string schema() { return sizeof(T) == 4 ? "f32" : "f64"; }
};

template <>
struct codec<std::string> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const std::string& v) {
    p.pack(v);
  }
  static void unpack(const msgpack::object& o, std::string& v) {
    if (o.type != msgpack::type::STR) detail::codec_impl::mismatch("str", o);
    v.assign(o.via.str.ptr, o.via.str.size);
  }
  static std::string schema() { return "str"; }
};

/// A view decodes into the received message's own bytes: valid while the call
/// runs, which is as long as a parameter lives.
template <>
struct codec<std::string_view> {
  template <class S>
  static void pack(msgpack::packer<S>& p, std::string_view v) {
    p.pack_str(static_cast<std::uint32_t>(v.size()));
    p.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
  }
  static void unpack(const msgpack::object& o, std::string_view& v) {
    if (o.type != msgpack::type::STR) detail::codec_impl::mismatch("str", o);
    v = std::string_view(o.via.str.ptr, o.via.str.size);
  }
  static std::string schema() { return "str"; }
};

template <detail::codec_impl::binary T>
struct codec<T> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const T& v) {
    p.pack_bin(static_cast<std::uint32_t>(v.size()));
    p.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<std::uint32_t>(v.size()));
  }
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type != msgpack::type::BIN) detail::codec_impl::mismatch("bin", o);
    const auto* p = reinterpret_cast<const typename T::value_type*>(o.via.bin.ptr);
    v.assign(p, p + o.via.bin.size);
  }
  static std::string schema() { return "bin"; }
};

template <>
struct codec<std::monostate> {
  template <class S>
  static void pack(msgpack::packer<S>& p, std::monostate) {
    p.pack_nil();
  }
  static void unpack(const msgpack::object& o, std::monostate&) {
    if (o.type != msgpack::type::NIL) detail::codec_impl::mismatch("nil", o);
  }
  static std::string schema() { return "nil"; }
};

// ---- enums ----

template <detail::codec_impl::described_enum T>
struct codec<T> {
  template <class S>
  static void pack(msgpack::packer<S>& p, T v) {
    const char* name = boost::describe::enum_to_string(v, nullptr);
    if (name == nullptr) throw std::invalid_argument("framex: enum value without a described name");
    p.pack(std::string_view(name));
  }
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type != msgpack::type::STR) detail::codec_impl::mismatch(schema(), o);
    const std::string name(o.via.str.ptr, o.via.str.size);
    if (!boost::describe::enum_from_string(name.c_str(), v)) throw decode_error(schema(), "\"" + name + "\"");
  }
  static std::string schema() {
    std::string s = "enum{";
    boost::mp11::mp_for_each<boost::describe::describe_enumerators<T>>([&](auto d) {
      if (s.back() != '{') s += ',';
      s += d.name;
    });
    return s + "}";
  }
};

template <class T>
  requires(std::is_enum_v<T> && !detail::codec_impl::described_enum<T>)
struct codec<T> {
  using base = codec<std::underlying_type_t<T>>;
  template <class S>
  static void pack(msgpack::packer<S>& p, T v) {
    base::pack(p, static_cast<std::underlying_type_t<T>>(v));
  }
  static void unpack(const msgpack::object& o, T& v) {
    std::underlying_type_t<T> raw{};
    base::unpack(o, raw);
    v = static_cast<T>(raw);
  }
  static std::string schema() { return base::schema(); }
};

// ---- containers ----

template <detail::codec_impl::sequence T>
  requires serializable<typename T::value_type>
struct codec<T> {
  using element = typename T::value_type;
  template <class S>
  static void pack(msgpack::packer<S>& p, const T& v) {
    p.pack_array(static_cast<std::uint32_t>(std::size(v)));
    for (const auto& e : v) codec<element>::pack(p, e);
  }
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type != msgpack::type::ARRAY) detail::codec_impl::mismatch(schema(), o);
    v.clear();
    if constexpr (requires { v.reserve(std::size_t{}); }) v.reserve(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      element e{};
      detail::codec_impl::unpack_at(o.via.array.ptr[i], e, i);
      v.insert(v.end(), std::move(e));
    }
  }
  static std::string schema() { return detail::codec_impl::enclose("[", codec<element>::schema(), "]"); }
};

template <class T, std::size_t N>
  requires serializable<T>
struct codec<std::array<T, N>> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const std::array<T, N>& v) {
    p.pack_array(static_cast<std::uint32_t>(N));
    for (const auto& e : v) codec<T>::pack(p, e);
  }
  static void unpack(const msgpack::object& o, std::array<T, N>& v) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != N) detail::codec_impl::mismatch(schema(), o);
    for (std::size_t i = 0; i < N; ++i) detail::codec_impl::unpack_at(o.via.array.ptr[i], v[i], i);
  }
  static std::string schema() { return detail::codec_impl::enclose("[", codec<T>::schema() + ";" + std::to_string(N), "]"); }
};

template <detail::codec_impl::mapping T>
  requires(serializable<typename T::key_type> && serializable<typename T::mapped_type>)
struct codec<T> {
  using key = typename T::key_type;
  using mapped = typename T::mapped_type;
  template <class S>
  static void pack(msgpack::packer<S>& p, const T& v) {
    p.pack_map(static_cast<std::uint32_t>(v.size()));
    for (const auto& [k, m] : v) {
      codec<key>::pack(p, k);
      codec<mapped>::pack(p, m);
    }
  }
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type != msgpack::type::MAP) detail::codec_impl::mismatch(schema(), o);
    v.clear();
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      key k{};
      mapped m{};
      detail::codec_impl::unpack_at(o.via.map.ptr[i].key, k, i);
      detail::codec_impl::unpack_at(o.via.map.ptr[i].val, m, i);
      v.emplace(std::move(k), std::move(m));
    }
  }
  static std::string schema() { return detail::codec_impl::enclose("{", codec<key>::schema() + ":" + codec<mapped>::schema(), "}"); }
};

template <class... T>
  requires(serializable<T> && ...)
struct codec<std::tuple<T...>> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const std::tuple<T...>& v) {
    p.pack_array(sizeof...(T));
    std::apply([&](const auto&... e) { (codec<T>::pack(p, e), ...); }, v);
  }
  static void unpack(const msgpack::object& o, std::tuple<T...>& v) {
    detail::codec_impl::unpack_tuple(o, v, std::index_sequence_for<T...>{});
  }
  static std::string schema() { return detail::codec_impl::enclose("(", detail::codec_impl::join_schemas<T...>(","), ")"); }
};

template <class A, class B>
  requires(serializable<A> && serializable<B>)
struct codec<std::pair<A, B>> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const std::pair<A, B>& v) {
    p.pack_array(2);
    codec<A>::pack(p, v.first);
    codec<B>::pack(p, v.second);
  }
  static void unpack(const msgpack::object& o, std::pair<A, B>& v) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) detail::codec_impl::mismatch("array of 2", o);
    detail::codec_impl::unpack_at(o.via.array.ptr[0], v.first, 0);
    detail::codec_impl::unpack_at(o.via.array.ptr[1], v.second, 1);
  }
  static std::string schema() { return detail::codec_impl::enclose("(", detail::codec_impl::join_schemas<A, B>(","), ")"); }
};

namespace detail::codec_impl {
// `std::optional<T>` and `std::unique_ptr<T>`: nil, or the value.
template <class Nullable, class T>
struct nullable_codec {
  template <class S>
  static void pack(msgpack::packer<S>& p, const Nullable& v) {
    if (v) {
      codec<T>::pack(p, *v);
    } else {
      p.pack_nil();
    }
  }
  static void unpack(const msgpack::object& o, Nullable& v) {
    if (o.type == msgpack::type::NIL) {
      v.reset();
      return;
    }
    if constexpr (requires { v.emplace(); }) {
      v.emplace();
    } else {
      v = std::make_unique<T>();
    }
    codec<T>::unpack(o, *v);
  }
  static std::string schema() { return codec<T>::schema() + "?"; }
};
}  // namespace detail::codec_impl

template <class T>
  requires serializable<T>
struct codec<std::optional<T>> : detail::codec_impl::nullable_codec<std::optional<T>, T> {};

template <class T>
  requires serializable<T>
struct codec<std::unique_ptr<T>> : detail::codec_impl::nullable_codec<std::unique_ptr<T>, T> {};

/// `[index, value]`: the alternative's position in the variant, then its value.
template <class... T>
  requires(serializable<T> && ...)
struct codec<std::variant<T...>> {
  using type = std::variant<T...>;
  template <class S>
  static void pack(msgpack::packer<S>& p, const type& v) {
    if (v.valueless_by_exception()) throw std::invalid_argument("framex: a valueless variant cannot be packed");
    p.pack_array(2);
    p.pack(static_cast<std::uint32_t>(v.index()));
    std::visit([&](const auto& e) { codec<std::remove_cvref_t<decltype(e)>>::pack(p, e); }, v);
  }
  static void unpack(const msgpack::object& o, type& v) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2 ||
        o.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER ||
        o.via.array.ptr[0].via.u64 >= sizeof...(T)) {
      detail::codec_impl::mismatch(schema() + " as [index, value]", o);
    }
    emplace(o.via.array.ptr[1], v, static_cast<std::size_t>(o.via.array.ptr[0].via.u64),
            std::index_sequence_for<T...>{});
  }
  static std::string schema() { return detail::codec_impl::enclose("<", detail::codec_impl::join_schemas<T...>("|"), ">"); }

 private:
  template <std::size_t... I>
  static void emplace(const msgpack::object& o, type& v, std::size_t index, std::index_sequence<I...>) {
    ((index == I ? detail::codec_impl::unpack_at(o, v.template emplace<I>(), I) : void()), ...);
  }
};

// ---- described structs: a map keyed by member name ----

template <detail::codec_impl::described_struct T>
  requires(detail::codec_impl::members_serializable<T>())
struct codec<T> {
  using members = boost::describe::describe_members<T, boost::describe::mod_public | boost::describe::mod_inherited>;

  template <class S>
  static void pack(msgpack::packer<S>& p, const T& v) {
    p.pack_map(static_cast<std::uint32_t>(boost::mp11::mp_size<members>::value));
    boost::mp11::mp_for_each<members>([&](auto d) {
      p.pack(std::string_view(d.name));
      codec<std::remove_cvref_t<decltype(v.*d.pointer)>>::pack(p, v.*d.pointer);
    });
  }

  /// Every member must be present; keys the type does not have are ignored.
  static void unpack(const msgpack::object& o, T& v) {
    if (o.type != msgpack::type::MAP) detail::codec_impl::mismatch(schema(), o);
    boost::mp11::mp_for_each<members>([&](auto d) {
      const std::string_view name = d.name;
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack::object& key = o.via.map.ptr[i].key;
        if (key.type == msgpack::type::STR && std::string_view(key.via.str.ptr, key.via.str.size) == name) {
          try {
            codec<std::remove_cvref_t<decltype(v.*d.pointer)>>::unpack(o.via.map.ptr[i].val, v.*d.pointer);
          } catch (const decode_error& e) {
            throw e.within("." + std::string(name));
          }
          return;
        }
      }
      throw decode_error("member \"" + std::string(name) + "\"", "a map without it");
    });
  }

  static std::string schema() {
    std::string s = "{";
    boost::mp11::mp_for_each<members>([&](auto d) {
      if (s.size() > 1) s += ',';
      s += std::string(".") + d.name + ":" + codec<std::remove_cvref_t<decltype(std::declval<T&>().*d.pointer)>>::schema();
    });
    return s + "}";
  }
};

// ---- msgpack-c's own MSGPACK_DEFINE types ----

template <class T>
  requires(detail::codec_impl::msgpack_defined<T> && !detail::codec_impl::described_struct<T>)
struct codec<T> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const T& v) {
    p.pack(v);
  }
  static void unpack(const msgpack::object& o, T& v) {
    try {
      o.convert(v);
    } catch (const std::exception& e) {
      throw decode_error("a msgpack-defined value (" + std::string(e.what()) + ")", std::string(detail::codec_impl::kind_name(o)));
    }
  }
  static std::string schema() { return "msgpack"; }
};

}  // namespace framex
