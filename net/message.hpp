// msgpack-RPC framing: the headers of the three message kinds, written in front
// of a body packed elsewhere, and a reader that cuts a byte stream into
// messages under a size limit.
//
//   Request      [0, msgid, method, params]
//   Response     [1, msgid, error, result]
//   Notification [2, method, params]
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "framex/detail/wire.hpp"

namespace framex::net {

using detail::message_buffer;

enum message_kind : std::uint8_t { request = 0, response = 1, notification = 2 };

/// Writes `[0, msgid, method,` in front of a params array packed after enough room.
void prepend_request_header(message_buffer& body, std::uint32_t msgid, std::string_view method);

/// Writes `[1, msgid, nil,` in front of a result packed after 16 bytes of room.
void prepend_response_header(message_buffer& body, std::uint32_t msgid);

/// `[1, msgid, {code, type, message}, nil]`.
message_buffer error_response(std::uint32_t msgid, int code, std::string_view type, std::string_view message);

/// `[2, method, [argument]]`.
message_buffer notification_message(std::string_view method, std::uint64_t argument);

/// Cuts a byte stream into msgpack objects. A message whose bytes exceed
/// `max_message` (or that nests deeper than 64) makes `next` throw.
class reader {
 public:
  explicit reader(std::size_t max_message);

  /// Room for at least `n` more bytes; fill it and `commit` what was read.
  [[nodiscard]] char* prepare(std::size_t n);
  [[nodiscard]] std::size_t capacity() const noexcept;
  void commit(std::size_t n) noexcept;

  /// Takes the next complete message, if any. Throws `std::system_error`
  /// (`errc::too_large`) or msgpack's parse errors on bad input.
  bool next(msgpack::object_handle& out);

 private:
  std::size_t max_message_;
  msgpack::unpacker unpacker_;
};

}  // namespace framex::net
