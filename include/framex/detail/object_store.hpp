// Where spilled objects live (framex/object_ref.hpp); compiled in src/storage/object_store.cpp.
//
// A spilled object is the msgpack form of a value, in the file
// `storage.path/<owner>/<digest>`: `owner` is the id of the process that
// holds its references (16 hex digits), `digest` the SHA-256 of its bytes
// (64 hex digits). Neither part comes from a peer as text, so no name a peer
// sends can reach outside `storage.path`. On the wire a reference is a
// msgpack ext of type `object_ext_type`: digest, size and owner, 48 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "framex/codec.hpp"
#include "framex/config.hpp"

namespace framex {
template <class T>
class object_ref;
}  // namespace framex

namespace framex::detail {

template <class T>
struct ref_access;  // framex/object_ref.hpp

template <class T>
inline constexpr bool is_object_ref = false;
template <class T>
inline constexpr bool is_object_ref<object_ref<T>> = true;

/// The ext type of a reference on the wire, and of the marker asking a
/// worker for its result as a reference (its payload: the owner, 8 bytes).
inline constexpr std::int8_t object_ext_type = 0x46;
inline constexpr std::int8_t as_ref_ext_type = 0x47;
inline constexpr std::uint32_t object_ext_size = 48;

/// Names a spilled object.
struct object_id {
  std::array<unsigned char, 32> digest{};
  /// Bytes of its msgpack form.
  std::uint64_t size = 0;
  /// The process whose directory holds it.
  std::uint64_t owner = 0;
  /// The digest in hex: the file's name.
  [[nodiscard]] std::string name() const;
};

inline void put_u64(char* at, std::uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i, v >>= 8) at[i] = static_cast<char>(v & 0xff);
}

/// The marker that opens the arguments of a call whose result is wanted as a
/// reference: an ext of `as_ref_ext_type` holding `owner` in 8 bytes,
/// big-endian (read by the worker in src/protocol/actor_layout.hpp).
template <class S>
void pack_result_as_ref(msgpack::packer<S>& p, std::uint64_t owner) {
  char bytes[8];
  put_u64(bytes, owner);
  p.pack_ext(sizeof bytes, as_ref_ext_type);
  p.pack_ext_body(bytes, sizeof bytes);
}

template <class S>
void pack_object_id(msgpack::packer<S>& p, const object_id& id) {
  char payload[object_ext_size];
  for (std::size_t i = 0; i < id.digest.size(); ++i) payload[i] = static_cast<char>(id.digest[i]);
  put_u64(payload + 32, id.size);
  put_u64(payload + 40, id.owner);
  p.pack_ext(object_ext_size, object_ext_type);
  p.pack_ext_body(payload, object_ext_size);
}

/// The reference `o` is, or nullopt when it is not one. Throws `decode_error`
/// for an ext of framex's type that is malformed.
std::optional<object_id> object_id_of(const msgpack::object& o);

/// This process's id (framex/detail/actor.hpp): the owner of what it spills.
std::uint64_t caller_id() noexcept;

/// A spilled object this process refers to. The last handle of an object in
/// this process's directory deletes its file.
class spilled_object {
 public:
  spilled_object(object_id id, bool owned) noexcept : id_(id), owned_(owned) {}
  spilled_object(const spilled_object&) = delete;
  spilled_object& operator=(const spilled_object&) = delete;
  ~spilled_object();
  [[nodiscard]] const object_id& id() const noexcept { return id_; }

 private:
  object_id id_;
  bool owned_;
};

/// Applies a runtime's or a worker's `[storage]` settings to this process
/// (the last one wins), and starts refreshing its `.alive` file and deleting
/// the objects of processes that died.
void configure_storage(const config::storage_section& settings);

/// `storage.inline_threshold`.
std::size_t inline_threshold() noexcept;

/// Writes `packed` (a value's msgpack form) as an object held by `owner`
/// (0: this process), unless it is there already. Throws `std::system_error`
/// (`object_unavailable`) when it cannot be written.
std::shared_ptr<const spilled_object> spill(std::string_view packed, std::uint64_t owner = 0);

/// A handle for a reference that came from another process.
std::shared_ptr<const spilled_object> adopt(const object_id& id);

using object_decoder = std::shared_ptr<const void> (*)(const msgpack::object&);

/// The object `id` decoded by `decode` (into the type `type` names): from this
/// process's cache, else read from storage once, however many ask at a time.
/// Throws `std::system_error` (`object_unavailable`) naming the object when it
/// is missing or corrupt, and what `decode` throws.
std::shared_ptr<const void> load_object(const object_id& id, const std::string& type, object_decoder decode);

/// An actor's snapshots (framex/actor.hpp), kept as
/// `storage.path/<owner>/actor-<key>` (both in hex), replaced whole:
/// `write_snapshot` throws `std::system_error` (`object_unavailable`) when it
/// cannot write; `read_snapshot` gives nothing when there is none;
/// `remove_snapshot` deletes one of this process's.
void write_snapshot(std::uint64_t owner, std::uint64_t key, std::string_view bytes);
std::optional<std::string> read_snapshot(std::uint64_t owner, std::uint64_t key);
void remove_snapshot(std::uint64_t key) noexcept;

/// The object `id` as a `T`.
template <class T>
std::shared_ptr<const T> load_as(const object_id& id) {
  static const std::string type = codec<T>::schema();
  auto decode = +[](const msgpack::object& o) -> std::shared_ptr<const void> {
    auto value = std::make_shared<T>();
    codec<T>::unpack(o, *value);
    return value;
  };
  return std::static_pointer_cast<const T>(load_object(id, type, decode));
}

/// Decodes one argument a worker received: a reference where a `T` is
/// expected is resolved from storage (copied out of the cache); anything else
/// goes to `codec<T>`.
template <class T>
void unpack_argument(const msgpack::object& o, T& out) {
  if constexpr (!is_object_ref<T> && std::is_copy_assignable_v<T>) {
    if (o.type == msgpack::type::EXT) {
      if (const auto id = object_id_of(o)) {
        out = *load_as<T>(*id);
        return;
      }
    }
  }
  codec<T>::unpack(o, out);
}

}  // namespace framex::detail
