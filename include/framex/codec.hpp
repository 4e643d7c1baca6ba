// framex/codec.hpp — how values cross a process boundary: msgpack, checked.
//
// `framex::codec<T>` packs a `T` as msgpack and decodes one back, checking every
// type and range: hostile bytes produce a `framex::decode_error` that says what
// was expected and where, never undefined behaviour. Supported without extra code:
//
// | C++ type                                             | msgpack                         |
// |------------------------------------------------------|---------------------------------|
// | `bool`, integers (range-checked), `float`, `double`  | bool, int, float                |
// | `std::string`, `std::string_view` (parameters only)  | str                             |
// | `std::vector<std::byte>`, `std::vector<unsigned char>` | bin                           |
// | sequences (`vector`, `list`, `deque`, `set`, ...), `std::array` | array                |
// | `std::map`, `std::unordered_map`                     | map                             |
// | `std::pair`, `std::tuple`                            | array of fixed length           |
// | `std::optional<T>`, `std::unique_ptr<T>`             | nil or the value                |
// | `std::variant<A, B...>`                              | `[index, value]`                |
// | `BOOST_DESCRIBE_STRUCT` / `_CLASS` types             | map keyed by member name        |
// | `BOOST_DESCRIBE_ENUM` types                          | str: the enumerator's name      |
// | other enums                                          | int                             |
// | types with msgpack-c's `MSGPACK_DEFINE`              | as msgpack-c packs them         |
//
// Anything else is not `framex::serializable`; `framex::codec<T>` for it fails to
// compile with a static_assert whose instantiation names `T`. A user may
// specialize `framex::codec<T>` for a type of their own (see `codec<T>` below).
//
// Each codec also gives a `schema()`: a compiler-independent description of the
// wire shape (`i32`, `[str]`, `{.x:f64,.y:f64}`), from which function signatures
// are built and compared when a caller connects to a worker.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST  // msgpack-cxx's Boost adaptors are not used (framex builds with MSGPACK_NO_BOOST)
#endif
#include <msgpack.hpp>

#include <boost/describe/enum_from_string.hpp>
#include <boost/describe/enum_to_string.hpp>
#include <boost/describe/enumerators.hpp>
#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace framex {

/// A value did not decode as the expected type. `what()` reads like
/// "expected i32, got str at [2].x".
class decode_error : public std::runtime_error {
 public:
  explicit decode_error(std::string expected, std::string got, std::string path = {})
      : std::runtime_error(compose(expected, got, path)),
        expected_(std::move(expected)),
        got_(std::move(got)),
        path_(std::move(path)) {}

  /// The same error one level further out: `at` is prepended to the path.
  [[nodiscard]] decode_error within(std::string_view at) const {
    return decode_error(expected_, got_, std::string(at) + path_);
  }
  [[nodiscard]] const std::string& expected() const noexcept { return expected_; }

 private:
  static std::string compose(const std::string& expected, const std::string& got, const std::string& path) {
    std::string s = "expected " + expected + ", got " + got;
    if (!path.empty()) s += " at " + path;
    return s;
  }
  std::string expected_, got_, path_;
};

/// Packs and decodes `T`. Specialize it for a type of your own with:
/// `template <class S> static void pack(msgpack::packer<S>&, const T&)`,
/// `static void unpack(const msgpack::object&, T&)` (throwing `decode_error`)
/// and `static std::string schema()`.
template <class T, class Enable = void>
struct codec {
  static constexpr bool unsupported = true;
  template <class S>
  static void pack(msgpack::packer<S>&, const T&) {
    static_assert(sizeof(T) == 0, "framex: this type cannot be serialized; the codec<T> named in this error says which. "
                                  "Describe it with BOOST_DESCRIBE_STRUCT/CLASS/ENUM, give it MSGPACK_DEFINE, "
                                  "or specialize framex::codec<T>");
  }
  static void unpack(const msgpack::object&, T&) { static_assert(sizeof(T) == 0, "framex: this type cannot be serialized"); }
  static std::string schema() {
    static_assert(sizeof(T) == 0, "framex: this type cannot be serialized; the codec<T> named in this error says which. "
                                  "Describe it with BOOST_DESCRIBE_STRUCT/CLASS/ENUM, give it MSGPACK_DEFINE, "
                                  "or specialize framex::codec<T>");
    return {};
  }
};

/// True when `T` can be packed and decoded by `codec<T>`.
template <class T>
concept serializable = !requires { codec<T>::unsupported; };

namespace detail::codec_impl {

inline std::string kind_name(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER: return "positive int";
    case msgpack::type::NEGATIVE_INTEGER: return "negative int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array of " + std::to_string(o.via.array.size);
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "?";
}

// `open + inner + close`, built by appending: GCC 12 at -O3 warns falsely
// (-Wrestrict, its bug 105329) about `"[" + std::string`.
inline std::string enclose(const char* open, const std::string& inner, const char* close) {
  std::string s(open);
  s += inner;
  s += close;
  return s;
}

[[noreturn]] inline void mismatch(const std::string& expected, const msgpack::object& got) {
  throw decode_error(expected, std::string(kind_name(got)));
}

// Decodes element `i` of a container, adding "[i]" to the path of any error.
template <class T>
void unpack_at(const msgpack::object& o, T& out, std::size_t i) {
  try {
    codec<T>::unpack(o, out);
  } catch (const decode_error& e) {
    throw e.within("[" + std::to_string(i) + "]");
  }
}

template <class T>
concept described_struct = boost::describe::has_describe_members<T>::value && !std::is_union_v<T>;
template <class T>
concept described_enum = boost::describe::has_describe_enumerators<T>::value;

template <class T>
concept binary = std::is_same_v<T, std::vector<std::byte>> || std::is_same_v<T, std::vector<unsigned char>>;

template <class T>
concept sequence = !binary<T> && !std::is_same_v<T, std::string> && requires(T& c, const T& cc) {
  typename T::value_type;
  cc.begin();
  cc.end();
  c.clear();
  c.insert(c.end(), std::declval<typename T::value_type>());
} && !requires { typename T::mapped_type; };

template <class T>
concept mapping = requires(T& m) {
  typename T::key_type;
  typename T::mapped_type;
  m.emplace(std::declval<typename T::key_type>(), std::declval<typename T::mapped_type>());
};

template <class T>
concept msgpack_defined = requires(const T& t, T& u, msgpack::packer<msgpack::sbuffer>& p, const msgpack::object& o) {
  t.msgpack_pack(p);
  u.msgpack_unpack(o);
};

template <class... T>
std::string join_schemas(const char* sep) {
  std::string s;
  ((s += (s.empty() ? "" : sep), s += codec<T>::schema()), ...);
  return s;
}

template <class T>
constexpr bool members_serializable() {
  bool ok = true;
  boost::mp11::mp_for_each<boost::describe::describe_members<T, boost::describe::mod_public | boost::describe::mod_inherited>>(
      [&](auto d) { ok = ok && serializable<std::remove_cvref_t<decltype(std::declval<T&>().*d.pointer)>>; });
  return ok;
}

template <class Tuple, std::size_t... I>
void unpack_tuple(const msgpack::object& o, Tuple& t, std::index_sequence<I...>) {
  constexpr std::size_t n = sizeof...(I);
  if (o.type != msgpack::type::ARRAY || o.via.array.size != n) {
    mismatch("array of " + std::to_string(n), o);
  }
  (unpack_at(o.via.array.ptr[I], std::get<I>(t), I), ...);
}

}  // namespace detail::codec_impl

}  // namespace framex

// The codecs of every supported type.
#include "framex/impl/codec.hpp"
