// A worker under hostile and careless peers: real worker processes (this test
// binary with --framex-worker) attacked over raw TCP on 127.0.0.1 while a
// well-behaved framex caller keeps calling. Each test says what a peer does
// and what must still hold: the good caller's calls succeed, the bad peer gets
// a clear error or a closed connection, and the worker's memory stays bounded.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "raw_peer.hpp"
#include "slow_link.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace std::string_literals;

// ---- what the workers serve ----

// A type whose codec throws something other than decode_error.
struct touchy {
  int value = 0;
};
template <>
struct framex::codec<touchy> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const touchy& t) {
    p.pack(t.value);
  }
  static void unpack(const msgpack::object& o, touchy& t) {
    t.value = o.as<int>();  // msgpack::type_error on a string
    if (t.value < 0) throw std::out_of_range("a touchy value is never negative");
  }
  static std::string schema() { return "touchy"; }
};
int hardening_touchy(touchy t) { return t.value; }
asio::awaitable<int> hardening_touchy_async(touchy t) { co_return t.value; }

// A type whose default constructor throws on the worker when asked to.
std::atomic<bool> fragile_construction_throws{false};
struct fragile {
  fragile() {
    if (fragile_construction_throws) throw std::runtime_error("fragile refuses to be built");
  }
  int value = 0;
};
template <>
struct framex::codec<fragile> {
  template <class S>
  static void pack(msgpack::packer<S>& p, const fragile& f) {
    p.pack(f.value);
  }
  static void unpack(const msgpack::object& o, fragile& f) { f.value = o.as<int>(); }
  static std::string schema() { return "fragile"; }
};
int hardening_fragile(fragile f) { return f.value; }
void hardening_arm_fragile(bool on) { fragile_construction_throws = on; }

int hardening_add(int a, int b) { return a + b; }
std::atomic<int> sleeps_started{0}, sleeps_finished{0};
int hardening_sleep(int ms) {
  ++sleeps_started;
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  ++sleeps_finished;
  return ms;
}
// Sleeps as hardening_sleep does; returns how many sleeps had started before it.
int hardening_turn(int ms) {
  const int before = sleeps_started.load();
  hardening_sleep(ms);
  return before;
}
std::string hardening_blob(std::uint32_t n) { return std::string(n, 'b'); }
// Only ever called by raw peers, so registered explicitly.
[[maybe_unused]] const bool blob_exposed = (framex::expose<&hardening_blob>(), true);
std::size_t hardening_length(const std::string& s) { return s.size(); }
std::size_t hardening_count(const std::vector<int>& v) { return v.size(); }
std::atomic<int> notes{0};
void hardening_note(int n) { notes += n; }
int hardening_notes() { return notes.load(); }
// Only ever notified by a raw peer, so registered explicitly.
[[maybe_unused]] const bool note_exposed = (framex::expose<&hardening_note>(), true);
int hardening_throw(int) { throw std::runtime_error("secret detail /etc/worker.conf"); }
// A notification whose function takes a while, and what it has done.
std::atomic<int> slow_notes{0};
void hardening_slow_note(int n) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  slow_notes += n;
}
int hardening_slow_notes() { return slow_notes.load(); }
[[maybe_unused]] const bool slow_note_exposed =
    (framex::expose<&hardening_slow_note>(), framex::expose<&hardening_slow_notes>(), true);

namespace {

using framex::test::clock;
using framex::test::error_of;
using framex::test::eventually;
using framex::test::run;
using framex::test::since;
using framex::test::peak_rss_mib;
using framex::test::worker_process;
using framex::test::distributed;
using framex::test::raw_peer;
using framex::test::request_bytes;

std::string error_text(const msgpack::object& response) {
  const auto& error = response.via.array.ptr[2];
  std::string out;
  if (error.type != msgpack::type::MAP) return out;
  for (std::uint32_t i = 0; i < error.via.map.size; ++i) {
    const auto& kv = error.via.map.ptr[i];
    if (kv.val.type == msgpack::type::STR) out += std::string(kv.val.via.str.ptr, kv.val.via.str.size) + " ";
    if (kv.val.type == msgpack::type::POSITIVE_INTEGER) out += "code=" + std::to_string(kv.val.via.u64) + " ";
  }
  return out;
}

class Hardening : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { shared = new worker_process(); }
  static void TearDownTestSuite() { delete shared; }
  static inline worker_process* shared = nullptr;

  int good_call(int a, int b) {
    framex::runtime rt(distributed({shared->address()}));
    return run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(a, b); });
  }
};

// ---- a request whose decoding throws anything is answered ----

TEST_F(Hardening, ACodecThrowingSomethingOtherThanDecodeErrorIsAnsweredWithBadArguments) {
  framex::runtime rt(distributed({shared->address()}));
  for (auto call : {+[](framex::runtime& r) { return error_of(framex::remote<&hardening_touchy>.with({.timeout = 20s, .runtime = &r}).remote(touchy{-1})); },
                    +[](framex::runtime& r) { return error_of(framex::remote<&hardening_touchy_async>.with({.timeout = 20s, .runtime = &r}).remote(touchy{-1})); }}) {
    EXPECT_EQ(run([&]() { return call(rt); }), framex::errc::bad_arguments);
  }
  raw_peer peer(shared->port());
  peer.request(1, "hardening_touchy", std::string("not a number"));  // msgpack::type_error inside the codec
  auto response = peer.receive();
  ASSERT_TRUE(response);
  EXPECT_NE(error_text(response->get()).find("bad_arguments"), std::string::npos) << error_text(response->get());
  EXPECT_EQ(good_call(2, 3), 5);  // the worker is still up
}

TEST_F(Hardening, AThrowingDefaultConstructorIsAnsweredAndTheWorkerStaysUp) {
  framex::runtime rt(distributed({shared->address()}));
  run([&]() { return framex::remote<&hardening_arm_fragile>.with({.runtime = &rt}).remote(true); });
  const auto ec = run([&]() { return error_of(framex::remote<&hardening_fragile>.with({.timeout = 20s, .runtime = &rt}).remote(fragile{})); });
  run([&]() { return framex::remote<&hardening_arm_fragile>.with({.runtime = &rt}).remote(false); });
  EXPECT_EQ(ec, framex::errc::exception);
  EXPECT_EQ(good_call(1, 1), 2);
}

// ---- the wire: msgid reuse, notifications ----

TEST_F(Hardening, ADuplicateMsgidInFlightIsRefusedAndOverwritesNothing) {
  raw_peer peer(shared->port());
  peer.request(7, "hardening_sleep", 300);
  peer.request(7, "hardening_sleep", 1);
  auto first = peer.receive();
  auto second = peer.receive();
  ASSERT_TRUE(first && second);
  // The refusal comes at once; the original call still answers, with its own result.
  EXPECT_NE(error_text(first->get()).find("already in flight"), std::string::npos) << error_text(first->get());
  EXPECT_EQ(second->get().via.array.ptr[2].type, msgpack::type::NIL);
  EXPECT_EQ(second->get().via.array.ptr[3].as<int>(), 300);
}

// An unknown name is not echoed back whole: 1 MiB in is not 1 MiB out.
TEST_F(Hardening, AnUnknownMethodNameIsNotEchoedBackWhole) {
  raw_peer peer(shared->port());
  const std::string huge(1u << 20, 'n');
  for (const std::string& method : {huge, "framex." + huge}) {
    peer.request(1, method, 1);
    auto response = peer.receive();
    ASSERT_TRUE(response);
    const std::string text = error_text(response->get());
    EXPECT_NE(text.find("unknown_function"), std::string::npos) << text.substr(0, 200);
    EXPECT_NE(text.find("(" + std::to_string(method.size()) + " bytes)"), std::string::npos) << text.substr(0, 200);
    EXPECT_LT(text.size(), 512u);
  }
  EXPECT_EQ(good_call(2, 3), 5);
}

TEST_F(Hardening, ANotificationRunsItsFunctionAndIsNeverAnswered) {
  framex::runtime rt(distributed({shared->address()}));
  const int before = run([&]() { return framex::remote<&hardening_notes>.with({.runtime = &rt}).remote(); });
  raw_peer peer(shared->port());
  peer.notify("hardening_note", 5);
  peer.notify("no_such_function", 1);  // logged, not answered
  peer.request(1, "hardening_add", 1, 1);
  auto response = peer.receive();  // the first message back answers the request
  ASSERT_TRUE(response);
  EXPECT_EQ(response->get().via.array.ptr[1].as<int>(), 1);
  int after = before;
  for (int i = 0; i < 200 && after == before; ++i) {
    after = run([&]() { return framex::remote<&hardening_notes>.with({.runtime = &rt}).remote(); });
  }
  EXPECT_EQ(after, before + 5);
}

TEST_F(Hardening, ARequestFollowedByAHalfCloseIsStillAnswered) {
  raw_peer peer(shared->port());
  peer.request(3, "hardening_sleep", 50);
  peer.socket().shutdown(asio::ip::tcp::socket::shutdown_send);
  auto response = peer.receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->get().via.array.ptr[3].as<int>(), 50);
  EXPECT_TRUE(peer.closed_by_worker());
}

// ---- memory: what a message may make the worker allocate ----

// Their workers run with siege_env(): under ASan, a small quarantine, so peak
// memory measures what the worker holds, not what ASan keeps of what it freed.
TEST_F(Hardening, HugeDeclaredCountsCostNothingUntilTheirBytesArrive) {
  worker_process w(0, framex::test::siege_env());
  const framex::test::peak_growth growth(w.pid());
  std::vector<std::unique_ptr<raw_peer>> peers;
  for (int i = 0; i < 20; ++i) {
    peers.push_back(std::make_unique<raw_peer>(w.port()));
    // [0, 1, "hardening_add", [array32 of 2^32-1 ...   nested maps of 2^32-1, left open
    std::string bytes = "\x94\x00\x01\xadhardening_add\x91"s;
    for (int depth = 0; depth < 40; ++depth) bytes += i % 2 == 0 ? "\xdd\xff\xff\xff\xff" : "\xdf\xff\xff\xff\xff";
    peers.back()->send(bytes);
  }
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(2, 2); }), 4);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
}

TEST_F(Hardening, AMessageOfMillionsOfTinyElementsIsRefusedBeforeItIsBuilt) {
  worker_process w(0, framex::test::siege_env());
  const framex::test::peak_growth growth(w.pid());
  raw_peer peer(w.port());
  // [0, 1, "hardening_add", [array32 of 40 million nils]]: 40 MB that msgpack-c
  // would turn into 640 MB of objects.
  std::string bytes = "\x94\x00\x01\xadhardening_add\x91\xdd\x02\x62\x5a\x00"s;
  bytes.append(40'000'000, '\xc0');
  boost::system::error_code ec;
  asio::write(peer.socket(), asio::buffer(bytes), ec);  // the worker may close before it has read all
  EXPECT_TRUE(peer.closed_by_worker());
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(1, 2); }), 3);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
}

TEST_F(Hardening, MessagesStillArrivingAreBoundedTogether) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_HELD_BYTES=8388608"});  // 8 MiB
  std::vector<std::unique_ptr<raw_peer>> peers;
  for (int i = 0; i < 3; ++i) {  // each: 5 MiB of a 40 MB argument, and then nothing
    peers.push_back(std::make_unique<raw_peer>(w.port()));
    std::string bytes = "\x94\x00\x01\xb0hardening_length\x91\xdb\x02\x62\x5a\x00"s;
    bytes.append(5 << 20, 's');
    boost::system::error_code ec;
    asio::write(peers.back()->socket(), asio::buffer(bytes), ec);
  }
  // At most one 5 MiB partial message fits in 8 MiB: the others are cut off
  // (long before the 30 s message timeout).
  int closed = 0;
  for (int tick = 0; tick < 1000 && closed < 2; ++tick) {
    closed = 0;
    for (auto& p : peers) {
      p->socket().non_blocking(true);
      char byte;
      boost::system::error_code ec;
      p->socket().read_some(asio::buffer(&byte, 1), ec);
      closed += ec == asio::error::eof || ec == asio::error::connection_reset;
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(closed, 2);
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(1, 1); }), 2);
}

// ---- connections and time ----

// A worker allowed 1,024 open files (the common soft limit) and the default
// max_connections of 1,024: 1,100 silent connections do not lock a new
// caller out until the idle timeout. The worker keeps its connections below
// its descriptors, and running out of descriptors makes room the same way.
TEST(HardeningFiles, AWorkerAllowedAThousandOpenFilesKeepsRoomForANewCaller) {
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0);
  if (mine.rlim_cur < 4096 && mine.rlim_max > mine.rlim_cur) {
    mine.rlim_cur = std::min<rlim_t>(mine.rlim_max, 4096);
    ::setrlimit(RLIMIT_NOFILE, &mine);
  }
  FRAMEX_REQUIRE(mine.rlim_cur >= 2048 && ::access("/usr/bin/prlimit", X_OK) == 0,
                 "needs 2,048 open files for the test's own connections and util-linux's prlimit");
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  worker_process w(0, {}, self, {}, {}, {"/usr/bin/prlimit", "--nofile=1024:1024"});
  std::vector<int> silent;
  for (int i = 0; i < 1100; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(w.port());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    silent.push_back(fd);
  }
  framex::config cfg = distributed({w.address()});
  cfg.distributed.connect_timeout = 30s;
  framex::runtime rt(cfg);
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 60s, .runtime = &rt}).remote(4, 4); }), 8);
  for (const int fd : silent) ::close(fd);
}

TEST_F(Hardening, SilentConnectionsCannotLockACallerOut) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_CONNECTIONS=16"});
  std::vector<std::unique_ptr<raw_peer>> silent;
  for (int i = 0; i < 200; ++i) silent.push_back(std::make_unique<raw_peer>(w.port()));
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(4, 4); }), 8);
  // The worker made room by closing silent ones: most of them are closed now.
  int closed = 0;
  for (auto& p : silent) {
    p->socket().non_blocking(true);
    char byte;
    boost::system::error_code ec;
    p->socket().read_some(asio::buffer(&byte, 1), ec);
    closed += ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  EXPECT_GE(closed, 150);
}

TEST_F(Hardening, AMessageThatStopsHalfWayIsCutOffAfterTheMessageTimeout) {
  worker_process w(0, {"FRAMEX_DISTRIBUTED__MESSAGE_TIMEOUT_MS=300"});
  raw_peer peer(w.port());
  peer.send(std::string("\x94\x00\x01\xadhardening_add", 16));  // and then nothing
  const auto start = clock::now();
  EXPECT_TRUE(peer.closed_by_worker());
  EXPECT_LT(since(start), 10s);
}

TEST_F(Hardening, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
  worker_process w(0, {"FRAMEX_WORKER__IDLE_TIMEOUT_MS=300"});
  raw_peer peer(w.port());
  peer.request(1, "hardening_add", 1, 2);
  ASSERT_TRUE(peer.receive());
  const auto start = clock::now();
  EXPECT_TRUE(peer.closed_by_worker());
  EXPECT_LT(since(start), 10s);
}

// ---- a large argument by value: checked by the caller against every limit the worker announced ----

struct call_failure {
  std::error_code code;
  std::string what;
};
// How the call `make` starts failed; an empty code when it succeeded.
template <class Make>
call_failure failure_of(Make make) {
  try {
    run(make);
  } catch (const std::system_error& e) {
    return {e.code(), e.what()};
  }
  return {};
}

TEST(HardeningCaller, AnArgumentWithMoreObjectsThanTheWorkerTakesFailsAsTooLargeAndTheConnectionStays) {
  worker_process w(0, {"FRAMEX_DISTRIBUTED__MAX_MESSAGE_ELEMENTS=2000"});
  framex::runtime rt(distributed({w.address()}));
  const auto err = failure_of([&]() { return framex::remote<&hardening_count>.with({.timeout = 20s, .runtime = &rt}).remote(std::vector<int>(5000, 1)); });
  EXPECT_EQ(err.code, framex::errc::too_large) << err.what;
  for (const char* words : {"5006 objects", "at most 2000", "distributed.max_message_elements", "argument 0", "framex::put"}) {
    EXPECT_NE(err.what.find(words), std::string::npos) << words << " in: " << err.what;
  }
  // The connection was never at fault: the next call goes on it.
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_count>.with({.timeout = 20s, .runtime = &rt}).remote(std::vector<int>(900, 1)); }),
            900u);
}

TEST(HardeningCaller, ARequestTooLargeOnceDecodedForTheWorkersHeldBytesFailsAsTooLargeBeforeItIsSent) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_HELD_BYTES=1048576"});
  framex::runtime rt(distributed({w.address()}));
  const auto err = failure_of([&]() { return framex::remote<&hardening_count>.with({.timeout = 20s, .runtime = &rt}).remote(std::vector<int>(100000, 1)); });
  EXPECT_EQ(err.code, framex::errc::too_large) << err.what;
  for (const char* words : {"worker.max_held_bytes", "once decoded", "framex::put"}) {
    EXPECT_NE(err.what.find(words), std::string::npos) << words << " in: " << err.what;
  }
}

// A request's cost is its bytes and what its objects take decoded (24 bytes
// each), not twice that: 100,000 small integers (about 2.5 MB) fit a 4 MiB
// budget on an idle worker.
TEST(HardeningCaller, AWorkerAdmitsARequestThatFitsItsHeldBytesOnceDecoded) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_HELD_BYTES=4194304"});
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_count>.with({.timeout = 20s, .runtime = &rt}).remote(std::vector<int>(100000, 1)); }),
            100000u);
}

// ---- a notification, then a request: in order, as Neovim and msgpack-rpc peers expect ----

TEST(HardeningOrder, ARequestAfterANotificationStartsOnceTheNotificationsFunctionHasFinished) {
  worker_process w(0, {}, "/proc/self/exe", {"--threads", "4"});
  raw_peer peer(w.port());
  for (int i = 1; i <= 3; ++i) {
    peer.notify("hardening_slow_note", 1);
    peer.request(static_cast<std::uint32_t>(i), "hardening_slow_notes");
    const auto r = peer.receive();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->get().via.array.ptr[2].type, msgpack::type::NIL) << error_text(r->get());
    EXPECT_EQ(r->get().via.array.ptr[3].as<int>(), i) << "the request overtook notification " << i;
  }
  // A cancel or a ping is framex's own and does not wait: answered while a notification runs.
  peer.notify("hardening_slow_note", 1);
  peer.request(9, "framex.ping");
  peer.request(10, "hardening_slow_notes");
  const auto ping = peer.receive();
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->get().via.array.ptr[1].as<std::uint32_t>(), 9u);
  const auto notes = peer.receive();
  ASSERT_TRUE(notes);
  EXPECT_EQ(notes->get().via.array.ptr[3].as<int>(), 4);
}

// ---- a peer that does not read its answers ----

TEST_F(Hardening, APeerThatNeverReadsItsAnswersIsCutOffAndMemoryStaysBounded) {
  auto env = framex::test::siege_env();
  env.emplace_back("FRAMEX_WORKER__MAX_OUTPUT_BYTES=16777216");
  worker_process w(0, env);
  const framex::test::peak_growth growth(w.pid());
  raw_peer reader_that_never_reads(w.port());
  reader_that_never_reads.socket().set_option(asio::socket_base::receive_buffer_size(4096));
  std::string burst;
  for (std::uint32_t id = 1; id <= 400; ++id) burst += request_bytes(id, "hardening_blob", 1u << 20);  // 400 answers of 1 MiB
  boost::system::error_code ec;
  asio::write(reader_that_never_reads.socket(), asio::buffer(burst), ec);
  // A good caller is served meanwhile.
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(5, 5); }), 10);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
}

// ---- one connection cannot starve the others ----

TEST_F(Hardening, OneConnectionFloodingCallsDoesNotStarveAnother) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_CALLS_PER_CONNECTION=200"}, "/proc/self/exe", {"--threads", "2"});
  raw_peer flood(w.port());
  std::string burst;
  // 200 admitted calls of 50 ms on 2 threads: 5 s of work queued.
  for (std::uint32_t id = 1; id <= 2000; ++id) burst += request_bytes(id, "hardening_sleep", 50);
  flood.send(burst);
  ASSERT_TRUE(flood.receive());  // the flood has reached the worker
  framex::runtime rt(distributed({w.address()}));
  for (int i = 0; i < 5; ++i) {
    // Turn by turn, each call waits for at most one of the flood's calls per
    // thread, not for the whole queue: it starts while most of the flood's
    // 200 calls still wait (first come, first served would start it after all).
    const int started_before = run([&]() { return framex::remote<&hardening_turn>.with({.timeout = 30s, .runtime = &rt}).remote(1); });
    EXPECT_LT(started_before, 150) << "call " << i << " waited for the flood's queue";
  }
  int overloaded = 0;
  for (int i = 1; i < 2000; ++i) {
    auto r = flood.receive();
    if (!r) break;
    overloaded += error_text(r->get()).find("overloaded") != std::string::npos;
  }
  EXPECT_GE(overloaded, 1500);  // beyond its share, the flood was refused
}

// ---- what crosses to the caller ----

TEST(HardeningErrors, AWorkerThatCannotListenSaysWhereAndWhyInPlainWords) {
  asio::io_context io;
  asio::ip::tcp::acceptor taken(io, {asio::ip::make_address("127.0.0.1"), 0});
  const std::string where = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  framex::config cfg;
  cfg.worker.listen = where;
  std::string said;
  try {
    framex::worker w(cfg);
  } catch (const std::exception& e) {
    said = e.what();
  }
  EXPECT_NE(said.find("cannot listen on " + where + ": Address already in use"), std::string::npos) << said;
  EXPECT_EQ(said.find(".hpp"), std::string::npos) << said;  // not Boost's source file and function
}

TEST(HardeningErrors, WithExposeErrorsOffACallerGetsAFixedMessageAndAnErrorId) {
  worker_process w(0, {"FRAMEX_WORKER__EXPOSE_ERRORS=false"});
  framex::runtime rt(distributed({w.address()}));
  try {
    run([&]() { return framex::remote<&hardening_throw>.with({.timeout = 20s, .runtime = &rt}).remote(1); });
    FAIL() << "no exception";
  } catch (const framex::remote_error& e) {
    EXPECT_EQ(e.code(), framex::errc::exception);
    EXPECT_EQ(e.remote_message().find("/etc"), std::string::npos) << e.remote_message();
    EXPECT_NE(e.remote_message().find("error "), std::string::npos) << e.remote_message();
  }
}

// ---- a caller with several threads ----

// 3,000 calls from an io_context run by four threads, a third of them with a
// timeout so short that it races the completion.
int calls_from_four_threads(framex::runtime& rt) {
  asio::io_context io;
  std::atomic<int> ended{0};
  for (int i = 0; i < 3000; ++i) {
    const auto timeout = i % 3 == 0 ? std::chrono::microseconds(50) : std::chrono::microseconds(0);
    asio::co_spawn(io, error_of(framex::remote<&hardening_sleep>.with({.timeout = timeout, .runtime = &rt}).remote(i % 2)),
                   [&](std::exception_ptr, std::error_code) { ++ended; });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  return ended.load();
}

TEST(HardeningCaller, ACallerOnAMultiThreadedIoContextSurvivesTimeoutsAndCompletions) {
  worker_process w;
  framex::runtime rt(distributed({w.address()}));
  EXPECT_EQ(calls_from_four_threads(rt), 3000);
}

TEST(HardeningCaller, ALocalCallerOnAMultiThreadedIoContextSurvivesTimeoutsAndCompletions) {
  framex::runtime rt({.threads = 2});
  EXPECT_EQ(calls_from_four_threads(rt), 3000);
}

// ---- routing around a worker that is down ----

TEST(HardeningCaller, TheFirstCallGoesToAHealthyWorkerWhenAnotherIsDown) {
  framex::test::refusing_port down;
  worker_process live;
  for (int i = 0; i < 4; ++i) {
    framex::runtime rt(distributed({down.address(), live.address()}));
    EXPECT_EQ(run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(i, 1); }), i + 1);
  }
}

TEST(HardeningCaller, DistributedModeWithoutWorkersFailsAtStart) {
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  EXPECT_THROW(framex::runtime{cfg}, framex::config_error);
}

}  // namespace

namespace {

using framex::test::worker_process;

// The caller destroys its io_context while calls are in flight, in both
// declaration orders, the way `io.stop(); return` from main does.
// True when the calls were seen running before the io_context went.
bool destroy_the_io_context_mid_call(framex::runtime& rt, int ms, const std::function<bool()>& running) {
  auto io = std::make_unique<asio::io_context>();
  std::atomic<bool> started{false};
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(*io, [&]() -> asio::awaitable<void> {
      started = true;
      co_await framex::remote<&hardening_sleep>.with({.runtime = &rt}).remote(ms);
      ADD_FAILURE() << "the call completed into a stopped io_context";
    }, asio::detached);
  }
  while (!started) io->run_one();
  io->poll();
  bool seen = false;
  for (int i = 0; i < 3000 && !(seen = running()); ++i) std::this_thread::sleep_for(10ms);
  io.reset();  // calls still in flight
  return seen;
}

TEST(HardeningShutdown, DestroyingTheCallersIoContextWithLocalCallsInFlightIsSafe) {
  framex::runtime rt({.threads = 2});
  const int before = sleeps_started.load();
  EXPECT_TRUE(destroy_the_io_context_mid_call(rt, 300, [&] { return sleeps_started.load() >= before + 2; }));
  rt.shutdown();  // the bodies finish, and deliver to nothing
  EXPECT_EQ(sleeps_finished.load(), sleeps_started.load());
  EXPECT_GE(sleeps_finished.load(), before + 2);
}

TEST(HardeningShutdown, DestroyingTheRuntimeAfterTheIoContextWithDistributedCallsInFlightIsSafe) {
  worker_process w;
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {w.address()};
  auto rt = std::make_unique<framex::runtime>(cfg);
  EXPECT_TRUE(destroy_the_io_context_mid_call(*rt, 300, [&] {
    const auto s = framex::stats(*rt);
    return !s.workers.empty() && s.workers[0].in_flight == 4;
  }));
  rt.reset();  // the connections close: the lost calls deliver to nothing
  // The worker lived through it and serves the next caller.
  framex::runtime next(cfg);
  asio::io_context io;
  auto sum = asio::co_spawn(io, framex::remote<&hardening_add>.with({.runtime = &next}).remote(2, 3), asio::use_future);
  io.run();
  EXPECT_EQ(sum.get(), 5);
}

}  // namespace

namespace {

using framex::test::error_of;
using framex::test::worker_process;

TEST(HardeningRandom, RandomBytesCloseOnlyTheirConnection) {
  worker_process w(0, framex::test::siege_env());
  const framex::test::peak_growth growth(w.pid());
  std::mt19937_64 random(20261124);
  for (int round = 0; round < 20; ++round) {
    raw_peer peer(w.port());
    std::string junk(64 * 1024, '\0');
    for (auto& c : junk) c = static_cast<char>(random());
    boost::system::error_code ec;
    asio::write(peer.socket(), asio::buffer(junk), ec);
  }
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {w.address()};
  framex::runtime rt(cfg);
  EXPECT_EQ(framex::test::run([&]() { return framex::remote<&hardening_add>.with({.timeout = 20s, .runtime = &rt}).remote(3, 4); }), 7);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
}

// A stand-in worker that answers the hello and then never reads again.
// A large request over a slow link takes many heartbeats to send; the ping
// waits behind it, yet bytes leaving for the worker are life, and the call
// succeeds instead of failing with worker_lost at the second heartbeat.
TEST(HardeningCaller, ALargeRequestOverASlowLinkOutlivesTheHeartbeat) {
  worker_process w;
  framex::test::slow_link link(w.port(), 4 << 20);  // 4 MiB/s: 12 MiB take 3 s
  auto cfg = distributed({link.address()});
  cfg.distributed.heartbeat = 300ms;
  framex::runtime rt(cfg);
  ASSERT_EQ(run([&]() { return framex::remote<&hardening_length>.with({.timeout = 20s, .runtime = &rt}).remote(std::string(1, 'x')); }),
            1u);
  const auto start = clock::now();
  EXPECT_EQ(run([&]() {
              return framex::remote<&hardening_length>.with({.timeout = 20s, .runtime = &rt}).remote(std::string(12 << 20, 'x'));
            }),
            std::size_t{12} << 20);
  EXPECT_GT(since(start), 1500ms) << "the link was not slow: the test proved nothing";
}

// A worker cut off (its link carries nothing, its connection stays open, as
// across a partition) stops getting new calls within a second with default
// settings, long before the heartbeat gives up on it: only the calls already
// sent to it are lost.
TEST(HardeningCaller, NewCallsLeaveAWorkerCutOffWithinASecond) {
  worker_process w1(0, {}, "/proc/self/exe", {"--threads", "8"});
  worker_process w2(0, {}, "/proc/self/exe", {"--threads", "8"});
  framex::test::slow_link link(w1.port(), 1e9);  // as fast as it goes, until cut
  framex::runtime rt(distributed({link.address(), w2.address()}));
  struct call_outcome {
    clock::time_point started;
    bool ok = false;
  };
  std::vector<call_outcome> calls;  // the io_context's thread only
  asio::io_context io;
  const auto start = clock::now();
  clock::time_point cut_at = start + 1s;
  // Eight callers, each calling again as soon as a call ends; a call to the
  // worker cut off ends after 500 ms (its timeout), which leaves that worker
  // with no call in flight, so the fewest calls in flight alone would keep
  // choosing it.
  for (int caller = 0; caller < 8; ++caller) {
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      while (since(start) < 4s) {
        if (!link.was_cut() && clock::now() >= cut_at) {
          link.cut();
          cut_at = clock::now();
        }
        const std::size_t i = calls.size();
        calls.push_back({clock::now()});
        calls[i].ok = !co_await error_of(framex::remote<&hardening_sleep>.with({.timeout = 500ms, .runtime = &rt}).remote(5));
      }
    }, asio::detached);
  }
  io.run();
  int before_cut = 0, lost_in_the_first_second = 0, lost_later = 0;
  for (const auto& c : calls) {
    if (c.ok) continue;
    if (c.started < cut_at) ++before_cut;
    else if (c.started < cut_at + 1s) ++lost_in_the_first_second;
    else ++lost_later;
  }
  std::cout << "[ cut off  ] " << calls.size() << " calls; lost: " << lost_in_the_first_second
            << " started in the first second after the cut, " << lost_later << " later, " << before_cut << " before\n";
  EXPECT_EQ(lost_later, 0) << "new calls still went to the worker cut off more than a second before";
  EXPECT_GT(before_cut + lost_in_the_first_second, 0) << "no call was in flight to the worker cut off: the test proved nothing";
}

// A burst past the worker's per-connection limit: the calls refused as
// `overloaded` never ran, and with a retry allowed they are sent again after a
// short pause, as often as their deadline allows, instead of once at once
// into the same full connection.
TEST(HardeningCaller, CallsRefusedAsOverloadedAreRetriedWithinTheirDeadline) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_CALLS_PER_CONNECTION=4"}, "/proc/self/exe", {"--threads", "4"});
  framex::runtime rt(distributed({w.address()}));
  asio::io_context io;
  int ok = 0;
  std::error_code failed;
  for (int i = 0; i < 40; ++i) {  // 40 calls of 50 ms, 4 at a time: 0.5 s of work
    asio::co_spawn(io, error_of(framex::remote<&hardening_sleep>.with({.timeout = 20s, .runtime = &rt, .retries = 1}).remote(50)),
                   [&](std::exception_ptr, std::error_code ec) {
                     if (ec) failed = ec;
                     else ++ok;
                   });
  }
  io.run();
  EXPECT_EQ(ok, 40) << failed.message();
}

TEST(HardeningCaller, CallsTowardAStalledWorkerWaitWithinTheirTimeoutInsteadOfQueueing) {
  asio::io_context server_io;
  asio::ip::tcp::acceptor acceptor(server_io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket stalled(server_io);
  std::atomic<bool> done{false};
  std::thread server([&] {
    acceptor.accept(stalled);
    std::vector<char> hello(65536);
    (void)stalled.read_some(asio::buffer(hello));
    const unsigned char ok[] = {0x94, 0x01, 0x01, 0xc0, 0x80};  // [1, 1, nil, {}]
    asio::write(stalled, asio::buffer(ok));
    while (!done) std::this_thread::sleep_for(10ms);  // never reads again
  });
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = {"127.0.0.1:" + std::to_string(acceptor.local_endpoint().port())};
  framex::runtime rt(cfg);
  asio::io_context io;
  int timed_out = 0, ended = 0;
  for (int i = 0; i < 100; ++i) {
    asio::co_spawn(io, error_of(framex::remote<&hardening_length>.with({.timeout = 3s, .runtime = &rt}).remote(std::string(1 << 20, 'x'))),
                   [&](std::exception_ptr, std::error_code ec) {
                     ++ended;
                     timed_out += ec == framex::errc::timeout;
                   });
  }
  std::size_t most_filed = 0;
  while (ended < 100) {
    io.run_for(50ms);
    const auto s = framex::stats(rt);
    if (!s.workers.empty()) most_filed = std::max<std::size_t>(most_filed, s.workers[0].in_flight);
  }
  done = true;
  server.join();
  EXPECT_EQ(timed_out, 100);
  EXPECT_LT(most_filed, 50u);  // the rest waited, unsent, instead of piling up in memory
}

}  // namespace

// ---- the siege: every attack at once, while a good caller keeps calling ----
//
// Heavy (thousands of sockets, 40 MB messages): scripts/test.sh runs the
// Siege suites in the optimised build (for the memory bound as a user sees it)
// and under ASan+UBSan, not in the other two.

namespace {

using framex::test::distributed;
using framex::test::run;
using framex::test::worker_process;

/// A caller that calls until told to stop, on its own thread and runtime, and
/// counts what it got.
class good_caller {
 public:
  explicit good_caller(const std::string& address)
      : thread_([this, address] {
          framex::runtime rt(distributed({address}));
          for (int i = 0; !stop_; ++i) {
            try {
              const int sum = run([&]() { return framex::remote<&hardening_add>.with({.timeout = 60s, .runtime = &rt}).remote(i, 1); });
              if (sum == i + 1) {
                ++succeeded_;
              } else {
                record("wrong sum " + std::to_string(sum));
              }
            } catch (const std::exception& e) {
              record(e.what());
            }
            std::this_thread::sleep_for(5ms);
          }
        }) {}
  ~good_caller() { finish(); }

  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] int succeeded() const { return succeeded_; }
  [[nodiscard]] int failed() const { return failed_; }
  [[nodiscard]] std::string first_failure() const {
    std::lock_guard lock(mutex_);
    return first_failure_;
  }

 private:
  void record(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (failed_++ == 0) first_failure_ = what;
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> succeeded_{0};
  std::atomic<int> failed_{0};
  mutable std::mutex mutex_;
  std::string first_failure_;
  std::thread thread_;
};

/// Raises this process's open-file limit as far as allowed; returns it.
rlim_t raise_file_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

TEST(Siege, AWorkerUnderEveryAttackAtOnceKeepsServingAGoodCallerInBoundedMemory) {
  const rlim_t files = raise_file_limit();
  std::vector<std::string> env = framex::test::siege_env();
  env.push_back("FRAMEX_DISTRIBUTED__MESSAGE_TIMEOUT_MS=2000");
  worker_process w(0, env);
  const framex::test::peak_growth growth(w.pid());
  good_caller good(w.address());
  std::vector<std::thread> attackers;
  std::atomic<int> answered_wrong_calls{0};

  attackers.emplace_back([&] {  // random bytes
    std::mt19937_64 random(1124);
    for (int round = 0; round < 40; ++round) {
      raw_peer peer(w.port());
      std::string junk(64 * 1024, '\0');
      for (auto& c : junk) c = static_cast<char>(random());
      boost::system::error_code ec;
      asio::write(peer.socket(), asio::buffer(junk), ec);
    }
  });
  attackers.emplace_back([&] {  // huge declared counts and deep nesting, left open; then millions of tiny elements
    std::vector<std::unique_ptr<raw_peer>> open;
    for (int i = 0; i < 40; ++i) {
      open.push_back(std::make_unique<raw_peer>(w.port()));
      std::string bytes = "\x94\x00\x01\xadhardening_add\x91"s;
      for (int depth = 0; depth < 40; ++depth) bytes += i % 2 == 0 ? "\xdd\xff\xff\xff\xff" : "\xdf\xff\xff\xff\xff";
      open.back()->send(bytes);
    }
    raw_peer deep(w.port());
    boost::system::error_code ec;
    asio::write(deep.socket(), asio::buffer("\x94\x00\x01\xadhardening_add"s + std::string(100'000, '\x91')), ec);
    raw_peer tiny(w.port());
    std::string bytes = "\x94\x00\x01\xadhardening_add\x91\xdd\x02\x62\x5a\x00"s;
    bytes.append(40'000'000, '\xc0');
    asio::write(tiny.socket(), asio::buffer(bytes), ec);
    EXPECT_TRUE(deep.closed_by_worker());
    EXPECT_TRUE(tiny.closed_by_worker());
  });
  attackers.emplace_back([&] {  // thousands of idle connections, as many as this process may open
    std::vector<std::unique_ptr<raw_peer>> idle;
    const int count = static_cast<int>(std::min<rlim_t>(3000, files > 600 ? files - 500 : 100));
    for (int i = 0; i < count; ++i) {
      try {
        idle.push_back(std::make_unique<raw_peer>(w.port()));
      } catch (const std::exception&) {  // the backlog is full: the worker is busy evicting
        std::this_thread::sleep_for(10ms);
      }
    }
    std::this_thread::sleep_for(1s);
  });
  attackers.emplace_back([&] {  // slow writers: a byte every 200 ms, cut off by the 2 s message timeout
    std::vector<std::unique_ptr<raw_peer>> slow;
    for (int i = 0; i < 10; ++i) slow.push_back(std::make_unique<raw_peer>(w.port()));
    const std::string bytes = request_bytes(1, "hardening_add", 1, 2);
    for (std::size_t at = 0; at < bytes.size(); ++at) {
      for (auto& s : slow) {
        boost::system::error_code ec;
        asio::write(s->socket(), asio::buffer(bytes.data() + at, 1), ec);
      }
      std::this_thread::sleep_for(200ms);
    }
    for (auto& s : slow) EXPECT_TRUE(s->closed_by_worker());
  });
  attackers.emplace_back([&] {  // a slow reader pipelining requests with large results
    raw_peer reader(w.port());
    reader.socket().set_option(asio::socket_base::receive_buffer_size(4096));
    std::string burst;
    for (std::uint32_t id = 1; id <= 400; ++id) burst += request_bytes(id, "hardening_blob", 1u << 20);
    boost::system::error_code ec;
    asio::write(reader.socket(), asio::buffer(burst), ec);
    reader.socket().non_blocking(true);
    std::vector<char> sip(4096);
    for (int i = 0; i < 500; ++i) {  // at most 4 KiB every 10 ms for 5 s, then it goes away
      reader.socket().read_some(asio::buffer(sip), ec);
      if (ec && ec != asio::error::would_block) break;
      std::this_thread::sleep_for(10ms);
    }
  });
  attackers.emplace_back([&] {  // msgid reuse, wrong types and counts, unknown functions
    raw_peer peer(w.port());
    std::string burst;
    for (int i = 0; i < 2000; ++i) burst += request_bytes(0, "hardening_sleep", 1);
    burst += request_bytes(1, "hardening_add", std::string("two"), 2);
    burst += request_bytes(2, "hardening_add", 1, 2, 3);
    burst += request_bytes(3, "no_such_function");
    burst += std::string("\x94\x00\x04\xadhardening_add\x2a", 18);  // params not an array
    peer.send(burst);
    while (auto r = peer.receive()) {
      const auto id = r->get().via.array.ptr[1].as<std::uint32_t>();
      if (id >= 1 && id <= 4 && r->get().via.array.ptr[2].type != msgpack::type::NIL) {
        if (++answered_wrong_calls == 4) break;
      }
    }
  });

  for (auto& a : attackers) a.join();
  good.finish();
  EXPECT_EQ(good.failed(), 0) << good.first_failure();
  EXPECT_GE(good.succeeded(), 10);
  EXPECT_EQ(answered_wrong_calls, 4);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
  std::cout << "[ siege    ] good calls " << good.succeeded() << ", worker peak RSS " << growth.mib() << " MiB above "
            << growth.at_rest() << " at rest\n";
}

// Slow readers on many connections: each pipelines requests for 1 MiB
// answers and never reads them. The answers of all connections share one
// budget (`worker.max_output_total_bytes`), and the memory goes back once they
// are gone, round after round.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool gives_memory_back = false;
#else
constexpr bool gives_memory_back = true;
#endif

TEST(SiegeOutput, SlowReadersOnManyConnectionsShareOneBudgetAndGiveTheMemoryBack) {
  raise_file_limit();
  worker_process w(0, framex::test::siege_env());
  const long at_rest = framex::test::rss_mib(w.pid());
  good_caller good(w.address());
  long after_last_round = 0;
  for (const int connections : {32, 96, 300}) {
    {
      std::vector<std::unique_ptr<raw_peer>> readers;
      std::string burst;
      for (std::uint32_t id = 1; id <= 80; ++id) burst += request_bytes(id, "hardening_blob", 1u << 20);
      for (int i = 0; i < connections; ++i) {
        readers.push_back(std::make_unique<raw_peer>(w.port()));
        readers.back()->socket().set_option(asio::socket_base::receive_buffer_size(4096));
        boost::system::error_code ec;
        asio::write(readers.back()->socket(), asio::buffer(burst), ec);
      }
      std::this_thread::sleep_for(4s);  // the attack lasts this long, then its connections go
    }
    // The memory goes back: within 20 s, the worker is near where it rested.
    // (Under ASan the allocator keeps freed memory for reuse by design: there
    // only the peak is bounded.)
    const bool back = gives_memory_back && eventually([&] {
      return framex::test::rss_mib(w.pid()) - at_rest <= framex::test::siege_bound_mib / 4;
    }, 20s);
    const long now = framex::test::rss_mib(w.pid());
    const long peak = peak_rss_mib(w.pid());
    std::cout << "[ siege    ] " << connections << " slow readers: worker peak RSS " << peak << " MiB, " << now
              << " MiB after (" << at_rest << " at rest), good caller " << good.succeeded() << " calls, "
              << good.failed() << " errors " << good.first_failure() << "\n";
    EXPECT_LT(peak - at_rest, framex::test::siege_bound_mib) << connections << " connections";
    if (gives_memory_back) {
      EXPECT_TRUE(back) << "the memory stayed after " << connections << " connections: " << now << " MiB";
    }
    after_last_round = now;
  }
  good.finish();
  EXPECT_EQ(good.failed(), 0) << good.first_failure();
  EXPECT_GE(good.succeeded(), 10);
  EXPECT_GT(after_last_round, 0);
}

// One peer floods from 16 connections, each keeping 1,024 slow calls
// outstanding for 15 s: the worker's 10,000 calls are not all its own, and a
// good caller, and a brand-new connection, are served meanwhile.
TEST(SiegeAdmission, OnePeerKeepingSixteenThousandCallsOutstandingLeavesRoomForAGoodCaller) {
  worker_process w(0, framex::test::siege_env(), "/proc/self/exe", {"--threads", "2"});
  good_caller good(w.address());
  std::atomic<bool> stop{false};
  std::atomic<long> flood_refused{0}, flood_answered{0};
  std::array<std::thread, 16> flood;
  for (auto& connection : flood) {
    connection = std::thread([&] {
      raw_peer peer(w.port());
      std::string burst;
      std::uint32_t next = 1;
      for (; next <= 1024; ++next) burst += request_bytes(next, "hardening_sleep", 20);
      peer.send(burst);
      while (!stop) {  // each answer is replaced by a new call: 1,024 stay outstanding
        auto r = peer.receive();
        if (!r) break;
        if (r->get().via.array.ptr[2].type != msgpack::type::NIL) {
          ++flood_refused;
          std::this_thread::sleep_for(1ms);
        } else {
          ++flood_answered;
        }
        peer.request(next++, "hardening_sleep", 20);
      }
      peer.socket().close();
    });
  }
  std::this_thread::sleep_for(15s);
  int newcomer = 0;
  {
    framex::runtime rt(distributed({w.address()}));
    newcomer = run([&]() { return framex::remote<&hardening_add>.with({.timeout = 60s, .runtime = &rt}).remote(40, 2); });
  }
  stop = true;
  for (auto& t : flood) t.join();
  good.finish();
  std::cout << "[ siege    ] 16 x 1024 outstanding: good caller " << good.succeeded() << " calls, " << good.failed()
            << " errors; the flood " << flood_answered << " answered, " << flood_refused << " refused\n";
  EXPECT_EQ(good.failed(), 0) << good.first_failure();
  EXPECT_GE(good.succeeded(), 10);
  EXPECT_EQ(newcomer, 42);
  EXPECT_GT(flood_refused, 0);  // beyond its share, the flood was refused
}

}  // namespace
