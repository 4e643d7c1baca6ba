// The connect sequence's messages: `framex.challenge` and `framex.hello`,
// written and read here for both sides (see protocol.hpp for the exchange and
// src/security/auth.hpp for what the nonces and proofs are).
//
// Readers take a message as it arrived and return views into it (valid while
// the message lives), or nothing when its shape is wrong; they never throw.
// Fields a side does not know are ignored, so either side may add one.
#pragma once

#include <msgpack.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "framex/detail/message_buffer.hpp"

namespace framex::protocol {

/// A nonce of the challenge: 32 random bytes.
using nonce_bytes = std::array<unsigned char, 32>;

/// The value under `key` in a msgpack map, or null (also when `map` is no map).
[[nodiscard]] const msgpack::object* field(const msgpack::object& map, std::string_view key) noexcept;

// framex.challenge [caller_nonce] → {"nonce": worker_nonce}

/// The challenge's parameters.
void pack_challenge(detail::message_buffer& out, const nonce_bytes& caller_nonce);
/// The caller's nonce from a challenge's parameters; nothing when malformed.
[[nodiscard]] std::optional<nonce_bytes> read_challenge(const msgpack::object& params) noexcept;
/// The challenge's answer.
void pack_challenge_answer(detail::message_buffer& out, const nonce_bytes& worker_nonce);
/// The worker's nonce from a challenge's answer; nothing when malformed.
[[nodiscard]] std::optional<nonce_bytes> read_challenge_answer(const msgpack::object& result) noexcept;

/// framex.hello's parameters: [version, {name: signature}, max_message_size, {"proof"?, "caller"}].
struct hello_request {
  std::uint64_t version = 0;
  std::vector<std::pair<std::string_view, std::string_view>> functions;  // name, signature
  std::uint64_t max_message_size = 0;
  std::string_view proof;    // empty: none (a caller without a token)
  std::uint64_t caller = 0;  // who holds actors (src/worker/actor_table.hpp); 0: not said
};
void pack(detail::message_buffer& out, const hello_request& hello);
/// What a worker reads of a hello: the proof and the caller, each where it
/// has the right type (a hello that is no array of four reads as empty).
[[nodiscard]] hello_request read_hello_request(const msgpack::object& params) noexcept;

/// framex.hello's answer: {"protocol", "functions", "max_message_size",
/// "max_message_elements", "max_held_bytes", "resources", "proof"?}.
struct hello_answer {
  std::uint64_t version = 0;
  std::vector<std::pair<std::string_view, std::string_view>> functions;  // name, signature
  std::uint64_t max_message_size = 0;
  std::uint64_t max_message_elements = 0;  // objects in a message
  std::uint64_t max_held_bytes = 0;        // what the requests held may take, decoded (0: no limit)
  std::map<std::string, double> resources;
  std::string_view proof;  // empty: none
};
void pack(detail::message_buffer& out, const hello_answer& answer);

/// What a caller reads of a hello's answer. A field that is absent keeps its
/// default; `version_ok` is false only when a "protocol" field names another
/// version. Nothing when the answer is no map.
struct read_answer {
  bool version_ok = true;
  std::optional<std::uint64_t> max_message_size;
  std::optional<std::uint64_t> max_message_elements;
  std::optional<std::uint64_t> max_held_bytes;
  std::unordered_map<std::string, std::string> functions;
  std::map<std::string, double> resources;
  std::optional<std::string_view> proof;  // present and binary
};
[[nodiscard]] std::optional<read_answer> read_hello_answer(const msgpack::object& result);

}  // namespace framex::protocol
