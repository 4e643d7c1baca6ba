#include "message.hpp"

#include <algorithm>
#include <array>
#include <system_error>

namespace framex::net {
namespace {

// Packs into a small stack buffer, to be prepended.
struct small_buffer {
  std::array<char, 32> bytes{};
  std::size_t size = 0;
  void write(const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) bytes[size++] = p[i];
  }
};

}  // namespace

void prepend_request_header(message_buffer& body, std::uint32_t msgid, std::string_view method) {
  small_buffer head;
  msgpack::packer<small_buffer> p(head);
  p.pack_array(4);
  p.pack_uint8(request);
  p.pack(msgid);
  p.pack_str(static_cast<std::uint32_t>(method.size()));
  body.prepend(method.data(), method.size());
  body.prepend(head.bytes.data(), head.size);
}

void prepend_response_header(message_buffer& body, std::uint32_t msgid) {
  small_buffer head;
  msgpack::packer<small_buffer> p(head);
  p.pack_array(4);
  p.pack_uint8(response);
  p.pack(msgid);
  p.pack_nil();
  body.prepend(head.bytes.data(), head.size);
}

message_buffer error_response(std::uint32_t msgid, int code, std::string_view type, std::string_view message) {
  message_buffer out;
  msgpack::packer<message_buffer> p(out);
  p.pack_array(4);
  p.pack_uint8(response);
  p.pack(msgid);
  p.pack_map(3);
  p.pack(std::string_view("code"));
  p.pack(code);
  p.pack(std::string_view("type"));
  p.pack(type);
  p.pack(std::string_view("message"));
  p.pack(message);
  p.pack_nil();
  return out;
}

message_buffer notification_message(std::string_view method, std::uint64_t argument) {
  message_buffer out;
  msgpack::packer<message_buffer> p(out);
  p.pack_array(3);
  p.pack_uint8(notification);
  p.pack(method);
  p.pack_array(1);
  p.pack(argument);
  return out;
}

namespace {
msgpack::unpack_limit limits_for(std::size_t max_message) {
  // Every element takes at least one byte, so no count can exceed the message
  // size; the depth bound keeps the recursive decoders' stacks small.
  const std::size_t n = max_message;
  return msgpack::unpack_limit(n, n, n, n, n, 64);
}
}  // namespace

namespace {
// Large strings and binaries are referred to in the read buffer (which the
// message then keeps alive) instead of copied into the message's zone.
bool refer_to_large(msgpack::type::object_type type, std::size_t size, void*) {
  return (type == msgpack::type::STR || type == msgpack::type::BIN) && size >= 4096;
}
}  // namespace

reader::reader(std::size_t max_message)
    : max_message_(max_message), unpacker_(&refer_to_large, nullptr, 64 * 1024, limits_for(max_message)) {}

char* reader::prepare(std::size_t n) {
  // While a large message is arriving, read it in large pieces.
  const std::size_t pending = unpacker_.message_size();
  unpacker_.reserve_buffer(std::max(n, std::min<std::size_t>(2 * pending, std::size_t{8} << 20)));
  return unpacker_.buffer();
}

std::size_t reader::capacity() const noexcept { return const_cast<msgpack::unpacker&>(unpacker_).buffer_capacity(); }

void reader::commit(std::size_t n) noexcept { unpacker_.buffer_consumed(n); }

bool reader::next(msgpack::object_handle& out) {
  if (unpacker_.next(out)) return true;
  // Incomplete: everything buffered belongs to the message being received.
  if (unpacker_.message_size() > max_message_) throw std::system_error(make_error_code(errc::too_large));
  return false;
}

}  // namespace framex::net
