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
  const std::string expected = lit("\x94\x01\x81\xa3" "add" "\xa5" "i(ii)" "\xcd\x04\x00\x81\xa6" "caller" "\x07");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, TheHelloOfACallerWithATokenCarriesItsProofBeforeTheCaller) {
  const auto proof = counting_nonce(100);
  protocol::hello_request hello;
  hello.version = protocol::version;
  hello.max_message_size = 1;
  hello.proof = raw(proof);
  hello.caller = 300;
  message_buffer b(0);
  protocol::pack(b, hello);
  const std::string expected = lit("\x94\x01\x80\x01\x82\xa5" "proof" "\xc4\x20") + raw(proof) +
                               lit("\xa6" "caller" "\xcd\x01\x2c");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, AWorkerReadsTheProofAndTheCallerOfAHello) {
  const auto proof = counting_nonce(1);
  protocol::hello_request hello;
  hello.version = protocol::version;
  hello.functions = {{"f", "v()"}};
  hello.proof = raw(proof);
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
                                  lit("\x94\x01\x80\x01\x81\xa6" "caller" "\xa1x")}) {
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
  a.resources = {{"gpu", 2.0}};
  message_buffer b(0);
  protocol::pack(b, a);
  const std::string expected =
      lit("\x84\xa8" "protocol" "\x01\xa9" "functions" "\x81\xa3" "add" "\xa5" "i(ii)" "\xb0" "max_message_size"
                  "\xcd\x04\x00\xa9" "resources" "\x81\xa3" "gpu" "\xcb\x40\x00\x00\x00\x00\x00\x00\x00");
  EXPECT_EQ(hex(bytes_of(b)), hex(expected));
}

TEST(Protocol, ACallerReadsEveryFieldOfAHelloAnswer) {
  const auto proof = counting_nonce(9);
  protocol::hello_answer a;
  a.version = protocol::version;
  a.functions = {{"add", "i(ii)"}, {"sub", "i(ii)"}};
  a.max_message_size = 4096;
  a.resources = {{"gpu", 1.5}, {"mem", 17179869184.0}};
  a.proof = raw(proof);
  message_buffer b(0);
  protocol::pack(b, a);
  const auto h = unpacked(b);
  const auto read = protocol::read_hello_answer(h.get());
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->version_ok);
  EXPECT_EQ(read->max_message_size, 4096u);
  EXPECT_EQ(read->functions.at("sub"), "i(ii)");
  EXPECT_EQ(read->resources.at("mem"), 17179869184.0);
  ASSERT_TRUE(read->proof.has_value());
  EXPECT_EQ(std::string(*read->proof), raw(proof));
}

TEST(Protocol, AnAnswerNamingAnotherVersionOrNoMapIsRefused) {
  const std::string other("\x81\xa8" "protocol" "\x02", 11);
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
  EXPECT_EQ(hex(bytes_of(a)), hex(lit("\x81\xa5" "nonce" "\xc4\x20") + raw(theirs)));
  const auto ha = unpacked(a);
  EXPECT_EQ(protocol::read_challenge_answer(ha.get()), theirs);
}

TEST(Protocol, AChallengeWithAShortNonceIsRefused) {
  const std::string short_nonce("\x91\xc4\x02\x01\x02", 5);
  const auto h = msgpack::unpack(short_nonce.data(), short_nonce.size());
  EXPECT_FALSE(protocol::read_challenge(h.get()).has_value());
  const std::string no_nonce("\x81\xa4" "none" "\xc0", 7);
  const auto n = msgpack::unpack(no_nonce.data(), no_nonce.size());
  EXPECT_FALSE(protocol::read_challenge_answer(n.get()).has_value());
}

}  // namespace protocol_test
