// Who may call a worker: the token hello (both ways), the `serve` list, and a
// worker that refuses to face a network unprotected. Real worker processes on
// 127.0.0.1, raw peers for what a framex caller would never send.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <openssl/hmac.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "raw_peer.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

int security_double(int x) { return 2 * x; }
int security_secret(int x) { return x; }
namespace billing {
int security_charge(int cents) { return cents + 1; }
}  // namespace billing

namespace {

using framex::test::distributed;
using framex::test::error_code_of;
using framex::test::error_of;
using framex::test::raw_peer;
using framex::test::run;
using framex::test::worker_process;

using token_files = framex::test::temp_dir;

const std::string good_token = "c0ffee-0123456789abcdef-good-token";
const std::string other_token = "deadbeef-0123456789abcdef-other-one";

struct Security : ::testing::Test {
  token_files files;
  std::string good = files.write("good", good_token);
  std::string other = files.write("other", other_token);

  framex::config caller(const std::string& address, const std::string& token_file) {
    auto cfg = distributed({address});
    cfg.distributed.token_file = token_file;
    return cfg;
  }
  std::error_code call_error(framex::runtime& rt) {
    return run([&]() { return error_of(framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(21)); });
  }
};

using bytes = std::vector<char>;  // packs as msgpack bin

bytes hmac(const std::string& token, const std::string& role, const bytes& first, const bytes& second) {
  std::string message = role;
  message.append(first.begin(), first.end());
  message.append(second.begin(), second.end());
  unsigned char out[32];
  unsigned int length = 0;
  HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), out, &length);
  return bytes(out, out + length);
}

std::map<std::string, bytes> proof_of(const bytes& p) { return {{"proof", p}}; }

// ---- the token ----

TEST_F(Security, ACallerWithTheWorkersTokenIsServed) {
  worker_process w(0, {}, "/proc/self/exe", {"--worker.token_file", good});  // as the README starts one
  framex::runtime rt(caller(w.address(), good));
  EXPECT_EQ(run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(21); }), 42);
}

TEST_F(Security, AWrongTokenIsRefusedByTheWorkerAtOnceAndOthersAreStillServed) {
  worker_process w(0, {"FRAMEX_WORKER__TOKEN_FILE=" + good});
  framex::runtime wrong(caller(w.address(), other));
  const auto start = framex::test::clock::now();
  try {
    run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &wrong}).remote(1); });
    FAIL() << "a wrong token was served";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::unauthorized);
    EXPECT_NE(std::string(e.what()).find("refused by the worker"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(other_token), std::string::npos) << e.what();
  }
  EXPECT_LT(framex::test::since(start), 15s);  // refused for good: the call does not wait out its timeout
  framex::runtime right(caller(w.address(), good));
  EXPECT_EQ(call_error(right), std::error_code{});
}

TEST_F(Security, ACallerWithoutATokenIsRefused) {
  worker_process w(0, {"FRAMEX_WORKER__TOKEN_FILE=" + good});
  framex::runtime none(distributed({w.address()}));
  EXPECT_EQ(call_error(none), framex::errc::unauthorized);
}

TEST_F(Security, ACallerWithATokenRefusesAWorkerWithout) {
  worker_process w;
  framex::runtime rt(caller(w.address(), good));
  try {
    run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(1); });
    FAIL() << "the caller trusted a worker that proved nothing";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::unauthorized);
    EXPECT_NE(std::string(e.what()).find("takes no token"), std::string::npos) << e.what();
  }
}

// A stand-in worker that answers the challenge and accepts any hello, but
// cannot prove the token: the caller must refuse it.
TEST_F(Security, ACallerRefusesAWorkerThatCannotProveTheToken) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::atomic<bool> asked_to_call{false};
  std::thread impostor([&] {
    asio::ip::tcp::socket s(io);
    acceptor.accept(s);
    msgpack::unpacker in;
    boost::system::error_code ec;
    while (!ec) {
      in.reserve_buffer(65536);
      const std::size_t n = s.read_some(asio::buffer(in.buffer(), in.buffer_capacity()), ec);
      in.buffer_consumed(n);
      msgpack::object_handle h;
      while (in.next(h)) {
        const auto& m = h.get().via.array;
        const auto method = m.ptr[2].as<std::string>();
        msgpack::sbuffer b;
        msgpack::packer<msgpack::sbuffer> p(b);
        p.pack_array(4);
        p.pack(1);
        p.pack(m.ptr[1]);
        p.pack_nil();
        if (method == "framex.challenge") {
          p.pack(std::map<std::string, bytes>{{"nonce", bytes(32, 'n')}});
        } else if (method == "framex.hello") {
          p.pack(std::map<std::string, bytes>{{"proof", bytes(32, 'p')}});
        } else {
          asked_to_call = true;
          p.pack(0);
        }
        asio::write(s, asio::buffer(b.data(), b.size()), ec);
      }
    }
  });
  framex::runtime rt(caller("127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()), good));
  try {
    run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(1); });
    ADD_FAILURE() << "the caller trusted an impostor";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::unauthorized);
    EXPECT_NE(std::string(e.what()).find("refused by the caller"), std::string::npos) << e.what();
  }
  rt.shutdown();  // closes the impostor's connection
  impostor.join();
  EXPECT_FALSE(asked_to_call);  // no call was sent to it
}

TEST_F(Security, BeforeTheHelloEveryCallIsUnauthorizedAndASilentPeerIsCutOff) {
  worker_process w(0, {"FRAMEX_WORKER__TOKEN_FILE=" + good, "FRAMEX_WORKER__AUTH_TIMEOUT_MS=300"});
  raw_peer p(w.port());
  p.request(1, "security_double", 4);
  auto r = p.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(error_code_of(*r), static_cast<std::uint64_t>(framex::errc::unauthorized));
  const auto start = framex::test::clock::now();
  EXPECT_FALSE(p.receive());  // closed after the auth timeout
  EXPECT_LT(framex::test::since(start), 10s);
}

// Before it proves the token, a peer may not make the worker hold a large
// message: one over 1 MiB closes its connection as it arrives, whole or not.
TEST_F(Security, BeforeTheHelloALargeMessageClosesTheConnectionAsItArrives) {
  // The auth timeout is long: only the size can close the connection within the test's 10 s.
  worker_process w(0, {"FRAMEX_WORKER__TOKEN_FILE=" + good, "FRAMEX_WORKER__AUTH_TIMEOUT_MS=60000"});
  for (const bool whole : {false, true}) {
    raw_peer p(w.port());
    // A request whose 30 MB string argument is announced; 2 MiB of it sent, or all.
    std::string head("\x94\x00\x01\xafsecurity_double\x91\xdb", 21);
    const std::uint32_t n = 30'000'000;
    for (int shift = 24; shift >= 0; shift -= 8) head += static_cast<char>((n >> shift) & 0xff);
    boost::system::error_code ec;
    asio::write(p.socket(), asio::buffer(head), ec);
    const std::string body(whole ? n : std::size_t{2} << 20, 'x');
    asio::write(p.socket(), asio::buffer(body), ec);  // fails once the worker has closed
    EXPECT_TRUE(p.closed_by_worker(10s)) << (whole ? "whole" : "partial");
  }
  // A caller with the token is served as before.
  framex::runtime rt(caller(w.address(), good));
  EXPECT_EQ(run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(21); }), 42);
}

TEST_F(Security, TheDocumentedHelloWorksAndARecordedOneCannotBeReplayed) {
  worker_process w(0, {"FRAMEX_WORKER__TOKEN_FILE=" + good});
  const bytes caller_nonce(32, 'c');
  bytes recorded;
  {
    raw_peer p(w.port());
    p.request(1, "framex.challenge", caller_nonce);
    auto r = p.receive();
    ASSERT_TRUE(r);
    const auto worker_nonce = r->get().via.array.ptr[3].as<std::map<std::string, bytes>>().at("nonce");
    ASSERT_EQ(worker_nonce.size(), 32u);
    recorded = hmac(good_token, "framex-hello-v1 caller", worker_nonce, caller_nonce);
    p.request(2, "framex.hello", 1, std::map<std::string, std::string>{}, 1 << 20, proof_of(recorded));
    r = p.receive();
    ASSERT_TRUE(r);
    ASSERT_EQ(error_code_of(*r), 0u);
    const auto answer = r->get().via.array.ptr[3].as<std::map<std::string, msgpack::object>>();
    EXPECT_EQ(answer.at("proof").as<bytes>(), hmac(good_token, "framex-hello-v1 worker", caller_nonce, worker_nonce));
    p.request(3, "security_double", 4);
    r = p.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get().via.array.ptr[3].as<int>(), 8);
  }
  {  // the same proof on a new connection, whose worker nonce differs
    raw_peer p(w.port());
    p.request(1, "framex.challenge", caller_nonce);
    ASSERT_TRUE(p.receive());
    p.request(2, "framex.hello", 1, std::map<std::string, std::string>{}, 1 << 20, proof_of(recorded));
    auto r = p.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(error_code_of(*r), static_cast<std::uint64_t>(framex::errc::unauthorized));
    EXPECT_FALSE(p.receive());  // and the worker closed the connection
  }
  {  // without a challenge at all
    raw_peer p(w.port());
    p.request(2, "framex.hello", 1, std::map<std::string, std::string>{}, 1 << 20, proof_of(recorded));
    auto r = p.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(error_code_of(*r), static_cast<std::uint64_t>(framex::errc::unauthorized));
  }
}

TEST_F(Security, AnUnreadableTokenFileIsAConfigErrorThatNamesTheFileNotTheToken) {
  auto cfg = caller("127.0.0.1:1", "/nonexistent/token");
  try {
    framex::runtime rt(cfg);
    FAIL() << "started without its token";
  } catch (const framex::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("distributed.token_file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/nonexistent/token"), std::string::npos) << e.what();
  }
  cfg.distributed.token_file = files.write("short", "tiny");
  EXPECT_THROW(framex::runtime{cfg}, framex::config_error);
  const std::string open_to_all = files.write("open", good_token);
  std::filesystem::permissions(open_to_all, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  cfg.distributed.token_file = open_to_all;
  try {
    framex::runtime rt(cfg);
    ADD_FAILURE() << "a token file any user may read was taken";
  } catch (const framex::config_error& e) {
    EXPECT_NE(std::string(e.what()).find(open_to_all + " may be read or written by any user"), std::string::npos) << e.what();
  }
  cfg.distributed.token_file = good;
  EXPECT_EQ(cfg.describe().find(good_token), std::string::npos);  // --print-config shows the file only
}

// ---- what a worker serves ----

TEST(WorkerServe, OnlyTheServedFunctionsCanBeCalledAndTheHelloListsOnlyThem) {
  worker_process w(0, {"FRAMEX_WORKER__SERVE=security_double,billing::*"});
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&security_double>.with({.timeout = 20s, .runtime = &rt}).remote(2); }), 4);
  EXPECT_EQ(run([&]() { return framex::remote<&billing::security_charge>.with({.timeout = 20s, .runtime = &rt}).remote(2); }), 3);
  EXPECT_EQ(run([&]() { return error_of(framex::remote<&security_secret>.with({.timeout = 20s, .runtime = &rt}).remote(2)); }),
            framex::errc::unknown_function);
  raw_peer p(w.port());
  p.request(1, "framex.hello", 1, std::map<std::string, std::string>{}, 1 << 20);
  auto r = p.receive();
  ASSERT_TRUE(r);
  const auto answer = r->get().via.array.ptr[3].as<std::map<std::string, msgpack::object>>();
  const auto functions = answer.at("functions").as<std::map<std::string, std::string>>();
  EXPECT_TRUE(functions.contains("security_double"));
  EXPECT_TRUE(functions.contains("billing::security_charge"));
  EXPECT_FALSE(functions.contains("security_secret"));
  EXPECT_EQ(functions.size(), 2u);
}

// ---- a worker facing a network ----

TEST(WorkerExposure, AWorkerOnANonLoopbackAddressNeedsATokenOrSaysItIsInsecure) {
  framex::config cfg;
  cfg.worker.listen = "192.0.2.1:0";  // not loopback (and not this machine's: nothing is ever exposed)
  try {
    framex::worker w(cfg);
    FAIL() << "an unprotected worker accepted a non-loopback address";
  } catch (const framex::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("worker.insecure"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("worker.token_file"), std::string::npos) << e.what();
  }
  // Said to be insecure, it goes on to bind (and fails only because the address is not here).
  cfg.worker.insecure = true;
  EXPECT_THROW(framex::worker{cfg}, std::system_error);
  cfg.worker.insecure = false;
  token_files files;
  cfg.worker.token_file = files.write("t", good_token);
  EXPECT_THROW(framex::worker{cfg}, std::system_error);
  cfg.worker.listen = "127.0.0.1:0";
  cfg.worker.token_file.clear();
  framex::worker loopback(cfg);  // loopback needs neither
  EXPECT_NE(loopback.port(), 0);
}

}  // namespace
