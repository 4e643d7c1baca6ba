// The wire layer's memory: the reader that cuts a byte stream into messages in
// reused buffers and zones, and the pool that calls' buffers come from.
#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "framex/error.hpp"
#include "net/message.hpp"
#include "framex/detail/message_buffer.hpp"
#include "framex/detail/pool.hpp"

namespace {

using framex::net::read_limits;
using framex::net::reader;
using framex::net::received_message;

// [i, "<text>"] packed.
std::string packed(int i, const std::string& text) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> p(b);
  p.pack_array(2);
  p.pack(i);
  p.pack(text);
  return {b.data(), b.size()};
}

// Feeds `stream` to `r` in pieces of `piece` bytes, taking every message as it completes.
std::vector<received_message> read_all(reader& r, const std::string& stream, std::size_t piece) {
  std::vector<received_message> out;
  for (std::size_t at = 0; at < stream.size();) {
    const std::size_t n = std::min(piece, stream.size() - at);
    char* room = r.prepare(16 * 1024);
    EXPECT_GE(r.capacity(), n);
    std::memcpy(room, stream.data() + at, n);
    r.commit(n);
    at += n;
    received_message m;
    while (r.next(m)) out.push_back(std::move(m));
  }
  return out;
}

void expect_message(const received_message& m, int i, const std::string& text) {
  const msgpack::object& o = m.get();
  ASSERT_EQ(o.type, msgpack::type::ARRAY);
  ASSERT_EQ(o.via.array.size, 2u);
  EXPECT_EQ(o.via.array.ptr[0].as<int>(), i);
  EXPECT_EQ(o.via.array.ptr[1].as<std::string>(), text);
}

TEST(Reader, MessagesCutAtAnyByteComeOutWholeAndInOrder) {
  std::string stream;
  for (int i = 0; i < 300; ++i) stream += packed(i, std::string(static_cast<std::size_t>(i % 97), 'a' + i % 26));
  for (const std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, stream.size()}) {
    reader r(read_limits{});
    const auto messages = read_all(r, stream, piece);
    ASSERT_EQ(messages.size(), 300u) << "pieces of " << piece;
    for (int i = 0; i < 300; ++i) {
      expect_message(messages[static_cast<std::size_t>(i)], i, std::string(static_cast<std::size_t>(i % 97), 'a' + i % 26));
    }
    EXPECT_EQ(r.partial(), 0u);
  }
}

// A large string stays in the read buffer it arrived in: the message keeps
// that buffer, whatever the reader reads (and reuses) afterwards.
TEST(Reader, ALargeStringOutlivesTheReadsThatFollowIt) {
  const std::string big(200 * 1024, 'z');
  std::string stream = packed(1, big);
  for (int i = 2; i < 2000; ++i) stream += packed(i, "small " + std::to_string(i));
  reader r(read_limits{});
  std::vector<received_message> kept;
  {
    auto all = read_all(r, stream, 4096);
    ASSERT_EQ(all.size(), 1999u);
    kept.push_back(std::move(all.front()));  // the rest are given back here
  }
  // More traffic through the same reader, reusing its buffers and zones.
  const auto more = read_all(r, packed(7, std::string(5000, 'q')) + packed(8, "x"), 3);
  ASSERT_EQ(more.size(), 2u);
  expect_message(more[0], 7, std::string(5000, 'q'));
  expect_message(kept[0], 1, big);
}

TEST(Reader, AMessageMayOutliveItsReader) {
  received_message m;
  {
    reader r(read_limits{});
    auto all = read_all(r, packed(3, std::string(10000, 'k')), 512);
    ASSERT_EQ(all.size(), 1u);
    m = std::move(all.front());
  }
  expect_message(m, 3, std::string(10000, 'k'));
}

TEST(Reader, BadInputIsAnErrorAndLimitsHold) {
  {
    reader r(read_limits{});
    char* room = r.prepare(16);
    room[0] = static_cast<char>(0xc1);  // never used by msgpack
    r.commit(1);
    received_message m;
    EXPECT_THROW(r.next(m), std::system_error);
  }
  {
    read_limits limits;
    limits.max_bytes = 1000;
    reader r(limits);
    const std::string stream = packed(1, std::string(2000, 'x'));
    char* room = r.prepare(stream.size());
    std::memcpy(room, stream.data(), stream.size());
    r.commit(stream.size());
    received_message m;
    EXPECT_THROW(r.next(m), std::system_error);
  }
}

// A container header that declares more elements than the limit is refused as
// soon as the header is in, as a long string's is; and so are headers whose
// promises add up past it, however they nest. Within the limit, a message
// whose elements have not arrived yet waits for them.
// What a message is said to cost (admission counts it against
// worker.max_held_bytes) is what it takes: its bytes, and one msgpack::object
// per object in the zone; an array's elements are objects, a map's keys and
// values one each.
TEST(Reader, AMessageCostsItsBytesAndOneDecodedObjectPerObject) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> p(b);
  p.pack_array(2);
  p.pack(std::vector<int>(1000, 7));
  p.pack_map(10);
  for (int i = 0; i < 10; ++i) {
    p.pack(i);
    p.pack(i);
  }
  reader r(read_limits{});
  const auto messages = read_all(r, std::string(b.data(), b.size()), 4096);
  ASSERT_EQ(messages.size(), 1u);
  const std::size_t objects = 1 + 1 + 1000 + 1 + 20;
  EXPECT_EQ(r.last_cost(), b.size() + objects * sizeof(msgpack::object));
  EXPECT_EQ(framex::net::decoded_object_bytes, sizeof(msgpack::object));
}

TEST(Reader, ContainerHeadersPromisingTooManyElementsAreRefusedAtTheHeader) {
  read_limits limits;
  limits.max_elements = 1000;
  const auto outcome = [&](const std::string& bytes) -> std::string {
    reader r(limits);
    char* room = r.prepare(bytes.size());
    std::memcpy(room, bytes.data(), bytes.size());
    r.commit(bytes.size());
    received_message m;
    try {
      return r.next(m) ? "message" : "waiting";
    } catch (const std::system_error& e) {
      return e.code() == framex::errc::too_large ? "too_large" : e.what();
    }
  };
  using std::string_literals::operator""s;
  EXPECT_EQ(outcome("\x92\x01\xdd\x80\x00\x00\x00"s), "too_large");   // [1, array32 of 2^31
  EXPECT_EQ(outcome("\x92\x01\xdf\x00\x00\x02\x00"s), "too_large");   // [1, map32 of 512 pairs: 1,024 objects
  EXPECT_EQ(outcome("\x92\xdc\x01\xf4\xdc\x01\xf4"s), "too_large");   // [array16 of 500, [array16 of 500
  EXPECT_EQ(outcome("\x92\x01\xdc\x03\x00"s), "waiting");               // [1, array16 of 768: fits, still arriving
  EXPECT_EQ(outcome("\x92\x01\xdd\x00\x00\x00\x02\x01\x02"s), "message");
}

TEST(Pool, BlocksAreAtLeastWhatWasAskedAndCrossThreads) {
  using framex::detail::pool_allocate;
  using framex::detail::pool_block_size;
  using framex::detail::pool_free;
  for (const std::size_t n : {std::size_t{1}, std::size_t{64}, std::size_t{65}, std::size_t{5000}, framex::detail::pooled_max,
                              framex::detail::pooled_max + 1}) {
    EXPECT_GE(pool_block_size(n), n);
  }
  // Blocks made on one thread and given back on another, many more than the
  // caches hold, come and go intact.
  std::vector<void*> blocks;
  for (int i = 0; i < 5000; ++i) {
    const std::size_t n = 64u << (i % 8);
    auto* p = static_cast<unsigned char*>(pool_allocate(n));
    std::memset(p, i & 0xff, pool_block_size(n));
    blocks.push_back(p);
  }
  std::thread other([&] {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const std::size_t n = 64u << (i % 8);
      EXPECT_EQ(static_cast<unsigned char*>(blocks[i])[pool_block_size(n) - 1], i & 0xff);
      pool_free(blocks[i], n);
    }
  });
  other.join();
  for (int i = 0; i < 5000; ++i) pool_free(pool_allocate(128), 128);
}

TEST(MessageBuffer, GrowsMovesAndPrependsIntoItsRoom) {
  framex::detail::message_buffer b(8);
  const std::string body(100000, 'b');
  b.write(body.data(), body.size());
  b.prepend("head", 4);
  framex::detail::message_buffer moved = std::move(b);
  EXPECT_EQ(b.size(), 0u);  // NOLINT: a moved-from buffer is empty
  ASSERT_EQ(moved.size(), body.size() + 4);
  EXPECT_EQ(std::string(moved.data(), 4), "head");
  EXPECT_EQ(std::string(moved.data() + 4, body.size()), body);
  const auto copy = moved.clone();
  EXPECT_EQ(std::string(copy.data(), copy.size()), std::string(moved.data(), moved.size()));
  EXPECT_THROW(moved.prepend("more than the room", 18), std::length_error);
}

// A buffer that keeps a value refers to its large strings instead of copying
// them; its segments, flattened or cloned, are the bytes a copying buffer
// packs, and the header prepended later still goes first.
TEST(MessageBuffer, AKeepingBufferRefersToLargeStringsOfTheValueItHolds) {
  using framex::detail::message_buffer;
  using value = std::vector<std::string>;
  const auto make = [] {
    value v;
    for (int i = 0; i < 10; ++i) v.push_back(std::string(i % 2 == 0 ? message_buffer::refer_min + i : 10, char('a' + i)));
    return v;
  };
  message_buffer copied(8);
  msgpack::packer<message_buffer>(copied).pack(make());
  copied.prepend("head", 4);
  ASSERT_TRUE(copied.contiguous());
  const std::string expected(copied.data(), copied.size());

  message_buffer probe(8);
  probe.leave_out_large();
  msgpack::packer<message_buffer>(probe).pack(make());
  EXPECT_TRUE(probe.left_out());
  EXPECT_LT(probe.size(), message_buffer::refer_min);  // the large strings were not copied

  message_buffer kept(8);
  const value& v = kept.keep(make());
  msgpack::packer<message_buffer>(kept).pack(v);
  kept.prepend("head", 4);
  ASSERT_FALSE(kept.contiguous());
  EXPECT_EQ(kept.size(), expected.size());
  std::string gathered;
  std::size_t referred = 0;
  kept.for_each_segment([&](const char* p, std::size_t n) {
    for (const auto& s : v) referred += p == s.data() ? 1 : 0;
    gathered.append(p, n);
  });
  EXPECT_EQ(gathered, expected);
  EXPECT_EQ(referred, 5u);  // each large string, sent from where it is

  message_buffer moved = std::move(kept);
  const auto copy = moved.clone();
  ASSERT_TRUE(copy.contiguous());
  EXPECT_EQ(std::string(copy.data(), copy.size()), expected);
  moved.flatten();
  ASSERT_TRUE(moved.contiguous());
  EXPECT_EQ(std::string(moved.data(), moved.size()), expected);
}

}  // namespace
