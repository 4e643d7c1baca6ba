#include "protocol/actor_layout.hpp"

namespace framex::protocol {

namespace {

std::uint64_t u64_at(const msgpack::object& array, std::uint32_t i) noexcept {
  const auto& o = array.via.array.ptr[i];
  return o.type == msgpack::type::POSITIVE_INTEGER ? o.via.u64 : 0;
}

// The elements of `array` from `first` on, as an array that refers to them.
msgpack::object rest_of(const msgpack::object& array, std::uint32_t first) noexcept {
  msgpack::object rest;
  rest.type = msgpack::type::ARRAY;
  rest.via.array.size = array.via.array.size - first;
  rest.via.array.ptr = array.via.array.ptr + first;
  return rest;
}

// A spawn's `[snapshot_every, key]`: both positive, `every` a 32-bit count.
bool snapshot_plan_ok(const msgpack::object& o) noexcept {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) return false;
  const auto& every = o.via.array.ptr[0];
  const auto& key = o.via.array.ptr[1];
  return every.type == msgpack::type::POSITIVE_INTEGER && every.via.u64 != 0 && every.via.u64 <= 0xffffffffu &&
         key.type == msgpack::type::POSITIVE_INTEGER && key.via.u64 != 0;
}

}  // namespace

std::optional<actor_call> read_actor_call(const msgpack::object& params) noexcept {
  if (params.type != msgpack::type::ARRAY || params.via.array.size < 2) return std::nullopt;
  actor_call c{u64_at(params, 0), u64_at(params, 1), rest_of(params, 2)};
  if (c.actor == 0 || c.caller == 0) return std::nullopt;
  return c;
}

std::optional<actor_spawn> read_actor_spawn(const msgpack::object& params) noexcept {
  if (params.type != msgpack::type::ARRAY) return std::nullopt;
  const std::uint32_t n = params.via.array.size;
  if (n != 3 && !(n == 4 && snapshot_plan_ok(params.via.array.ptr[3]))) return std::nullopt;
  const auto& name = params.via.array.ptr[1];
  const auto& arguments = params.via.array.ptr[2];
  if (u64_at(params, 0) == 0 || name.type != msgpack::type::STR || arguments.type != msgpack::type::ARRAY) return std::nullopt;
  actor_spawn s{u64_at(params, 0), {name.via.str.ptr, name.via.str.size}, arguments};
  if (n == 4) {
    s.snapshot_every = static_cast<std::uint32_t>(params.via.array.ptr[3].via.array.ptr[0].via.u64);
    s.snapshot_key = params.via.array.ptr[3].via.array.ptr[1].via.u64;
  }
  return s;
}

std::optional<result_as_ref> read_result_as_ref(const msgpack::object& params, std::int8_t ext_type) noexcept {
  if (params.type != msgpack::type::ARRAY || params.via.array.size == 0) return std::nullopt;
  const auto& first = params.via.array.ptr[0];
  if (first.type != msgpack::type::EXT || first.via.ext.type() != ext_type) return std::nullopt;
  result_as_ref r{0, rest_of(params, 1)};
  const auto& marker = first.via.ext;
  for (std::uint32_t i = 0; marker.size == 8 && i < 8; ++i) r.owner = r.owner << 8 | static_cast<unsigned char>(marker.data()[i]);
  return r;
}

}  // namespace framex::protocol
