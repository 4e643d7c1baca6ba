// msgpack-RPC framing: the headers of the three message kinds, written in front
// of a body packed elsewhere, and a reader that cuts a byte stream into
// messages under limits on their size, nesting and element count.
//
//   Request      [0, msgid, method, params]
//   Response     [1, msgid, error, result]
//   Notification [2, method, params]
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <msgpack.hpp>

#include "framex/detail/message_buffer.hpp"
#include "framex/detail/received_message.hpp"
#include "framex/error.hpp"

namespace framex::net {

using detail::message_buffer;
using detail::received_message;

enum message_kind : std::uint8_t { request = 0, response = 1, notification = 2 };

/// Writes `[0, msgid, method,` in front of a params array packed after enough room.
void prepend_request_header(message_buffer& body, std::uint32_t msgid, std::string_view method);

/// Writes `[1, msgid, nil,` in front of a result packed after 16 bytes of room.
void prepend_response_header(message_buffer& body, std::uint32_t msgid);

/// `[1, msgid, {code, type, message}, nil]`.
message_buffer error_response(std::uint32_t msgid, int code, std::string_view type, std::string_view message);

/// `[2, method, [argument]]`.
message_buffer notification_message(std::string_view method, std::uint64_t argument);

/// `[2, method, params]`: `body` holds a params array packed after enough
/// room (as for a request).
void prepend_notification_header(message_buffer& body, std::string_view method);

/// A request or notification as received; `method` and `params` point into
/// `message`.
struct incoming_request {
  /// A notification (`[2, method, params]`): it wants no response.
  bool notification = false;
  std::uint32_t msgid = 0;
  std::string_view method;
  const msgpack::object* params = nullptr;
  received_message message;
  /// About what the request holds in memory (bytes and decoded objects).
  std::size_t cost = 0;
};

/// What `parse_incoming` found.
enum class incoming_shape : std::uint8_t { ok, not_request, method_not_string };

/// Fills `r` from a request or a notification `m` (whose storage the caller
/// then moves into `r.message`). `not_request`: another shape (a response, or
/// malformed); `method_not_string`: a request whose method is no string
/// (`r.msgid` is set, so it can be answered).
incoming_shape parse_incoming(const msgpack::object& m, incoming_request& r);

/// What one message may make the reader hold.
/// What one object of a message takes once decoded, beyond its bytes: a
/// msgpack::object in the message's zone (a map's key and value are one each).
inline constexpr std::size_t decoded_object_bytes = sizeof(msgpack::object);

struct read_limits {
  std::size_t max_bytes = std::size_t{64} << 20;
  /// Objects in one message, containers and their elements alike.
  std::size_t max_elements = std::size_t{1} << 22;
  std::size_t max_depth = 64;
};

/// Finds where one msgpack object ends without building it, resuming where it
/// stopped as more bytes arrive. A header that declares a million elements costs
/// nothing until the bytes of those elements are there, so a message is built
/// (and its elements allocated) only once it has fully arrived and fits the
/// limits.
class frame_scanner {
 public:
  explicit frame_scanner(const read_limits& limits) noexcept : limits_(limits) {}

  /// Scans `bytes` (the message's bytes so far, from its start; it may have
  /// grown since the last call). Returns the message's length once it is
  /// complete, else 0. Throws `std::system_error`: `errc::too_large` past a
  /// limit, `std::errc::protocol_error` for a byte msgpack never uses.
  std::size_t scan(const char* bytes, std::size_t size);
  /// Objects in the message scanned so far.
  [[nodiscard]] std::size_t elements() const noexcept { return elements_; }
  /// Bytes of the message scanned so far.
  [[nodiscard]] std::size_t scanned() const noexcept { return offset_; }
  /// Ready for the next message.
  void reset() noexcept;

 private:
  read_limits limits_;
  std::size_t offset_ = 0;
  std::size_t elements_ = 0;
  std::uint64_t promised_ = 0;  // objects declared by open containers' headers, not yet begun
  std::size_t depth_ = 0;
  std::uint64_t remaining_[65] = {};  // items still to come in each open container
};

/// Cuts a byte stream into msgpack objects under `read_limits`. Bytes are
/// read into a buffer that is reused once every message in it is decoded;
/// a message whose large strings or binaries refer into it keeps it, and
/// reading goes on in a new one.
class reader {
 public:
  explicit reader(const read_limits& limits);
  ~reader();
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  /// Room for at least `n` more bytes; fill it and `commit` what was read.
  [[nodiscard]] char* prepare(std::size_t n);
  [[nodiscard]] std::size_t capacity() const noexcept;
  void commit(std::size_t n) noexcept;

  /// Takes the next complete message, if any. Throws `std::system_error`
  /// (`errc::too_large`, `std::errc::protocol_error`) on bad input.
  bool next(received_message& out);

  /// What the last message taken holds in memory, about: its bytes and its
  /// decoded objects.
  [[nodiscard]] std::size_t last_cost() const noexcept { return last_cost_; }
  /// Bytes received of a message not yet complete (after `next` returned false).
  [[nodiscard]] std::size_t partial() const noexcept { return used_ - parsed_; }

  struct buffer;  // reference counted: the reader's, and each message's that refers into it

 private:
  read_limits limits_;
  frame_scanner scanner_;
  struct decoder;
  std::unique_ptr<decoder> decoder_;
  buffer* buffer_ = nullptr;
  std::size_t parsed_ = 0;  // bytes of buffer_ handed on as messages
  std::size_t used_ = 0;    // bytes of buffer_ filled
  std::size_t last_cost_ = 0;
};

}  // namespace framex::net
