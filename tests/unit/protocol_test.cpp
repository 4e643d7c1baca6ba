#include "protocol/hello.hpp"

#include <gtest/gtest.h>

#include <string>

#include "protocol/protocol.hpp"

namespace protocol_test {

namespace protocol = framex::protocol;
using framex::detail::message_buffer;

// The bytes of a literal, zeros included (without the terminating one).
template <std::size_t N>
std::string lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string bytes_of(const message_buffer& b) { return std::string(b.data(), b.size()); }
std::string hex(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    out += "0123456789abcdef"[c >> 4];
    out += "0123456789abcdef"[c & 15];
  }
  return out;
}

protocol::nonce_bytes counting_nonce(unsigned char from) {
  protocol::nonce_bytes n;
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<unsigned char>(from + i);
  return n;
}
std::string raw(const protocol::nonce_bytes& n) { return std::string(reinterpret_cast<const char*>(n.data()), n.size()); }

msgpack::object_handle unpacked(const message_buffer& b) { return msgpack::unpack(b.data(), b.size()); }

TEST(Protocol, TheHelloOfACallerWithoutATokenHasTheseBytes) {
  protocol::hello_request hello;
  hello.version = protocol::version;
  hello.functions = {{"add", "i(ii)"}};
  hello.max_message_size = 1024;
  hello.caller = 7;
  message_buffer b(0);
  protocol::pack(b, hello);
  const std::string expected =
      lit("\x94\x01\x81\xa3"
          "add"
          "\xa5"
          "i(ii)"
          "\xcd\x04\x00\x81\xa6"
          "caller"
          "\x07");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, TheHelloOfACallerWithATokenCarriesItsProofBeforeTheCaller) {
  const auto proof = counting_nonce(100);
  const std::string proof_bytes = raw(proof);
  protocol::hello_request hello;
  hello.version = protocol::version;
  hello.max_message_size = 1;
  hello.proof = proof_bytes;
  hello.caller = 300;
  message_buffer b(0);
  protocol::pack(b, hello);
  const std::string expected = lit("\x94\x01\x80\x01\x82\xa5"
                                   "proof"
                                   "\xc4\x20") +
                               raw(proof) +
                               lit("\xa6"
                                   "caller"
                                   "\xcd\x01\x2c");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, AWorkerReadsTheProofAndTheCallerOfAHello) {
  const auto proof = counting_nonce(1);
  const std::string proof_bytes = raw(proof);
  protocol::hello_request hello;
  hello.version = protocol::version;
  hello.functions = {{"f", "v()"}};
  hello.proof = proof_bytes;
  hello.caller = 42;
  message_buffer b(0);
  protocol::pack(b, hello);
  const auto h = unpacked(b);
  const auto read = protocol::read_hello_request(h.get());
  EXPECT_EQ(read.caller, 42u);
  EXPECT_EQ(std::string(read.proof), raw(proof));
}

TEST(Protocol, AHelloOfTheWrongShapeReadsAsEmpty) {
  for (const std::string& wire : {lit("\x93\x01\x80\x01"), lit("\xc0"),
                                  lit("\x94\x01\x80\x01\x81\xa6"
                                      "caller"
                                      "\xa1x")}) {
    const auto h = msgpack::unpack(wire.data(), wire.size());
    const auto read = protocol::read_hello_request(h.get());
    EXPECT_EQ(read.caller, 0u) << hex(wire);
    EXPECT_TRUE(read.proof.empty()) << hex(wire);
  }
}

TEST(Protocol, AWorkersHelloAnswerHasTheseBytes) {
  protocol::hello_answer a;
  a.version = protocol::version;
  a.functions = {{"add", "i(ii)"}};
  a.max_message_size = 1024;
  a.max_message_elements = 4096;
  a.max_held_bytes = 0;
  // An amount travels as msgpack-c packs a double: as an integer when it is one.
  a.resources = {{"gpu", 2.5}, {"mem", 16.0}};
  message_buffer b(0);
  protocol::pack(b, a);
  const std::string expected = lit("\x86\xa8" "protocol" "\x01\xa9" "functions" "\x81\xa3" "add" "\xa5" "i(ii)" "\xb0" "max_message_size"
                                   "\xcd\x04\x00\xb4" "max_message_elements" "\xcd\x10\x00\xae" "max_held_bytes" "\x00\xa9" "resources" "\x82\xa3" "gpu" "\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xa3" "mem" "\x10");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, ACallerReadsEveryFieldOfAHelloAnswer) {
  const auto proof = counting_nonce(9);
  const std::string proof_bytes = raw(proof);
  protocol::hello_answer a;
  a.version = protocol::version;
  a.functions = {{"add", "i(ii)"}, {"sub", "i(ii)"}};
  a.max_message_size = 4096;
  a.max_message_elements = 5000;
  a.max_held_bytes = std::uint64_t{1} << 33;
  a.resources = {{"gpu", 1.5}, {"mem", 17179869184.0}};
  a.proof = proof_bytes;
  message_buffer b(0);
  protocol::pack(b, a);
  const auto h = unpacked(b);
  const auto read = protocol::read_hello_answer(h.get());
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->version_ok);
  EXPECT_EQ(read->max_message_size, 4096u);
  EXPECT_EQ(read->max_message_elements, 5000u);
  EXPECT_EQ(read->max_held_bytes, std::uint64_t{1} << 33);
  EXPECT_EQ(read->functions.at("sub"), "i(ii)");
  EXPECT_EQ(read->resources.at("mem"), 17179869184.0);
  ASSERT_TRUE(read->proof.has_value());
  EXPECT_EQ(std::string(*read->proof), raw(proof));
}

TEST(Protocol, AnAnswerNamingAnotherVersionOrNoMapIsRefused) {
  const std::string other(
      "\x81\xa8"
      "protocol"
      "\x02",
      11);
  const auto h = msgpack::unpack(other.data(), other.size());
  const auto read = protocol::read_hello_answer(h.get());
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->version_ok);
  EXPECT_FALSE(read->max_message_size.has_value());
  const std::string nil("\xc0", 1);
  const auto n = msgpack::unpack(nil.data(), nil.size());
  EXPECT_FALSE(protocol::read_hello_answer(n.get()).has_value());
}

TEST(Protocol, TheChallengeAndItsAnswerCarryThirtyTwoBytes) {
  const auto ours = counting_nonce(0);
  message_buffer c(0);
  protocol::pack_challenge(c, ours);
  EXPECT_EQ(hex(bytes_of(c)), hex(lit("\x91\xc4\x20") + raw(ours)));
  const auto hc = unpacked(c);
  EXPECT_EQ(protocol::read_challenge(hc.get()), ours);

  const auto theirs = counting_nonce(50);
  message_buffer a(0);
  protocol::pack_challenge_answer(a, theirs);
  EXPECT_EQ(hex(bytes_of(a)), hex(lit("\x81\xa5"
                                      "nonce"
                                      "\xc4\x20") +
                                  raw(theirs)));
  const auto ha = unpacked(a);
  EXPECT_EQ(protocol::read_challenge_answer(ha.get()), theirs);
}

TEST(Protocol, AChallengeWithAShortNonceIsRefused) {
  const std::string short_nonce("\x91\xc4\x02\x01\x02", 5);
  const auto h = msgpack::unpack(short_nonce.data(), short_nonce.size());
  EXPECT_FALSE(protocol::read_challenge(h.get()).has_value());
  const std::string no_nonce(
      "\x81\xa4"
      "none"
      "\xc0",
      7);
  const auto n = msgpack::unpack(no_nonce.data(), no_nonce.size());
  EXPECT_FALSE(protocol::read_challenge_answer(n.get()).has_value());
}

}  // namespace protocol_test

// The caller packs these layouts in public headers (templates); the worker
// reads them here. Each pair is checked against the other.
#include "framex/detail/actor.hpp"
#include "framex/detail/object_store.hpp"
#include "protocol/actor_layout.hpp"

namespace protocol_test {

TEST(Protocol, AWorkerReadsTheActorCallACallerPacks) {
  message_buffer b(0);
  msgpack::packer<message_buffer> p(b);
  framex::detail::pack_actor_call_head(p, 12, 34, 2);
  p.pack(std::string_view("x"));
  p.pack(5);
  const auto h = unpacked(b);
  const auto read = protocol::read_actor_call(h.get());
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->actor, 12u);
  EXPECT_EQ(read->caller, 34u);
  ASSERT_EQ(read->arguments.via.array.size, 2u);
  EXPECT_EQ(read->arguments.via.array.ptr[1].as<int>(), 5);
  EXPECT_EQ(hex(bytes_of(b)), hex(lit("\x94\x0c\x22\xa1x\x05")));
}

TEST(Protocol, AnActorCallWithoutActorOrCallerIsRefused) {
  for (const std::string& wire : {lit("\x92\x00\x01"), lit("\x92\x01\x00"), lit("\x91\x01"), lit("\x80")}) {
    const auto h = msgpack::unpack(wire.data(), wire.size());
    EXPECT_FALSE(protocol::read_actor_call(h.get()).has_value()) << hex(wire);
  }
}

TEST(Protocol, AWorkerReadsTheSpawnACallerPacksWithAndWithoutSnapshots) {
  for (const std::uint64_t key : {std::uint64_t{0}, std::uint64_t{77}}) {
    message_buffer b(0);
    msgpack::packer<message_buffer> p(b);
    framex::detail::pack_actor_spawn_head(p, 9, "counter", 1, key);
    p.pack(100);
    framex::detail::pack_actor_spawn_tail(p, 3, key);
    const auto h = unpacked(b);
    const auto read = protocol::read_actor_spawn(h.get());
    ASSERT_TRUE(read.has_value()) << key;
    EXPECT_EQ(read->caller, 9u);
    EXPECT_EQ(read->name, "counter");
    ASSERT_EQ(read->arguments.via.array.size, 1u);
    EXPECT_EQ(read->arguments.via.array.ptr[0].as<int>(), 100);
    EXPECT_EQ(read->snapshot_every, key != 0 ? 3u : 0u);
    EXPECT_EQ(read->snapshot_key, key);
  }
}

TEST(Protocol, ASpawnWithABadSnapshotPlanOrShapeIsRefused) {
  for (const std::string& wire : {lit("\x94\x01\xa1n\x90\x92\x00\x01"),  // every = 0
                                  lit("\x94\x01\xa1n\x90\x92\x01\x00"),  // key = 0
                                  lit("\x93\x00\xa1n\x90"),              // no caller
                                  lit("\x93\x01\x01\x90"),               // a name that is no string
                                  lit("\x93\x01\xa1n\x01"),              // arguments that are no array
                                  lit("\x92\x01\xa1n")}) {
    const auto h = msgpack::unpack(wire.data(), wire.size());
    EXPECT_FALSE(protocol::read_actor_spawn(h.get()).has_value()) << hex(wire);
  }
}

TEST(Protocol, AWorkerReadsTheResultAsReferenceMarkerACallerPacks) {
  message_buffer b(0);
  msgpack::packer<message_buffer> p(b);
  p.pack_array(2);
  framex::detail::pack_result_as_ref(p, 0x0102030405060708ULL);
  p.pack(42);
  const auto h = unpacked(b);
  const auto read = protocol::read_result_as_ref(h.get(), framex::detail::as_ref_ext_type);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->owner, 0x0102030405060708ULL);
  ASSERT_EQ(read->arguments.via.array.size, 1u);
  EXPECT_EQ(read->arguments.via.array.ptr[0].as<int>(), 42);
  // Arguments that do not begin with the marker carry none; a marker of the wrong size names no owner.
  const std::string plain = lit("\x91\x2a");
  const auto hp = msgpack::unpack(plain.data(), plain.size());
  EXPECT_FALSE(protocol::read_result_as_ref(hp.get(), framex::detail::as_ref_ext_type).has_value());
  const std::string short_marker = lit("\x91\xd4\x47\x01");
  const auto hs = msgpack::unpack(short_marker.data(), short_marker.size());
  const auto bad = protocol::read_result_as_ref(hs.get(), framex::detail::as_ref_ext_type);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->owner, 0u);
}

}  // namespace protocol_test
