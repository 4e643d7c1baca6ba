#include "protocol/hello.hpp"

#include <cstring>

#include "protocol/protocol.hpp"

namespace framex::protocol {

namespace {

using packer = msgpack::packer<detail::message_buffer>;

std::string_view text(const msgpack::object& o) noexcept { return {o.via.str.ptr, o.via.str.size}; }

void pack_bin(packer& p, const void* data, std::size_t size) {
  p.pack_bin(static_cast<std::uint32_t>(size));
  p.pack_bin_body(static_cast<const char*>(data), static_cast<std::uint32_t>(size));
}

void pack_functions(packer& p, const std::vector<std::pair<std::string_view, std::string_view>>& functions) {
  p.pack_map(static_cast<std::uint32_t>(functions.size()));
  for (const auto& [name, signature] : functions) {
    p.pack(name);
    p.pack(signature);
  }
}

std::optional<nonce_bytes> nonce_of(const msgpack::object* o) noexcept {
  nonce_bytes n;
  if (o == nullptr || o->type != msgpack::type::BIN || o->via.bin.size != n.size()) return std::nullopt;
  std::memcpy(n.data(), o->via.bin.ptr, n.size());
  return n;
}

}  // namespace

const msgpack::object* field(const msgpack::object& map, std::string_view key) noexcept {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && text(kv.key) == key) return &kv.val;
  }
  return nullptr;
}

void pack_challenge(detail::message_buffer& out, const nonce_bytes& caller_nonce) {
  packer p(out);
  p.pack_array(1);
  pack_bin(p, caller_nonce.data(), caller_nonce.size());
}

std::optional<nonce_bytes> read_challenge(const msgpack::object& params) noexcept {
  if (params.type != msgpack::type::ARRAY || params.via.array.size != 1) return std::nullopt;
  return nonce_of(&params.via.array.ptr[0]);
}

void pack_challenge_answer(detail::message_buffer& out, const nonce_bytes& worker_nonce) {
  packer p(out);
  p.pack_map(1);
  p.pack(std::string_view("nonce"));
  pack_bin(p, worker_nonce.data(), worker_nonce.size());
}

std::optional<nonce_bytes> read_challenge_answer(const msgpack::object& result) noexcept {
  return nonce_of(field(result, "nonce"));
}

void pack(detail::message_buffer& out, const hello_request& hello) {
  packer p(out);
  p.pack_array(4);
  p.pack(hello.version);
  pack_functions(p, hello.functions);
  p.pack(hello.max_message_size);
  p.pack_map(hello.proof.empty() ? 1 : 2);
  if (!hello.proof.empty()) {
    p.pack(std::string_view("proof"));
    pack_bin(p, hello.proof.data(), hello.proof.size());
  }
  p.pack(std::string_view("caller"));
  p.pack(hello.caller);
}

hello_request read_hello_request(const msgpack::object& params) noexcept {
  hello_request r;
  if (params.type != msgpack::type::ARRAY || params.via.array.size < 4) return r;
  const msgpack::object& extra = params.via.array.ptr[3];
  if (const auto* v = field(extra, "caller"); v != nullptr && v->type == msgpack::type::POSITIVE_INTEGER) r.caller = v->via.u64;
  if (const auto* v = field(extra, "proof"); v != nullptr && v->type == msgpack::type::BIN)
    r.proof = {v->via.bin.ptr, v->via.bin.size};
  return r;
}

void pack(detail::message_buffer& out, const hello_answer& answer) {
  packer p(out);
  p.pack_map(answer.proof.empty() ? 6 : 7);
  p.pack(std::string_view("protocol"));
  p.pack(answer.version);
  p.pack(std::string_view("functions"));
  pack_functions(p, answer.functions);
  p.pack(std::string_view("max_message_size"));
  p.pack(answer.max_message_size);
  p.pack(std::string_view("max_message_elements"));
  p.pack(answer.max_message_elements);
  p.pack(std::string_view("max_held_bytes"));
  p.pack(answer.max_held_bytes);
  p.pack(std::string_view("resources"));
  p.pack_map(static_cast<std::uint32_t>(answer.resources.size()));
  for (const auto& [name, amount] : answer.resources) {
    p.pack(name);
    p.pack(amount);
  }
  if (!answer.proof.empty()) {
    p.pack(std::string_view("proof"));
    pack_bin(p, answer.proof.data(), answer.proof.size());
  }
}

std::optional<read_answer> read_hello_answer(const msgpack::object& r) {
  if (r.type != msgpack::type::MAP) return std::nullopt;
  read_answer a;
  if (const auto* v = field(r, "protocol"); v != nullptr)
    a.version_ok = v->type == msgpack::type::POSITIVE_INTEGER && v->via.u64 == version;
  if (const auto* v = field(r, "max_message_size"); v != nullptr && v->type == msgpack::type::POSITIVE_INTEGER)
    a.max_message_size = v->via.u64;
  if (const auto* v = field(r, "max_message_elements"); v != nullptr && v->type == msgpack::type::POSITIVE_INTEGER)
    a.max_message_elements = v->via.u64;
  if (const auto* v = field(r, "max_held_bytes"); v != nullptr && v->type == msgpack::type::POSITIVE_INTEGER)
    a.max_held_bytes = v->via.u64;
  if (const auto* v = field(r, "proof"); v != nullptr && v->type == msgpack::type::BIN)
    a.proof = std::string_view(v->via.bin.ptr, v->via.bin.size);
  if (const auto* v = field(r, "functions"); v != nullptr && v->type == msgpack::type::MAP) {
    for (std::uint32_t j = 0; j < v->via.map.size; ++j) {
      const auto& f = v->via.map.ptr[j];
      if (f.key.type == msgpack::type::STR && f.val.type == msgpack::type::STR) a.functions.emplace(text(f.key), text(f.val));
    }
  }
  if (const auto* v = field(r, "resources"); v != nullptr && v->type == msgpack::type::MAP) {
    for (std::uint32_t j = 0; j < v->via.map.size; ++j) {
      const auto& kv = v->via.map.ptr[j];
      if (kv.key.type != msgpack::type::STR) continue;
      double amount = 0;
      if (kv.val.type == msgpack::type::FLOAT64 || kv.val.type == msgpack::type::FLOAT32) amount = kv.val.via.f64;
      if (kv.val.type == msgpack::type::POSITIVE_INTEGER) amount = static_cast<double>(kv.val.via.u64);
      a.resources.emplace(text(kv.key), amount);
    }
  }
  return a;
}

}  // namespace framex::protocol
