// The layouts of calls that carry more than a function's arguments, read on
// the worker (the caller's side packs them in include/framex/actor.hpp and
// include/framex/detail/distributed_call.hpp, templates over the argument
// types; tests/unit/protocol_test.cpp pins both sides against each other).
//
//   an actor's method call   [actor_id, caller, arguments...]
//   an actor's spawn         [caller, name, [arguments...]] or
//                            [caller, name, [arguments...], [snapshot_every, key]]
//   a result as a reference  [ext(as_ref_ext_type, owner as 8 bytes big-endian), arguments...]
//
// Readers return views into the message (valid while it lives), or nothing
// when the layout is wrong; they never throw.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace framex::protocol {

struct actor_call {
  std::uint64_t actor = 0;    // nonzero
  std::uint64_t caller = 0;   // nonzero
  msgpack::object arguments;  // an array: the method's arguments
};
[[nodiscard]] std::optional<actor_call> read_actor_call(const msgpack::object& params) noexcept;

struct actor_spawn {
  std::uint64_t caller = 0;          // nonzero
  std::string_view name;             // empty: anonymous
  msgpack::object arguments;         // an array: the constructor's arguments
  std::uint32_t snapshot_every = 0;  // 0: no snapshots
  std::uint64_t snapshot_key = 0;
};
[[nodiscard]] std::optional<actor_spawn> read_actor_spawn(const msgpack::object& params) noexcept;

/// A call whose result is wanted as a reference: the process to own it, and the arguments after the marker.
struct result_as_ref {
  std::uint64_t owner = 0;  // 0: the marker is malformed
  msgpack::object arguments;
};
/// Nothing when `params` begins with no marker of type `ext_type`.
[[nodiscard]] std::optional<result_as_ref> read_result_as_ref(const msgpack::object& params, std::int8_t ext_type) noexcept;

}  // namespace framex::protocol
