#include "message.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
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

msgpack::unpack_limit limits_for(const read_limits& l) {
  // The scanner enforces these before msgpack-c sees a byte; these are a second
  // line behind it.
  const std::size_t n = std::min(l.max_elements, l.max_bytes);
  return msgpack::unpack_limit(n, n, l.max_bytes, l.max_bytes, l.max_bytes, l.max_depth);
}

// Large strings and binaries are referred to in the read buffer (which the
// message then keeps alive) instead of copied into the message's zone.
bool refer_to_large(msgpack::type::object_type type, std::size_t size, void*) {
  return (type == msgpack::type::STR || type == msgpack::type::BIN) && size >= 4096;
}

std::uint64_t big_endian(const char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

[[noreturn]] void too_large(const char* what) { throw std::system_error(make_error_code(errc::too_large), what); }

}  // namespace

void frame_scanner::reset() noexcept {
  offset_ = 0;
  elements_ = 0;
  depth_ = 0;
}

std::size_t frame_scanner::scan(const char* bytes, std::size_t size) {
  while (offset_ < size) {
    const auto b = static_cast<unsigned char>(bytes[offset_]);
    std::size_t head = 1;        // bytes of the header, type byte included
    std::size_t length = 0;      // bytes of a length field inside the header
    std::uint64_t body = 0;      // bytes after the header
    std::uint64_t children = 0;  // objects after the header (containers)
    bool sized_body = false;     // body = the length field (str, bin, ext)
    bool counted = false;        // children = the length field (array)
    bool paired = false;         // children = 2 × the length field (map)
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      // fixint, nil, bool: the byte is the object
    } else if (b <= 0x8f) {
      children = 2 * std::uint64_t{b & 0x0fu};
    } else if (b <= 0x9f) {
      children = b & 0x0fu;
    } else if (b <= 0xbf) {
      body = b & 0x1fu;
    } else {
      switch (b) {
        case 0xc4: case 0xc5: case 0xc6: length = std::size_t{1} << (b - 0xc4); sized_body = true; break;  // bin
        case 0xc7: case 0xc8: case 0xc9: length = std::size_t{1} << (b - 0xc7); sized_body = true; head = 1; body = 1; break;  // ext: + type byte
        case 0xca: body = 4; break;
        case 0xcb: body = 8; break;
        case 0xcc: case 0xd0: body = 1; break;
        case 0xcd: case 0xd1: body = 2; break;
        case 0xce: case 0xd2: body = 4; break;
        case 0xcf: case 0xd3: body = 8; break;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: body = 1 + (std::uint64_t{1} << (b - 0xd4)); break;  // fixext
        case 0xd9: case 0xda: case 0xdb: length = std::size_t{1} << (b - 0xd9); sized_body = true; break;  // str
        case 0xdc: case 0xdd: length = b == 0xdc ? 2 : 4; counted = true; break;
        case 0xde: case 0xdf: length = b == 0xde ? 2 : 4; paired = true; break;
        default: throw std::system_error(std::make_error_code(std::errc::protocol_error), "not msgpack (0xc1)");
      }
    }
    head += length;
    if (size - offset_ < head) return 0;  // the header is still arriving
    const std::uint64_t n = big_endian(bytes + offset_ + 1, length);
    if (sized_body) body += n;
    if (counted) children = n;
    if (paired) children = 2 * n;
    if (offset_ + head + body > limits_.max_bytes) too_large("the message exceeds the size limit");
    if (offset_ + head + body > size) return 0;  // the body is still arriving
    offset_ += head + body;
    if (++elements_ > limits_.max_elements) too_large("the message has too many elements");
    if (children != 0) {
      if (depth_ == limits_.max_depth) too_large("the message nests too deep");
      remaining_[depth_++] = children;
      continue;
    }
    // One object is complete; so is every container it completes.
    for (;;) {
      if (depth_ == 0) return offset_;
      if (--remaining_[depth_ - 1] != 0) break;
      --depth_;
    }
  }
  return 0;
}

reader::reader(const read_limits& limits)
    : limits_(limits), scanner_(limits), unpacker_(&refer_to_large, nullptr, 64 * 1024, limits_for(limits)) {}

char* reader::prepare(std::size_t n) {
  // While a large message is arriving, read it in large pieces.
  const std::size_t pending = unpacker_.nonparsed_size();
  unpacker_.reserve_buffer(std::max(n, std::min<std::size_t>(2 * pending, std::size_t{8} << 20)));
  return unpacker_.buffer();
}

std::size_t reader::capacity() const noexcept { return const_cast<msgpack::unpacker&>(unpacker_).buffer_capacity(); }

void reader::commit(std::size_t n) noexcept { unpacker_.buffer_consumed(n); }

bool reader::next(msgpack::object_handle& out) {
  const std::size_t length = scanner_.scan(unpacker_.nonparsed_buffer(), unpacker_.nonparsed_size());
  if (length == 0) return false;
  last_cost_ = length + scanner_.elements() * sizeof(msgpack::object_kv);
  scanner_.reset();
  try {
    if (unpacker_.next(out)) return true;
  } catch (const msgpack::unpack_error& e) {
    throw std::system_error(std::make_error_code(std::errc::protocol_error), e.what());
  }
  // The scanner saw a whole object where msgpack-c did not: they disagree.
  throw std::system_error(std::make_error_code(std::errc::protocol_error), "msgpack framing");
}

}  // namespace framex::net
