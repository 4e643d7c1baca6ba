// Distributed mode against real worker processes on 127.0.0.1: this test
// binary started with --framex-worker (see tests/main.cpp), on ephemeral ports,
// stopped or killed by PID. Time bounds are generous functional limits (does a
// call end early), never performance figures.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/describe.hpp>

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "ports.hpp"
#include "raw_peer.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

// ---- the functions the workers serve (global names: their wire names) ----

enum class color { red, green, blue };
BOOST_DESCRIBE_ENUM(color, red, green, blue)

struct inner {
  std::string name;
  std::vector<double> values;
  bool operator==(const inner&) const = default;
};
BOOST_DESCRIBE_STRUCT(inner, (), (name, values))

struct everything {
  bool flag = false;
  std::int8_t small = 0;
  std::uint64_t big = 0;
  std::int64_t negative = 0;
  float ratio = 0;
  double precise = 0;
  std::string text;
  std::vector<std::byte> blob;
  std::vector<int> numbers;
  std::map<std::string, int> counts;
  std::unordered_map<int, std::string> names;
  std::tuple<int, std::string, bool> triple;
  std::pair<std::string, double> pair;
  std::optional<int> some;
  std::optional<int> none;
  std::variant<int, std::string, inner> choice;
  color hue = color::red;
  inner nested;
  std::vector<inner> list;
  std::array<std::uint16_t, 3> fixed{};
  bool operator==(const everything&) const = default;
};
BOOST_DESCRIBE_STRUCT(everything, (),
                      (flag, small, big, negative, ratio, precise, text, blob, numbers, counts, names, triple, pair,
                       some, none, choice, hue, nested, list, fixed))

everything echo_everything(everything e) { return e; }

int add(int a, int b) { return a + b; }
int sleep_then(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// Creates `path` once the worker runs it, then sleeps: a test waits for the
// file to know the call is running, not merely sent.
int mark_then_sleep(std::string path, int ms) {
  std::ofstream{path} << ::getpid();
  return sleep_then(ms);
}
int throws_invalid(int x) {
  if (x < 0) throw std::invalid_argument("x must be positive");
  return x;
}
std::string big_string(std::uint64_t n) { return std::string(n, 'x'); }
std::uint64_t length_of(const std::string& s) { return s.size(); }
int worker_pid() { return static_cast<int>(::getpid()); }
std::atomic<int> void_calls{0};
void count_call(std::string) { ++void_calls; }
int void_calls_seen() { return void_calls.load(); }

class Counter {
 public:
  int base = 0;
  int add(int x) { return base += x; }
  static int twice(int x) { return 2 * x; }
  asio::awaitable<std::string> describe(std::string prefix) const { co_return prefix + std::to_string(base); }
};
BOOST_DESCRIBE_STRUCT(Counter, (), (base))

asio::awaitable<int> async_square(int x) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
  co_await t.async_wait(asio::use_awaitable);
  co_return x * x;
}

std::atomic<int> async_cancellations{0};
asio::awaitable<int> async_sleep(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  try {
    co_await t.async_wait(asio::use_awaitable);
  } catch (const boost::system::system_error&) {
    ++async_cancellations;  // the caller gave up, and the worker was told
    throw;
  }
  co_return ms;
}
int cancellations_seen() { return async_cancellations.load(); }

// A job for a worker with a GPU: it counts how many run at once.
std::atomic<int> gpu_jobs_running{0}, gpu_jobs_most{0};
int gpu_job(int ms) {
  const int now = ++gpu_jobs_running;
  for (int most = gpu_jobs_most.load(); now > most && !gpu_jobs_most.compare_exchange_weak(most, now);) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  --gpu_jobs_running;
  return static_cast<int>(::getpid());
}
int gpu_jobs_at_once() { return gpu_jobs_most.load(); }
const bool gpu_job_needs_a_gpu = framex::require<&gpu_job>({.gpu = 1});

// Blocking functions for a pool kept busy: sleepers say how many are asleep
// (asked through an async function, served on the I/O thread), and a cheap
// function marked `inline_ok` answers on the I/O thread too.
std::atomic<int> sleeping_now{0};
int sleep_in_pool(int ms) {
  ++sleeping_now;
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  --sleeping_now;
  return ms;
}
asio::awaitable<int> sleepers() { co_return sleeping_now.load(); }
int cheap_answer(int x) { return x + 1; }
template <>
inline constexpr bool framex::inline_ok<&cheap_answer> = true;

// A function whose signature the skew worker (tests/skew_worker.cpp) defines
// differently under the same wire name.
template <>
inline constexpr std::string_view framex::wire_name<&add> = "test.add";

namespace {

using framex::test::clock;
using framex::test::error_of;
using framex::test::eventually;
using framex::test::run;
using framex::test::runs_to_completion;
using framex::test::since;
using framex::test::worker_process;
using namespace asio::experimental::awaitable_operators;

using framex::test::distributed;

class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    first = new worker_process();
    second = new worker_process();
  }
  static void TearDownTestSuite() {
    delete first;
    delete second;
  }
  static inline worker_process* first = nullptr;
  static inline worker_process* second = nullptr;

  framex::runtime rt{distributed({first->address(), second->address()})};
  framex::runtime_scope scope{rt};
};

// ---- every call shape, every type family ----

TEST_F(Distributed, AFreeFunctionRunsInAWorkerProcess) {
  const auto [sum, pid] = run([]() -> asio::awaitable<std::tuple<int, int>> {
    co_return std::tuple{co_await framex::remote<&add>.remote(20, 22), co_await framex::remote<&worker_pid>.remote()};
  });
  EXPECT_EQ(sum, 42);
  EXPECT_TRUE(pid == first->pid() || pid == second->pid()) << pid;
}

TEST_F(Distributed, MemberStaticAsyncAndVoidFunctionsKeepTheirCallSites) {
  const auto [added, twice, described, squared, voids] =
      run([]() -> asio::awaitable<std::tuple<int, int, std::string, int, int>> {
        Counter c;
        c.base = 10;
        const int added = co_await framex::remote<&Counter::add>.remote(c, 5);  // runs on a copy
        const int twice = co_await framex::remote<&Counter::twice>.remote(21);
        const std::string described = co_await framex::remote<&Counter::describe>.remote(c, "base=");
        const int squared = co_await framex::remote<&async_square>.remote(12);
        co_await framex::remote<&count_call>.remote("x");  // a void result
        co_return std::tuple{added, twice, described, squared, c.base};
      });
  EXPECT_EQ(added, 15);
  EXPECT_EQ(twice, 42);
  EXPECT_EQ(described, "base=10");
  EXPECT_EQ(squared, 144);
  EXPECT_EQ(voids, 10);  // the caller's object is untouched: the worker had a copy
}

TEST_F(Distributed, EveryTypeFamilyRoundTripsThroughAWorker) {
  everything e;
  e.flag = true;
  e.small = -128;
  e.big = UINT64_MAX;
  e.negative = INT64_MIN;
  e.ratio = 0.5F;
  e.precise = 3.141592653589793;
  e.text = "héllo\0world";
  e.blob = {std::byte{0}, std::byte{0xff}, std::byte{0x80}};
  e.numbers = {1, -2, 3};
  e.counts = {{"a", 1}, {"b", 2}};
  e.names = {{1, "one"}, {2, "two"}};
  e.triple = {7, "seven", true};
  e.pair = {"pi", 3.14};
  e.some = 5;
  e.choice = inner{"in a variant", {1.5}};
  e.hue = color::blue;
  e.nested = {"nested", {0.25, -1}};
  e.list = {{"a", {}}, {"b", {2}}};
  e.fixed = {1, 2, 65535};
  const everything back = run([&]() { return framex::remote<&echo_everything>.remote(e); });
  EXPECT_EQ(back, e);
}

// ---- concurrency ----

TEST_F(Distributed, ManyCallsInFlightAllCompleteWithTheirOwnResults) {
  constexpr int calls = 2000;
  asio::io_context io;
  int right = 0;
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(io, framex::remote<&add>.remote(i, i), [&, i](std::exception_ptr e, int r) {
      if (!e && r == 2 * i) ++right;
    });
  }
  io.run();
  EXPECT_EQ(right, calls);
}

TEST_F(Distributed, ResponsesComeBackOutOfOrder) {
  // One connection, so every call shares it: fast calls must overtake a slow one.
  framex::config cfg = distributed({first->address()});
  framex::runtime one(cfg);
  asio::io_context io;
  std::vector<int> finished;
  asio::co_spawn(io, framex::remote<&sleep_then>.with({.runtime = &one}).remote(300),
                 [&](std::exception_ptr, int r) { finished.push_back(r); });
  for (int i = 1; i <= 3; ++i) {
    asio::co_spawn(io, framex::remote<&sleep_then>.with({.runtime = &one}).remote(i),
                   [&](std::exception_ptr, int r) { finished.push_back(r); });
  }
  io.run();
  ASSERT_EQ(finished.size(), 4u);
  EXPECT_EQ(finished.back(), 300);
}

// ---- errors ----

TEST_F(Distributed, ARemoteExceptionArrivesWithItsTypeAndMessage) {
  try {
    run([]() { return framex::remote<&throws_invalid>.remote(-1); });
    FAIL() << "no exception";
  } catch (const framex::remote_error& e) {
    EXPECT_EQ(e.code(), framex::errc::exception);
    EXPECT_EQ(e.remote_type(), "std::invalid_argument");
    EXPECT_EQ(e.remote_message(), "x must be positive");
  }
}

TEST_F(Distributed, ATimeoutEndsTheWaitAndTheWorkerIsToldToDropTheCall) {
  const int before = run([]() { return framex::remote<&cancellations_seen>.with({}).remote(); });
  const auto start = clock::now();
  const auto ec = run([]() { return error_of(framex::remote<&async_sleep>.with({.timeout = 50ms}).remote(5000)); });
  EXPECT_EQ(ec, framex::errc::timeout);
  EXPECT_LT(since(start), 2000ms);
  // Each worker counts the cancellations it saw; the call went to one of them.
  int after = 0;
  for (int i = 0; i < 100 && after <= before; ++i) {
    std::this_thread::sleep_for(10ms);
    after = 0;
    for (auto* w : {first, second}) {
      framex::runtime single(distributed({w->address()}));
      after += run([&]() { return framex::remote<&cancellations_seen>.with({.runtime = &single}).remote(); });
    }
  }
  EXPECT_GT(after, 0);
}

TEST_F(Distributed, CancellingTheAwaitingCoroutineEndsTheCall) {
  const auto start = clock::now();
  const auto result = run([]() -> asio::awaitable<std::variant<int, std::monostate>> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
    auto r = co_await (framex::remote<&sleep_then>.remote(3000) || timer.async_wait(asio::use_awaitable));
    if (r.index() == 0) co_return std::get<0>(r);
    co_return std::monostate{};
  });
  EXPECT_EQ(result.index(), 1u);
  EXPECT_LT(since(start), 2000ms);
}

TEST_F(Distributed, AnOversizedRequestFailsWithTooLargeAndTheRuntimeCarriesOn) {
  framex::config cfg = distributed({first->address()});
  cfg.distributed.max_message_size = 1 << 20;
  framex::runtime small(cfg);
  const auto ec = run([&]() {
    return error_of(framex::remote<&length_of>.with({.runtime = &small}).remote(std::string(2 << 20, 'y')));
  });
  EXPECT_EQ(ec, framex::errc::too_large);
  EXPECT_EQ(run([&]() { return framex::remote<&length_of>.with({.runtime = &small}).remote("fits"); }), 4u);
}

TEST_F(Distributed, AnOversizedResultFailsWithTooLargeFromTheWorker) {
  worker_process limited(0, {"FRAMEX_DISTRIBUTED__MAX_MESSAGE_SIZE=1048576"});
  framex::runtime via(distributed({limited.address()}));
  const auto ec = run([&]() { return error_of(framex::remote<&big_string>.with({.runtime = &via}).remote(2 << 20)); });
  EXPECT_EQ(ec, framex::errc::too_large);
  // The caller learnt the worker's limit at hello, so it refuses big requests itself.
  const auto request_ec = run([&]() {
    return error_of(framex::remote<&length_of>.with({.runtime = &via}).remote(std::string(2 << 20, 'y')));
  });
  EXPECT_EQ(request_ec, framex::errc::too_large);
  EXPECT_EQ(run([&]() { return framex::remote<&big_string>.with({.runtime = &via}).remote(10); }).size(), 10u);
}

TEST(DistributedFailures, AWorkerKilledMidCallFailsItsCallsWithWorkerLost) {
  worker_process doomed;
  framex::runtime rt(distributed({doomed.address()}));
  asio::io_context io;
  std::vector<std::error_code> errors;
  for (int i = 0; i < 8; ++i) {
    asio::co_spawn(io, error_of(framex::remote<&sleep_then>.with({.runtime = &rt}).remote(5000)),
                   [&](std::exception_ptr, std::error_code ec) { errors.push_back(ec); });
  }
  std::thread killer([&] {
    // Once all eight are in flight on the worker's connection.
    for (int i = 0; i < 3000; ++i) {
      const auto s = framex::stats(rt);
      if (!s.workers.empty() && s.workers[0].in_flight == 8) break;
      std::this_thread::sleep_for(10ms);
    }
    doomed.kill_now();
  });
  io.run();
  killer.join();
  ASSERT_EQ(errors.size(), 8u);
  for (const auto& ec : errors) EXPECT_EQ(ec, framex::errc::worker_lost);
}

TEST(DistributedFailures, TheCallerReconnectsToARestartedWorker) {
  const std::uint16_t port = framex::test::free_port();  // the restarted worker takes it again
  framex::config cfg;
  {
    worker_process w(port);
    cfg = distributed({w.address()});
    cfg.distributed.connect_timeout = 2s;  // how long the call after the kill waits for the worker to come back
    framex::runtime rt(cfg);
    EXPECT_EQ(run([&]() { return framex::remote<&add>.with({.runtime = &rt}).remote(1, 2); }), 3);
    w.kill_now();
    EXPECT_EQ(run([&]() { return error_of(framex::remote<&add>.with({.runtime = &rt}).remote(1, 2)); }),
              framex::errc::worker_lost);
    worker_process again(port);
    int result = 0;
    for (int attempt = 0; attempt < 50 && result == 0; ++attempt) {  // the backoff is at most 1 s
      try {
        result = run([&]() { return framex::remote<&add>.with({.runtime = &rt}).remote(2, 3); });
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), framex::errc::worker_lost);
        std::this_thread::sleep_for(50ms);
      }
    }
    EXPECT_EQ(result, 5);
  }
}

// A worker that accepts but never answers the hello holds no call while
// another answers: the calls waiting for its connection go to the first that
// is ready, not after the connect timeout.
TEST(DistributedFailures, AWorkerThatNeverAnswersTheHelloDelaysNoCall) {
  framex::test::silent_port hung;
  worker_process live;
  framex::config cfg = distributed({hung.address(), live.address()});
  cfg.distributed.connect_timeout = 60s;
  framex::runtime rt(cfg);
  asio::io_context io;
  int answered = 0;
  for (int i = 0; i < 8; ++i) {  // spread over both connections as they are made
    asio::co_spawn(io, framex::remote<&add>.with({.runtime = &rt}).remote(i, 1), [&](std::exception_ptr e, int) { answered += !e; });
  }
  EXPECT_TRUE(runs_to_completion(io, 1, 30s)) << "calls waited for the silent worker's hello";
  EXPECT_EQ(answered, 8);
}

TEST(DistributedFailures, NoReachableWorkerMeansWorkerLostNotAHang) {
  framex::test::refusing_port nobody;
  framex::config cfg = distributed({nobody.address()});
  cfg.distributed.connect_timeout = 2s;  // how long a call without a deadline waits for a reconnect
  framex::runtime rt(cfg);
  const auto ec = run([&]() { return error_of(framex::remote<&add>.with({.runtime = &rt}).remote(1, 2)); });
  EXPECT_EQ(ec, framex::errc::worker_lost);
}

TEST(DistributedFailures, AnUnknownFunctionAndASkewedSignatureAreReportedByName) {
  worker_process skewed(0, {}, FRAMEX_SKEW_WORKER);
  framex::runtime rt(distributed({skewed.address()}));
  try {
    run([&]() { return framex::remote<&add>.with({.runtime = &rt}).remote(1, 2); });
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::signature_mismatch);
    EXPECT_NE(std::string(e.what()).find("test.add"), std::string::npos) << e.what();
  }
  try {
    run([&]() { return framex::remote<&sleep_then>.with({.runtime = &rt}).remote(1); });
    FAIL() << "no exception";
  } catch (const framex::remote_error& e) {
    EXPECT_EQ(e.code(), framex::errc::unknown_function);
    EXPECT_NE(e.remote_message().find("sleep_then"), std::string::npos) << e.remote_message();
  }
}

// ---- the wire, byte for byte, from a client that is not framex ----

std::vector<unsigned char> exchange(std::uint16_t port, const std::vector<unsigned char>& request, std::size_t expect) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(request));
  std::vector<unsigned char> reply(expect);
  asio::read(s, asio::buffer(reply));
  return reply;
}

TEST_F(Distributed, TheResponseBytesAreExactlyMsgpackRpc) {
  // [0, 1, "test.add", [20, 22]]  ->  [1, 1, nil, 42]
  const std::vector<unsigned char> request{0x94, 0x00, 0x01, 0xa8, 't', 'e', 's', 't', '.', 'a', 'd', 'd', 0x92, 0x14, 0x16};
  EXPECT_EQ(exchange(first->port(), request, 5), (std::vector<unsigned char>{0x94, 0x01, 0x01, 0xc0, 0x2a}));
}

TEST_F(Distributed, BadArgumentsAreAnErrorNamingTheFunctionAndTheArgument) {
  // [0, 7, "test.add", [1, "two"]]
  const std::vector<unsigned char> request{0x94, 0x00, 0x07, 0xa8, 't', 'e', 's', 't', '.', 'a', 'd', 'd',
                                           0x92, 0x01, 0xa3, 't', 'w', 'o'};
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), first->port()});
  asio::write(s, asio::buffer(request));
  std::vector<char> got(512);
  const std::size_t n = s.read_some(asio::buffer(got));
  const std::string text(got.data(), n);
  EXPECT_EQ(static_cast<unsigned char>(text[0]), 0x94);
  EXPECT_EQ(text[2], 0x07);
  EXPECT_NE(text.find("test.add: argument 2: expected i32, got str"), std::string::npos) << text;
  EXPECT_NE(text.find("framex.bad_arguments"), std::string::npos);
}

TEST_F(Distributed, MalformedBytesCloseThatConnectionAndTheWorkerServesOthers) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), first->port()});
  const unsigned char garbage[] = {0xc1, 0xc1, 0xc1, 0xc1};  // 0xc1 is never valid msgpack
  asio::write(s, asio::buffer(garbage));
  char byte;
  boost::system::error_code ec;
  asio::read(s, asio::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  EXPECT_EQ(run([&]() { return framex::remote<&add>.remote(2, 2); }), 4);
}

TEST(DistributedRequest, TheRequestBytesAreExactlyMsgpackRpc) {
  // A stand-in worker that answers the hello, then records the next request.
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<unsigned char> captured;
  std::thread server([&] {
    asio::ip::tcp::socket s(io);
    acceptor.accept(s);
    std::vector<unsigned char> buf(65536);
    std::size_t n = s.read_some(asio::buffer(buf));  // the hello: [0, 1, "framex.hello", [...]]
    ASSERT_GT(n, 3u);
    ASSERT_EQ(buf[2], 0x01);
    const unsigned char hello_reply[] = {0x94, 0x01, 0x01, 0xc0, 0x80};  // [1, 1, nil, {}]
    asio::write(s, asio::buffer(hello_reply));
    n = s.read_some(asio::buffer(buf));
    captured.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    const unsigned char reply[] = {0x94, 0x01, 0x02, 0xc0, 0x2a};  // [1, 2, nil, 42]
    asio::write(s, asio::buffer(reply));
  });
  framex::runtime rt(distributed({"127.0.0.1:" + std::to_string(acceptor.local_endpoint().port())}));
  EXPECT_EQ(run([&]() { return framex::remote<&add>.with({.runtime = &rt}).remote(20, 22); }), 42);
  server.join();
  // [0, 2, "test.add", [20, 22]]
  EXPECT_EQ(captured, (std::vector<unsigned char>{0x94, 0x00, 0x02, 0xa8, 't', 'e', 's', 't', '.', 'a', 'd', 'd', 0x92,
                                                   0x14, 0x16}));
}

}  // namespace

namespace {

TEST(DistributedFailures, AFullWorkerRefusesCallsWithOverloaded) {
  worker_process small(0, {"FRAMEX_WORKER__MAX_QUEUED=2"});
  framex::runtime rt(distributed({small.address()}));
  asio::io_context io;
  int ok = 0, overloaded = 0;
  for (int i = 0; i < 6; ++i) {
    asio::co_spawn(io, error_of(framex::remote<&sleep_then>.with({.runtime = &rt}).remote(200)),
                   [&](std::exception_ptr, std::error_code ec) {
                     if (!ec) ++ok;
                     if (ec == framex::errc::overloaded) ++overloaded;
                   });
  }
  io.run();
  // At least the two the worker can hold run; what arrives while they do is
  // refused (on a loaded machine a late call may find room again).
  EXPECT_GE(ok, 2);
  EXPECT_GE(overloaded, 1);
  EXPECT_EQ(ok + overloaded, 6);
}

}  // namespace

namespace {

TEST(DistributedConnections, SeveralConnectionsToOneWorkerShareTheCalls) {
  worker_process w;
  framex::config cfg = distributed({w.address()});
  cfg.distributed.connections_per_worker = 3;
  framex::runtime rt(cfg);
  asio::io_context io;
  int right = 0;
  for (int i = 0; i < 300; ++i) {
    asio::co_spawn(io, framex::remote<&sleep_then>.with({.runtime = &rt}).remote(i % 3),
                   [&, i](std::exception_ptr e, int r) { right += !e && r == i % 3; });
  }
  io.run();
  EXPECT_EQ(right, 300);
  const auto s = framex::stats(rt);
  ASSERT_EQ(s.workers.size(), 3u);
  for (const auto& c : s.workers) {
    EXPECT_EQ(c.address, w.address());
    EXPECT_EQ(c.state, "ready");
    EXPECT_GT(c.completed, 0u);  // each connection carried some of the calls
  }
}

}  // namespace

namespace {

// ---- draining ----

// The messages a raw peer gets until the worker closes the connection.
std::vector<msgpack::object_handle> everything_until_closed(framex::test::raw_peer& p) {
  std::vector<msgpack::object_handle> out;
  while (auto m = p.receive()) out.push_back(std::move(*m));
  return out;
}

// Sends `framex.ping` as request `msgid` and reads up to its answer, which the
// worker gives on its I/O thread: it has then read every request sent before.
// Returns the other messages read on the way.
std::vector<msgpack::object_handle> read_through_ping(framex::test::raw_peer& p, std::uint32_t msgid) {
  p.request(msgid, "framex.ping");
  std::vector<msgpack::object_handle> others;
  while (auto m = p.receive()) {
    const auto& a = m->get().via.array;
    if (a.ptr[0].as<int>() == 1 && a.ptr[1].as<std::uint32_t>() == msgid) return others;
    others.push_back(std::move(*m));
  }
  ADD_FAILURE() << "the worker closed the connection before answering framex.ping";
  return others;
}

// The worker's answers: msgid -> error code (0 for a result), and the results.
struct answers {
  std::map<std::uint32_t, std::uint64_t> codes;
  std::map<std::uint32_t, int> results;
  void add(const msgpack::object_handle& m) {
    const auto& a = m.get().via.array;
    if (a.ptr[0].as<int>() != 1) return;  // a notification
    const auto id = a.ptr[1].as<std::uint32_t>();
    codes[id] = framex::test::error_code_of(m);
    if (codes[id] == 0) results[id] = a.ptr[3].as<int>();
  }
};

// A worker in this process with one pool thread: a second blocking call waits behind the first.
framex::config one_thread_worker() {
  framex::config cfg;
  cfg.worker.listen = "127.0.0.1:0";
  cfg.worker.threads = 1;
  return cfg;
}

TEST(DistributedDrain, ADrainingWorkerTellsItsCallersRefusesNewCallsAndFinishesWhatItHolds) {
  framex::worker w(one_thread_worker());
  framex::test::raw_peer p(w.port());
  p.request(1, "sleep_then", 300);  // running
  p.request(2, "sleep_then", 300);  // queued behind it
  answers got;
  for (auto& m : read_through_ping(p, 9)) got.add(m);
  std::thread drain([&] { w.drain(20s); });
  std::optional<msgpack::object_handle> n;  // [2, "framex.draining", [timeout_ms]]
  while ((n = p.receive()) && n->get().via.array.ptr[0].as<int>() == 1) got.add(*n);
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(n->get().via.array.size, 3u);
  EXPECT_EQ(n->get().via.array.ptr[0].as<int>(), 2);
  EXPECT_EQ(n->get().via.array.ptr[1].as<std::string>(), "framex.draining");
  p.request(3, "sleep_then", 1);  // after the notification: refused, for another worker to take
  for (auto& m : everything_until_closed(p)) got.add(m);
  drain.join();
  EXPECT_EQ(got.codes[3], static_cast<std::uint64_t>(framex::errc::overloaded));
  EXPECT_EQ(got.results[1], 300);  // both calls it held were finished and answered
  EXPECT_EQ(got.results[2], 300);
}

TEST(DistributedDrain, WhatIsLeftAtTheDrainTimeoutIsCancelled) {
  framex::worker w(one_thread_worker());
  framex::test::raw_peer p(w.port());
  p.request(1, "sleep_then", 1000);  // running past the drain timeout: it finishes
  p.request(2, "sleep_then", 1000);  // still queued at the timeout: cancelled
  answers got;
  for (auto& m : read_through_ping(p, 9)) got.add(m);
  const auto start = clock::now();
  w.drain(200ms);
  EXPECT_LT(since(start), 10s);
  for (auto& m : everything_until_closed(p)) got.add(m);
  EXPECT_EQ(got.codes.at(1), 0u);
  EXPECT_EQ(got.codes.at(2), static_cast<std::uint64_t>(framex::errc::cancelled));
}

TEST(DistributedDrain, ACallerSeesItsWorkerDrainingAndItsCallInFlightFinishes) {
  worker_process w;
  framex::runtime rt(distributed({w.address()}));
  asio::io_context io;
  int result = 0;
  const framex::test::temp_dir dir;
  const std::string running = dir.at("running");
  asio::co_spawn(io, framex::remote<&mark_then_sleep>.with({.timeout = 30s, .runtime = &rt}).remote(running, 1500),
                 [&](std::exception_ptr e, int r) { result = e ? -1 : r; });
  std::thread caller([&] { io.run(); });
  // Running on the worker, not merely sent: a request still unread when the
  // drain begins is refused, for another worker to take.
  EXPECT_TRUE(eventually([&] { return std::filesystem::exists(running); }));
  ::kill(w.pid(), SIGTERM);
  EXPECT_TRUE(eventually([&] { return framex::stats(rt).workers.at(0).state == "draining"; }));
  caller.join();
  EXPECT_EQ(result, 1500);
}

// Two workers, each drained (SIGTERM) and restarted on its address in turn,
// under steady calls with one retry: no call fails, and each drained worker
// exits 0.
TEST(DistributedDrain, ARollingRestartUnderLoadLosesNoCall) {
  const auto port_a = framex::test::free_port(), port_b = framex::test::free_port();  // each restarted worker takes its own again
  auto a = std::make_unique<worker_process>(port_a);
  auto b = std::make_unique<worker_process>(port_b);
  framex::runtime rt(distributed({a->address(), b->address()}));
  framex::test::steady_load load(8, [&]() -> asio::awaitable<void> {
    co_await framex::remote<&sleep_then>.with({.timeout = 20s, .runtime = &rt, .retries = 1}).remote(10);
  });
  const auto exited_cleanly = [](int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; };
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  EXPECT_TRUE(exited_cleanly(a->stop())) << "a drained worker exits 0";
  a = std::make_unique<worker_process>(port_a);
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  EXPECT_TRUE(exited_cleanly(b->stop()));
  b = std::make_unique<worker_process>(port_b);
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  load.stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

}  // namespace

namespace {

// ---- health ----

// A worker stopped with SIGSTOP keeps its connections open and answers
// nothing: only the heartbeat can tell.
struct DistributedHealth : ::testing::Test {
  static framex::config with_heartbeat(std::vector<std::string> workers) {
    auto cfg = distributed(std::move(workers));
    cfg.distributed.heartbeat = 300ms;
    return cfg;
  }
  static void call_each_once(framex::runtime& rt) {  // connects to every worker
    for (int i = 0; i < 4; ++i) EXPECT_EQ(run([&]() { return framex::remote<&add>.with({.runtime = &rt}).remote(1, 2); }), 3);
  }
};

TEST_F(DistributedHealth, ACallToAHungWorkerFailsWithWorkerLostLongBeforeItsTimeout) {
  worker_process w;
  framex::runtime rt(with_heartbeat({w.address()}));
  call_each_once(rt);
  EXPECT_EQ(framex::stats(rt).workers.at(0).state, "ready");
  EXPECT_GE(framex::stats(rt).workers.at(0).last_heard_ms, 0);
  asio::io_context io;
  std::error_code ec;
  asio::co_spawn(io, error_of(framex::remote<&sleep_then>.with({.timeout = 60s, .runtime = &rt}).remote(3000)),
                 [&](std::exception_ptr, std::error_code e) { ec = e; });
  std::thread caller([&] { io.run(); });
  // Sent: the worker's I/O thread answers pings while its pool runs the call.
  EXPECT_TRUE(eventually([&] { return framex::stats(rt).workers.at(0).in_flight == 1; }));
  ::kill(w.pid(), SIGSTOP);
  const auto start = clock::now();
  caller.join();
  ::kill(w.pid(), SIGCONT);
  EXPECT_EQ(ec, framex::errc::worker_lost);
  EXPECT_LT(since(start), 20s);  // a few heartbeats, not the call's 60 s
  EXPECT_EQ(framex::stats(rt).workers.at(0).state, "unhealthy");
}

TEST_F(DistributedHealth, CallsToAHungWorkerMoveToAnotherWithOneRetry) {
  worker_process hung, healthy;
  framex::runtime rt(with_heartbeat({hung.address(), healthy.address()}));
  call_each_once(rt);
  ::kill(hung.pid(), SIGSTOP);
  const auto start = clock::now();
  asio::io_context io;
  int ok = 0;
  for (int i = 0; i < 8; ++i) {
    asio::co_spawn(io, framex::remote<&sleep_then>.with({.timeout = 60s, .runtime = &rt, .retries = 1}).remote(i),
                   [&, i](std::exception_ptr e, int r) { ok += !e && r == i; });
  }
  io.run();
  ::kill(hung.pid(), SIGCONT);
  EXPECT_EQ(ok, 8);
  EXPECT_LT(since(start), 20s);
}

}  // namespace

namespace {

// ---- discovery ----

// This test process's own /etc/hosts: a copy it rewrites, bind-mounted over
// /etc/hosts in a mount namespace of its own, so the machine's file is never
// touched and no DNS server is needed.
class private_hosts {
 public:
  private_hosts() {
    char pattern[] = "/tmp/framex-hosts-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    std::ifstream in("/etc/hosts");
    std::stringstream original;
    original << in.rdbuf();
    original_ = original.str();
    set({});
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount((dir_ / "hosts").c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) != 0) {
      error_ = std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~private_hosts() {
    if (mounted_) ::umount2("/etc/hosts", MNT_DETACH);
    std::filesystem::remove_all(dir_);
  }
  private_hosts(const private_hosts&) = delete;
  private_hosts& operator=(const private_hosts&) = delete;

  /// Why there is no private /etc/hosts; empty when there is.
  [[nodiscard]] const std::string& error() const { return error_; }
  /// The machine's entries and `lines`, written in place: the bind mount
  /// follows the file, not its name.
  void set(const std::vector<std::string>& lines) {
    std::ofstream out(dir_ / "hosts", std::ios::trunc);
    out << original_ << "\n";
    for (const auto& l : lines) out << l << "\n";
  }

 private:
  std::filesystem::path dir_;
  std::string original_;
  std::string error_;
  bool mounted_ = false;
};

TEST(DistributedDiscovery, DnsDiscoveryFollowsANameAsItsAddressesComeAndGo) {
  private_hosts hosts;
  FRAMEX_REQUIRE(hosts.error().empty(), "no mount namespace of its own here (" << hosts.error() << "): DNS discovery untested");
  worker_process a;  // 127.0.0.1:P
  worker_process b(0, {}, "/proc/self/exe", {"--listen", "127.0.0.2:" + std::to_string(a.port())});  // 127.0.0.2:P
  hosts.set({"127.0.0.1 framex-workers.test"});
  auto cfg = distributed({});
  cfg.distributed.discovery = "dns://framex-workers.test:" + std::to_string(a.port()) + "?refresh_ms=100";
  framex::runtime rt(cfg);
  const auto served_by = [&] { return run([&]() { return framex::remote<&worker_pid>.with({.timeout = 20s, .runtime = &rt}).remote(); }); };
  EXPECT_EQ(served_by(), a.pid());

  hosts.set({"127.0.0.1 framex-workers.test", "127.0.0.2 framex-workers.test"});  // scaled up
  EXPECT_TRUE(eventually([&] { return served_by() == b.pid(); })) << "the new address was never called";

  hosts.set({"127.0.0.2 framex-workers.test"});  // scaled down: a is gone from the name
  int in_a_row = 0;
  for (int i = 0; i < 500 && in_a_row < 20; ++i) {
    in_a_row = served_by() == b.pid() ? in_a_row + 1 : 0;
    if (in_a_row == 0) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(in_a_row, 20) << "calls still went to the address the name lost";
  // The retired connection closes with its last answer or at the next lookup.
  EXPECT_TRUE(eventually([&] { return framex::stats(rt).workers.size() == 1; }));
  const auto s = framex::stats(rt);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].address, "127.0.0.2:" + std::to_string(a.port()));
}

// ---- resources ----

TEST(DistributedResources, CallsGoOnlyWhereTheResourcesAreAndNoMoreAtOnceThanThereAre) {
  worker_process plain;
  worker_process gpu(0, {}, "/proc/self/exe", {"--worker.resources", "gpu=1,zone:eu=1"});
  framex::runtime rt(distributed({plain.address(), gpu.address()}));
  asio::io_context io;
  std::vector<int> served;
  for (int i = 0; i < 6; ++i) {
    asio::co_spawn(io, framex::remote<&gpu_job>.with({.timeout = 60s, .runtime = &rt}).remote(50),
                   [&](std::exception_ptr e, int pid) { served.push_back(e ? -1 : pid); });
  }
  io.run();
  EXPECT_EQ(served, std::vector<int>(6, gpu.pid())) << "a call that needs a GPU went elsewhere, or failed";
  framex::runtime only_gpu(distributed({gpu.address()}));
  EXPECT_EQ(run([&] { return framex::remote<&gpu_jobs_at_once>.with({.runtime = &only_gpu}).remote(); }), 1)
      << "the worker ran more GPU jobs at once than it has GPUs";

  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(run([&] { return framex::remote<&worker_pid>.with({.runtime = &rt, .resources = {{"zone:eu", 1}}}).remote(); }),
              gpu.pid());
  }
  const auto start = clock::now();
  try {
    run([&] { return framex::remote<&worker_pid>.with({.timeout = 60s, .runtime = &rt, .resources = {{"zone:us", 1}}}).remote(); });
    ADD_FAILURE() << "a call found a worker in a zone none is in";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::no_worker);
    // Every worker, with what it lacks; the category's words once.
    const std::string what = e.what();
    EXPECT_NE(what.find(plain.address() + " lacks zone:us = 1"), std::string::npos) << what;
    EXPECT_NE(what.find(gpu.address() + " lacks zone:us = 1"), std::string::npos) << what;
    EXPECT_EQ(what.find("no worker has the resources"), what.rfind("no worker has the resources")) << what;
  }
  EXPECT_LT(since(start), 20s) << "no_worker must not wait for the call's deadline";
}

TEST(DistributedResources, ResourcesAreAConfigTableOrText) {
  framex::config cfg;
  cfg.apply_toml("[worker.resources]\ncpu = 8\ngpu = 1\n\"zone:eu\" = 1\nmemory_gb = 0.5\n", "test");
  EXPECT_EQ(cfg.worker.resources, (framex::resource_map{{"cpu", 8}, {"gpu", 1}, {"memory_gb", 0.5}, {"zone:eu", 1}}));
  cfg.apply("worker.resources", "gpu=2,zone:us=1", "test");
  EXPECT_EQ(cfg.worker.resources, (framex::resource_map{{"gpu", 2}, {"zone:us", 1}}));
  EXPECT_THROW(cfg.apply("worker.resources", "gpu=-1", "test"), framex::config_error);
  EXPECT_THROW(cfg.apply("worker.resources", "gpu", "test"), framex::config_error);
  EXPECT_THROW(cfg.apply_toml("[worker.resources]\ngpu = \"one\"\n", "test"), framex::config_error);
  EXPECT_EQ((framex::resources{.gpu = 1, .custom = {{"zone:eu", 1}}}.to_map()), (framex::resource_map{{"gpu", 1}, {"zone:eu", 1}}));
}

TEST(DistributedDiscovery, ANameThatResolvesToNothingFailsCallsAndShutsDownAtOnce) {
  auto cfg = distributed({});
  cfg.distributed.discovery = "dns://framex-nowhere.invalid:7001?refresh_ms=60000";
  framex::runtime rt(cfg);
  const auto ec = run([&] { return error_of(framex::remote<&worker_pid>.with({.timeout = 20s, .runtime = &rt}).remote()); });
  EXPECT_EQ(ec, framex::errc::worker_lost);  // after the first lookup, not at the call's deadline
  const auto start = clock::now();
  rt.shutdown();
  EXPECT_LT(since(start), 10s) << "shutting down waited for the next lookup";
}

TEST(DistributedDiscovery, AMalformedOrUnbuiltDiscoveryIsAConfigError) {
  framex::config cfg;
  EXPECT_THROW(cfg.apply("distributed.discovery", "etcd://127.0.0.1:2379", "test"), framex::config_error);  // no prefix
  EXPECT_THROW(cfg.apply("distributed.discovery", "consul://x", "test"), framex::config_error);
  auto both = distributed({"127.0.0.1:1"});
  both.distributed.discovery = "dns://workers:7001";
  EXPECT_THROW(framex::runtime{both}, framex::config_error);
  auto bad_option = distributed({});
  bad_option.distributed.discovery = "dns://workers:7001?refresh=5";
  EXPECT_THROW(framex::runtime{bad_option}, framex::config_error);
}

}  // namespace

// ---- functions marked inline_ok ----

TEST(DistributedInline, AFunctionMarkedInlineOkIsAnsweredWhileEveryPoolThreadIsBusy) {
  worker_process w;  // 4 pool threads
  framex::runtime rt(distributed({w.address()}));
  std::atomic<int> sleepers_done{0};
  const auto [answer, done_by_then, asleep] = run([&]() -> asio::awaitable<std::tuple<int, int, int>> {
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 4; ++i) {
      asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
        co_await framex::remote<&sleep_in_pool>.with({.runtime = &rt}).remote(3000);
        ++sleepers_done;
      }, asio::detached);
    }
    int asleep = 0;
    for (int tries = 0; tries < 2000 && asleep < 4; ++tries) {  // every pool thread taken
      asleep = co_await framex::remote<&sleepers>.with({.runtime = &rt}).remote();
      if (asleep < 4) co_await asio::steady_timer(ex, 1ms).async_wait(asio::use_awaitable);
    }
    const int answer = co_await framex::remote<&cheap_answer>.with({.runtime = &rt}).remote(41);
    co_return std::tuple{answer, sleepers_done.load(), asleep};
  });
  EXPECT_EQ(asleep, 4);
  EXPECT_EQ(answer, 42);
  EXPECT_EQ(done_by_then, 0) << "the inline call waited for a pool thread";
}

// ---- the caller's io_context serves the connections ----

TEST(DistributedCallerIo, TheCallersIoContextReadsTheRepliesAndRunReturnsOnceTheRuntimeShutsDown) {
  worker_process w;
  asio::io_context io(1);
  framex::runtime rt(distributed({w.address()}), io);

  // A call made from another io_context is answered only while `io` runs:
  // the runtime has no I/O thread of its own.
  asio::io_context other;
  auto elsewhere = asio::co_spawn(other, framex::remote<&add>.with({.runtime = &rt}).remote(40, 2), asio::use_future);
  std::thread other_thread([&] { other.run(); });
  EXPECT_EQ(elsewhere.wait_for(300ms), std::future_status::timeout) << "answered while the caller's io_context was idle";

  std::vector<int> sums;
  std::thread::id resumed_on;
  bool all_on_one_thread = true;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 200; ++i) {
          sums.push_back(co_await framex::remote<&add>.with({.runtime = &rt}).remote(i, 1));
          if (i != 0 && resumed_on != std::this_thread::get_id()) all_on_one_thread = false;
          resumed_on = std::this_thread::get_id();
        }
        while (elsewhere.wait_for(0s) != std::future_status::ready) {
          co_await asio::steady_timer(co_await asio::this_coro::executor, 1ms).async_wait(asio::use_awaitable);
        }
        rt.shutdown();  // closes the connections, so io.run() returns
      },
      asio::detached);
  EXPECT_TRUE(runs_to_completion(io, 1, 60s)) << "io.run() did not return after the runtime shut down";
  other_thread.join();
  ASSERT_EQ(sums.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(sums[i], i + 1);
  EXPECT_TRUE(all_on_one_thread);
  EXPECT_EQ(elsewhere.get(), 42);
}

TEST(DistributedCallerIo, ManyCallsInFlightFromTwoThreadsRunningTheCallersIoContext) {
  worker_process w;
  asio::io_context io;
  framex::runtime rt(distributed({w.address()}), io);
  std::atomic<int> issued{0}, wrong{0}, failed{0}, left{64};
  for (int c = 0; c < 64; ++c) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (int i; (i = issued.fetch_add(1)) < 4000;) {
            if (co_await framex::remote<&add>.with({.runtime = &rt}).remote(i, i) != 2 * i) ++wrong;
          }
        },
        [&](std::exception_ptr e) {
          if (e) ++failed;
          if (--left == 0) rt.shutdown();
        });
  }
  EXPECT_TRUE(runs_to_completion(io, 2, 120s));
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(framex::stats(rt).workers.at(0).completed, 4000u);
}

TEST(DistributedCallerIo, AWorkerKilledMidCallFailsItsCallsWithWorkerLost) {
  worker_process doomed;
  asio::io_context io(1);
  framex::runtime rt(distributed({doomed.address()}), io);
  std::vector<std::error_code> errors;
  for (int i = 0; i < 8; ++i) {
    asio::co_spawn(io, error_of(framex::remote<&sleep_then>.with({.runtime = &rt}).remote(5000)),
                   [&](std::exception_ptr, std::error_code ec) {
                     errors.push_back(ec);
                     if (errors.size() == 8) rt.shutdown();
                   });
  }
  std::thread killer([&] {
    eventually([&] {  // all eight in flight on the worker's connection
      const auto s = framex::stats(rt);
      return !s.workers.empty() && s.workers[0].in_flight == 8;
    }, 30s);
    doomed.kill_now();
  });
  EXPECT_TRUE(runs_to_completion(io, 1, 60s));
  killer.join();
  ASSERT_EQ(errors.size(), 8u);
  for (const auto& ec : errors) EXPECT_EQ(ec, framex::errc::worker_lost);
}

TEST(DistributedCallerIo, ARuntimeDestroyedBeforeItsIoContextEverRanLeavesNothingBehind) {
  worker_process w;
  std::optional<std::error_code> outcome;
  {
    asio::io_context io(1);
    {
      framex::runtime rt(distributed({w.address()}), io);
      bool made = false;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<std::error_code> {
            made = true;
            co_return co_await error_of(framex::remote<&add>.with({.runtime = &rt}).remote(1, 2));
          },
          [&](std::exception_ptr, std::error_code ec) { outcome = ec; });
      // Until the call is made: it waits for a connection that `io` never gets to make.
      while (!made) io.run_one();
    }
    EXPECT_TRUE(runs_to_completion(io, 1, 30s));
  }
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(*outcome, framex::errc::cancelled);
}

TEST(DistributedCallerIo, TheCoroutineAReplyResumesMayEndTheRuntimeThere) {
  worker_process w;
  auto cfg = distributed({w.address()});
  cfg.distributed.heartbeat = std::chrono::milliseconds(0);  // nothing else of the runtime's waits on `io`
  asio::io_context io(1);
  std::optional<framex::runtime> rt(std::in_place, cfg, io);
  int sum = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        sum = co_await framex::remote<&add>.with({.runtime = &*rt}).remote(2, 3);
        rt.reset();  // resumed inside the read of the reply
      },
      asio::detached);
  EXPECT_TRUE(runs_to_completion(io, 1, 60s));
  EXPECT_EQ(sum, 5);
  EXPECT_FALSE(rt.has_value());
}
