#include "message.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "framex/detail/pool.hpp"

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

void prepend_notification_header(message_buffer& body, std::string_view method) {
  small_buffer head;
  msgpack::packer<small_buffer> p(head);
  p.pack_array(3);
  p.pack_uint8(notification);
  p.pack_str(static_cast<std::uint32_t>(method.size()));
  body.prepend(method.data(), method.size());
  body.prepend(head.bytes.data(), head.size);
}

incoming_shape parse_incoming(const msgpack::object& m, incoming_request& r) {
  if (m.type != msgpack::type::ARRAY || m.via.array.size < 3 || m.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    return incoming_shape::not_request;
  }
  const msgpack::object* f = m.via.array.ptr;
  if (f[0].via.u64 == request && m.via.array.size == 4) {
    if (f[1].type != msgpack::type::POSITIVE_INTEGER || f[1].via.u64 > UINT32_MAX) return incoming_shape::not_request;
    r.msgid = static_cast<std::uint32_t>(f[1].via.u64);
    if (f[2].type != msgpack::type::STR) return incoming_shape::method_not_string;
    r.method = std::string_view(f[2].via.str.ptr, f[2].via.str.size);
    r.params = &f[3];
    return incoming_shape::ok;
  }
  if (f[0].via.u64 == notification && m.via.array.size == 3 && f[1].type == msgpack::type::STR) {
    r.notification = true;
    r.method = std::string_view(f[1].via.str.ptr, f[1].via.str.size);
    r.params = &f[2];
    return incoming_shape::ok;
  }
  return incoming_shape::not_request;
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
  promised_ = 0;
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
    // Every object counts, and so does every one a container's header
    // promises: a header declaring more than the limit is refused as it
    // arrives, not after the elements it promised fail to.
    ++elements_;
    if (depth_ > 0) --promised_;
    promised_ += children;
    if (elements_ + promised_ > limits_.max_elements) too_large("the message has too many elements");
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

// A read buffer: its header, then its bytes.
struct reader::buffer {
  std::atomic<int> refs{1};
  std::size_t capacity = 0;
  char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }

  static buffer* make(std::size_t capacity) {
    void* p = detail::pool_allocate(sizeof(buffer) + capacity);
    auto* b = new (p) buffer;
    b->capacity = detail::pool_block_size(sizeof(buffer) + capacity) - sizeof(buffer);
    return b;
  }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    const std::size_t size = sizeof(buffer) + capacity;
    this->~buffer();
    detail::pool_free(this, size);
  }
};

}  // namespace framex::net

namespace framex::detail {

// A zone for one message's objects and, if they refer into it, its read
// buffer. Zones are kept for reuse (cleared, they keep their first chunk), up
// to a bound.
struct message_storage {
  msgpack::zone zone{4096};
  net::reader::buffer* refers_to = nullptr;
  message_storage* next = nullptr;
};

namespace {

struct storage_reserve {
  std::mutex mutex;
  message_storage* head = nullptr;
  std::size_t count = 0;
  static constexpr std::size_t max = 256;
};

storage_reserve& reserve() {
  static auto* r = new storage_reserve;  // never destroyed: messages may outlive static destruction
  return *r;
}

message_storage* acquire_message_storage() {
  auto& r = reserve();
  {
    std::lock_guard lock(r.mutex);
    if (r.head != nullptr) {
      message_storage* s = r.head;
      r.head = s->next;
      --r.count;
      return s;
    }
  }
  return new message_storage;
}

}  // namespace

void release_message_storage(message_storage* s) noexcept {
  if (s == nullptr) return;
  if (s->refers_to != nullptr) {
    s->refers_to->release();
    s->refers_to = nullptr;
  }
  s->zone.clear();
  auto& r = reserve();
  {
    std::lock_guard lock(r.mutex);
    if (r.count < storage_reserve::max) {
      s->next = r.head;
      r.head = s;
      ++r.count;
      return;
    }
  }
  delete s;
}

}  // namespace framex::detail

namespace framex::net {

namespace {
// A new read buffer's size: 64 KiB with its header, the pool's largest block.
constexpr std::size_t buffer_size = detail::pooled_max - sizeof(reader::buffer);
}  // namespace

// msgpack-c's decoder, kept from message to message: `msgpack::unpack` would
// make (and allocate) a new one for each. It is msgpack-c's own, from its
// `detail` namespace, used as `msgpack::unpack` uses it (msgpack-c is pinned).
struct reader::decoder {
  explicit decoder(const read_limits& l) : context(&refer_to_large, nullptr, limits_for(l)) {}
  msgpack::v1::detail::context context;
};

reader::reader(const read_limits& limits)
    : limits_(limits), scanner_(limits), decoder_(std::make_unique<decoder>(limits)) {}

reader::~reader() {
  if (buffer_ != nullptr) buffer_->release();
}

char* reader::prepare(std::size_t n) {
  // While a large message is arriving, read it in large pieces.
  const std::size_t pending = used_ - parsed_;
  n = std::max(n, std::min<std::size_t>(2 * pending, std::size_t{8} << 20));
  if (buffer_ != nullptr && buffer_->capacity - used_ >= n) return buffer_->bytes() + used_;
  if (buffer_ != nullptr && buffer_->refs.load(std::memory_order_acquire) == 1 && buffer_->capacity >= pending + n) {
    // No message refers into it: what is still to be parsed moves to its start.
    std::memmove(buffer_->bytes(), buffer_->bytes() + parsed_, pending);
  } else {
    buffer* bigger = buffer::make(std::max(buffer_size, pending + n));
    if (buffer_ != nullptr) {
      std::memcpy(bigger->bytes(), buffer_->bytes() + parsed_, pending);
      buffer_->release();
    }
    buffer_ = bigger;
  }
  parsed_ = 0;
  used_ = pending;
  return buffer_->bytes() + used_;
}

std::size_t reader::capacity() const noexcept { return buffer_ == nullptr ? 0 : buffer_->capacity - used_; }

void reader::commit(std::size_t n) noexcept { used_ += n; }

bool reader::next(received_message& out) {
  if (buffer_ == nullptr) return false;
  const char* at = buffer_->bytes() + parsed_;
  const std::size_t length = scanner_.scan(at, used_ - parsed_);
  if (length == 0) return false;
  last_cost_ = length + scanner_.elements() * decoded_object_bytes;
  scanner_.reset();
  struct give_back_on_failure {
    detail::message_storage* storage;
    ~give_back_on_failure() { detail::release_message_storage(storage); }
  } guard{detail::acquire_message_storage()};
  detail::message_storage* storage = guard.storage;
  auto& ctx = decoder_->context;
  ctx.init();
  ctx.user().set_zone(storage->zone);
  ctx.user().set_referenced(false);
  std::size_t off = 0;
  int done = 0;
  try {
    done = ctx.execute(at, length, off);
  } catch (const msgpack::unpack_error& e) {
    throw std::system_error(std::make_error_code(std::errc::protocol_error), e.what());
  }
  // The scanner saw a whole object where msgpack-c did not: they disagree.
  if (done <= 0 || off != length) throw std::system_error(std::make_error_code(std::errc::protocol_error), "msgpack framing");
  const msgpack::object root = ctx.data();
  if (ctx.user().referenced()) {
    buffer_->refs.fetch_add(1, std::memory_order_relaxed);
    storage->refers_to = buffer_;
  }
  parsed_ += length;
  guard.storage = nullptr;
  out = received_message(root, storage);
  return true;
}

}  // namespace framex::net
