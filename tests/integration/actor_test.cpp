// Actors (framex/actor.hpp) in local mode and on worker processes: turns,
// names, lifetime by handles (and by the caller's death), kill, a lost worker
// and restarts. The callers are multi-threaded (the suite also runs under TSan).
#include "framex/actor.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "framex/framex.hpp"
#include "raw_peer.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace actor_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using framex::test::error_of;
using framex::test::run;
using framex::test::worker_process;

std::atomic<int> counters_alive{0};  // in the process the counters live in

// A read-modify-write with a gap: calls that overlapped would lose updates.
struct Counter {
  explicit Counter(int start) : total(start) { ++counters_alive; }
  ~Counter() { --counters_alive; }
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  int add(int n) {
    const int before = total;
    std::this_thread::yield();
    total = before + n;
    return total;
  }
  asio::awaitable<int> add_later(int n) {
    const int before = total;
    co_await asio::steady_timer(co_await asio::this_coro::executor, 100us).async_wait(asio::use_awaitable);
    total = before + n;
    co_return total;
  }
  [[nodiscard]] int get() const { return total; }
  [[nodiscard]] int process() const { return static_cast<int>(::getpid()); }
  int refuse(int n) { throw std::invalid_argument("refused " + std::to_string(n)); }
  int slowly(int ms) {
    ++slow_bodies;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ++total;
  }
  static inline std::atomic<int> slow_bodies{0};  // begun, in this process

  int total;
};

int alive_here() { return counters_alive.load(); }
constexpr auto alive = framex::remote<&alive_here>;

constexpr auto add = framex::remote<&Counter::add>;
constexpr auto add_later = framex::remote<&Counter::add_later>;
constexpr auto get = framex::remote<&Counter::get>;
constexpr auto process = framex::remote<&Counter::process>;
constexpr auto refuse = framex::remote<&Counter::refuse>;
constexpr auto slowly = framex::remote<&Counter::slowly>;

// Runs `calls` coroutines made by `make(i)` at once on a four-threaded caller.
template <class Make>
void on_many_threads(int calls, Make make) {
  asio::io_context io;
  std::vector<std::future<void>> done;
  for (int i = 0; i < calls; ++i) done.push_back(asio::co_spawn(io, make(i), asio::use_future));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  for (auto& d : done) d.get();
}

// Polls `probe` until it yields `want`, for at most `within`.
template <class Probe>
int eventually(Probe probe, int want, std::chrono::seconds within = 20s) {
  const auto until = framex::test::clock::now() + within;
  int seen = probe();
  while (seen != want && framex::test::clock::now() < until) {
    std::this_thread::sleep_for(50ms);
    seen = probe();
  }
  return seen;
}

framex::config to(std::vector<std::string> workers) {
  auto cfg = framex::test::distributed(std::move(workers));
  cfg.distributed.call_timeout = 30s;
  return cfg;
}

// Calls from many threads at once give the exact sum: an actor's calls take turns.
void exact_sums(framex::runtime& rt) {
  const framex::runtime_scope scope(rt);
  auto counter = run([] { return framex::spawn<Counter>(5); });
  on_many_threads(1000, [&](int) -> asio::awaitable<void> { co_await add.remote(counter, 1); });
  on_many_threads(200, [&](int) -> asio::awaitable<void> { co_await add_later.remote(counter, 2); });
  EXPECT_EQ(run([&] { return get.remote(counter); }), 5 + 1000 + 400);
  // Bound to the handle, as any member function's object.
  EXPECT_EQ(run([&] { return add.bind(counter).remote(10); }), 1415);
}

TEST(LocalActor, CallsTakeTurnsSoConcurrentAddsGiveTheExactSum) {
  framex::runtime rt({.threads = 4});
  exact_sums(rt);
  EXPECT_EQ(counters_alive.load(), 0) << "the actor outlived its handles";
}

TEST(LocalActor, NamesLookupKillAndExceptions) {
  framex::runtime rt({.threads = 2});
  const framex::runtime_scope scope(rt);
  run([]() -> asio::awaitable<void> {
    auto hits = co_await framex::spawn<Counter>({.name = "hits"}, 1);
    EXPECT_EQ(hits.name(), "hits");
    EXPECT_EQ(hits.where(), "local");
    auto again = co_await framex::actor<Counter>::lookup("hits");
    co_await add.remote(again, 2);
    EXPECT_EQ(co_await get.remote(hits), 3);
    EXPECT_EQ(co_await error_of(framex::spawn<Counter>({.name = "hits"}, 0)), framex::errc::bad_arguments);
    try {  // says what is wrong, and nothing about the arguments
      co_await framex::spawn<Counter>({.name = "hits"}, 0);
    } catch (const std::system_error& e) {
      EXPECT_NE(std::string(e.what()).find("an actor named \"hits\" exists already"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("arguments"), std::string::npos) << e.what();
    }
    EXPECT_EQ(co_await error_of(framex::actor<Counter>::lookup("misses")), framex::errc::actor_lost);
    // A method's exception reaches the caller as itself; the actor lives on.
    try {
      co_await refuse.remote(hits, 7);
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "refused 7");
    }
    EXPECT_EQ(co_await add.remote(hits, 1), 4);
    co_await framex::kill(hits);
    EXPECT_EQ(co_await error_of(get.remote(again)), framex::errc::actor_lost);
    EXPECT_EQ(co_await error_of(framex::actor<Counter>::lookup("hits")), framex::errc::actor_lost);
    auto reborn = co_await framex::spawn<Counter>({.name = "hits"}, 100);  // the name is free again
    EXPECT_EQ(co_await get.remote(reborn), 100);
    co_await framex::kill(reborn);
  });
  EXPECT_EQ(counters_alive.load(), 0);
}

TEST(LocalActor, ANamedActorOutlivesItsHandlesUntilKilled) {
  framex::runtime rt({.threads = 2});
  const framex::runtime_scope scope(rt);
  run([] { return framex::spawn<Counter>({.name = "kept"}, 7); });  // the handle is dropped at once
  EXPECT_EQ(counters_alive.load(), 1);
  run([]() -> asio::awaitable<void> {
    auto kept = co_await framex::actor<Counter>::lookup("kept");
    EXPECT_EQ(co_await get.remote(kept), 7);
    co_await framex::kill(kept);
  });
  EXPECT_EQ(counters_alive.load(), 0);
}

TEST(LocalActor, ATimedOutCallGivesTheTurnBackOnlyWhenItsBodyReturned) {
  framex::runtime rt({.threads = 4});
  const framex::runtime_scope scope(rt);
  auto counter = run([] { return framex::spawn<Counter>(0); });
  run([&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await error_of(slowly.with({.timeout = 50ms}).remote(counter, 300)), framex::errc::timeout);
    // The next call waited for the first body: both increments happened, in turn.
    EXPECT_EQ(co_await slowly.remote(counter, 0), 2);
  });
}

TEST(LocalActor, KillEndsTheCallsWaitingForTheirTurnAndLetsTheRunningOneFinish) {
  framex::runtime rt({.threads = 4});
  const framex::runtime_scope scope(rt);
  auto counter = run([] { return framex::spawn<Counter>(0); });
  const int begun = Counter::slow_bodies.load();
  auto running = std::async(std::launch::async, [&] { return run([&] { return slowly.remote(counter, 1000); }); });
  ASSERT_EQ(eventually([&] { return Counter::slow_bodies.load() - begun; }, 1), 1) << "the slow call never began";
  // Killed while the slow call holds the turn: whether the next call is
  // waiting by then or comes after, it finds the actor gone.
  auto waiting = std::async(std::launch::async, [&] { return run([&] { return error_of(get.remote(counter)); }); });
  run([&] { return framex::kill(counter); });
  EXPECT_EQ(running.get(), 1);
  EXPECT_EQ(waiting.get(), framex::errc::actor_lost);
  EXPECT_EQ(counters_alive.load(), 0);
}

class DistributedActor : public ::testing::Test {
 protected:
  worker_process first{0, {"FRAMEX_WORKER__ACTOR_GRACE_MS=300"}};
  worker_process second{0, {"FRAMEX_WORKER__ACTOR_GRACE_MS=300"}};
  // What lives on one worker: asked through a runtime that knows only it.
  int alive_on(const worker_process& w) {
    framex::runtime only(to({w.address()}));
    return run([&] { return alive.with({.runtime = &only}).remote(); });
  }
};

TEST_F(DistributedActor, LivesOnAWorkerAndItsCallsTakeTurns) {
  framex::runtime rt(to({first.address(), second.address()}));
  exact_sums(rt);
  const framex::runtime_scope scope(rt);
  run([]() -> asio::awaitable<void> {
    auto counter = co_await framex::spawn<Counter>(0);
    EXPECT_NE(co_await process.remote(counter), static_cast<int>(::getpid()));
    EXPECT_NE(counter.where(), "local");
    try {
      co_await refuse.remote(counter, 3);
      ADD_FAILURE() << "no exception";
    } catch (const framex::remote_error& e) {
      EXPECT_EQ(e.remote_type(), "std::invalid_argument");
      EXPECT_EQ(e.remote_message(), "refused 3");
    }
    EXPECT_EQ(co_await add.remote(counter, 4), 4);
  });
}

TEST_F(DistributedActor, TheLastHandleGoneTheWorkerDropsTheActor) {
  framex::runtime rt(to({first.address()}));
  const framex::runtime_scope scope(rt);
  {
    auto counter = run([] { return framex::spawn<Counter>(1); });
    auto copy = counter;
    EXPECT_EQ(alive_on(first), 1);
    counter = {};
    EXPECT_EQ(run([&] { return add.remote(copy, 1); }), 2) << "a copy of the handle still holds it";
  }
  EXPECT_EQ(eventually([&] { return alive_on(first); }, 0), 0);
}

TEST_F(DistributedActor, NamedActorsAreFoundFromAnotherRuntimeAndKilled) {
  framex::runtime rt(to({first.address(), second.address()}));
  framex::runtime other(to({second.address(), first.address()}));
  run([&]() -> asio::awaitable<void> {
    auto hits = co_await framex::spawn<Counter>({.name = "hits", .runtime = &rt}, 10);
    auto found = co_await framex::actor<Counter>::lookup("hits", &other);
    EXPECT_EQ(found.where(), hits.where());
    EXPECT_EQ(co_await add.with({.runtime = &other}).remote(found, 5), 15);
    EXPECT_EQ(co_await error_of(framex::spawn<Counter>({.name = "hits", .runtime = &other}, 0)), framex::errc::bad_arguments);
    co_await framex::kill(found);
    EXPECT_EQ(co_await error_of(get.remote(hits)), framex::errc::actor_lost);
    EXPECT_EQ(co_await error_of(framex::actor<Counter>::lookup("hits", &rt)), framex::errc::actor_lost);
  });
  EXPECT_EQ(eventually([&] { return alive_on(first) + alive_on(second); }, 0), 0);
}

// The caller's side of the next test, run in a child process.
TEST(DistributedActorChild, HoldsAnActorUntilKilled) {
  const char* worker = std::getenv("FRAMEX_TEST_ACTOR_WORKER");
  if (worker == nullptr) GTEST_SKIP() << "run by DistributedActor.ACallerThatDiesLosesItsActors";
  auto cfg = to({worker});
  if (const char* token = std::getenv("FRAMEX_TEST_ACTOR_TOKEN")) cfg.distributed.token_file = token;
  framex::runtime rt(cfg);
  auto counter = run([&] { return framex::spawn<Counter>({.runtime = &rt}, 0); });
  if (const char* file = std::getenv("FRAMEX_TEST_ACTOR_CALLER_FILE")) std::ofstream(file) << framex::detail::caller_id() << "\n";
  std::this_thread::sleep_for(60s);  // killed long before
}

TEST_F(DistributedActor, ACallerThatDiesLosesItsActors) {
  framex::test::child_process caller({"/proc/self/exe", "--gtest_filter=DistributedActorChild.*"},
                                     {"FRAMEX_TEST_ACTOR_WORKER=" + first.address()});
  ASSERT_EQ(eventually([&] { return alive_on(first); }, 1), 1) << "the child made no actor";
  caller.kill_now();
  EXPECT_EQ(eventually([&] { return alive_on(first); }, 0), 0) << "the dead caller's actor lives on";
}

// A hello is believed only once its proof is: a peer without the token that
// names a dead caller in its hellos does not keep that caller's actors alive.
TEST(DistributedActorTrust, AHelloWithoutProofKeepsNoDeadCallersActorsAlive) {
  framex::test::temp_dir dir;
  const std::string token = dir.write("token", "actor-trust-0123456789abcdef0123456789");
  worker_process w(0, {"FRAMEX_WORKER__ACTOR_GRACE_MS=300", "FRAMEX_WORKER__TOKEN_FILE=" + token});
  auto cfg = to({w.address()});
  cfg.distributed.token_file = token;
  const auto alive_there = [&] {
    framex::runtime only(cfg);
    return run([&] { return alive.with({.runtime = &only}).remote(); });
  };
  const std::string caller_file = dir.at("caller");
  framex::test::child_process caller({"/proc/self/exe", "--gtest_filter=DistributedActorChild.*"},
                                     {"FRAMEX_TEST_ACTOR_WORKER=" + w.address(), "FRAMEX_TEST_ACTOR_TOKEN=" + token,
                                      "FRAMEX_TEST_ACTOR_CALLER_FILE=" + caller_file});
  ASSERT_EQ(eventually([&] { return alive_there(); }, 1), 1) << "the child made no actor";
  ASSERT_EQ(eventually([&] { return std::filesystem::exists(caller_file) ? 1 : 0; }, 1), 1);
  std::uint64_t dead_caller = 0;
  std::ifstream(caller_file) >> dead_caller;
  ASSERT_NE(dead_caller, 0u);
  caller.kill_now();
  // Hellos naming the dead caller, with no proof, every 50 ms while the test
  // waits (for at most 10 s, many times the grace) for its actor to go.
  std::mutex attack;
  std::condition_variable attack_over;
  bool attacking = true;
  std::thread attacker([&] {
    for (std::unique_lock lock(attack); attacking; attack_over.wait_for(lock, 50ms, [&] { return !attacking; })) {
      lock.unlock();
      framex::test::raw_peer p(w.port());
      p.request(1, "framex.challenge", std::vector<char>(32, 'c'));  // bin
      (void)p.receive();
      p.request(2, "framex.hello", 1, std::map<std::string, std::string>{}, 1 << 20,
                std::map<std::string, std::uint64_t>{{"caller", dead_caller}});
      (void)p.receive();
      lock.lock();
    }
  });
  EXPECT_EQ(eventually([&] { return alive_there(); }, 0, 10s), 0) << "an unproved hello kept the dead caller's actor";
  {
    std::lock_guard lock(attack);
    attacking = false;
  }
  attack_over.notify_all();
  attacker.join();
}

TEST_F(DistributedActor, AWorkerLostMeansActorLostThenARestartElsewhere) {
  framex::runtime rt(to({first.address(), second.address()}));
  const framex::runtime_scope scope(rt);
  const auto restarts_before = framex::stats(rt).actor_restarts;
  auto counter = run([] { return framex::spawn<Counter>({.max_restarts = 1}, 100); });
  EXPECT_EQ(run([&] { return add.remote(counter, 1); }), 101);
  const std::string home = counter.where();
  worker_process& host = home == first.address() ? first : second;
  worker_process& spare = home == first.address() ? second : first;
  ASSERT_EQ(home, host.address());
  // A call in flight when the worker dies, and one made after.
  auto in_flight = std::async(std::launch::async, [&] { return run([&] { return error_of(slowly.remote(counter, 5000)); }); });
  // Time for the call to leave; the outcome is actor_lost either way (a call
  // sent after the kill finds the worker down), so no condition is waited for.
  std::this_thread::sleep_for(300ms);
  host.kill_now();
  EXPECT_EQ(in_flight.get(), framex::errc::actor_lost);
  // The next call re-creates it on the other worker from its constructor's arguments.
  EXPECT_EQ(run([&] { return add.remote(counter, 1); }), 101);
  EXPECT_EQ(counter.where(), spare.address());
  EXPECT_EQ(framex::stats(rt).actor_restarts, restarts_before + 1);
  // Lost again, with no restart left: lost for good.
  spare.kill_now();
  EXPECT_EQ(run([&] { return error_of(add.remote(counter, 1)); }), framex::errc::actor_lost);
  EXPECT_EQ(run([&] { return error_of(add.remote(counter, 1)); }), framex::errc::actor_lost);
}

// An actor that saves its state: a restart begins from the last snapshot.
struct Ledger {
  explicit Ledger(int start) : total(start) {}
  int add(int n) { return total += n; }
  [[nodiscard]] int get() const { return total; }
  [[nodiscard]] int save() const { return total; }
  void load(int saved) { total = saved; }
  int total;
};
static_assert(framex::saves_state<Ledger> && !framex::saves_state<Counter>);
constexpr auto ledger_add = framex::remote<&Ledger::add>;
constexpr auto ledger_get = framex::remote<&Ledger::get>;

TEST(ActorSnapshots, ARestartBeginsFromTheLastSnapshotAndTheSnapshotGoesWithTheHandles) {
  framex::test::temp_dir storage;
  const std::vector<std::string> env{"FRAMEX_STORAGE__PATH=" + storage.path().string()};
  worker_process first(0, env), second(0, env);
  auto cfg = to({first.address(), second.address()});
  cfg.storage.path = storage.path().string();
  framex::runtime rt(cfg);
  const framex::runtime_scope scope(rt);
  const auto snapshots = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(storage.path())) {
      n += e.path().filename().string().starts_with("actor-") && e.path().filename().string().find(".part-") == std::string::npos;
    }
    return n;
  };
  {
    auto ledger = run([] { return framex::spawn<Ledger>({.max_restarts = 1, .snapshot_every = 5}, 100); });
    for (int i = 1; i <= 7; ++i) EXPECT_EQ(run([&] { return ledger_add.remote(ledger, 1); }), 100 + i);
    EXPECT_EQ(snapshots(), 1) << "no snapshot after the 5th call";
    worker_process& host = ledger.where() == first.address() ? first : second;
    worker_process& spare = ledger.where() == first.address() ? second : first;
    host.kill_now();
    // Calls after the loss fail with actor_lost until one re-creates it, from
    // the snapshot taken after the 5th call: 105, not 100 and not 107.
    int value = -1;
    for (int attempt = 0; attempt < 3 && value < 0; ++attempt) {
      try {
        value = run([&] { return ledger_get.remote(ledger); });
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), framex::errc::actor_lost) << e.what();
      }
    }
    EXPECT_EQ(value, 105);
    EXPECT_EQ(ledger.where(), spare.address());
    EXPECT_EQ(run([&] { return ledger_add.remote(ledger, 1); }), 106);
  }
  EXPECT_EQ(snapshots(), 0) << "the snapshot outlived the actor's handles";
  // Without snapshot_every, a restart begins from the constructor (Counter cannot save at all).
  auto plain = run([] { return framex::spawn<Ledger>({.max_restarts = 1}, 1); });
  EXPECT_EQ(run([&] { return ledger_add.remote(plain, 1); }), 2);
  EXPECT_EQ(snapshots(), 0);
}

// What a peer may send that no framex caller would: each gets a clear error,
// and the worker serves on.
TEST(HostileActorRequests, MalformedActorRequestsGetClearErrorsAndTheWorkerServesOn) {
  worker_process w(0, {"FRAMEX_WORKER__MAX_ACTORS=2"});
  const std::string method = framex::detail::actor_method<&Counter::add>::name();
  const std::string constructor = framex::detail::actor_constructor<Counter, int>::name();
  framex::test::raw_peer peer(w.port());
  const auto code_of_next = [&] {
    auto r = peer.receive();
    return r ? static_cast<int>(framex::test::error_code_of(*r)) : -1;
  };
  const auto code = [](framex::errc e) { return static_cast<int>(e); };
  peer.request(1, "framex.actor.lookup", 7);  // not [class, caller, name]
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(2, "framex.actor.kill", std::string("seven"));
  EXPECT_EQ(code_of_next(), code(framex::errc::unknown_function));
  peer.request(3, "framex.actor.kill", 12345);  // no such actor
  EXPECT_EQ(code_of_next(), code(framex::errc::actor_lost));
  peer.request(4, method, 12345, 1, 1);  // an id that names nothing
  EXPECT_EQ(code_of_next(), code(framex::errc::actor_lost));
  peer.request(5, method, std::string("no id"), 1, 1);
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(6, constructor, 0, std::string(""), std::vector<int>{1});  // caller 0
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(7, constructor, 9, std::string(""), 1);  // the arguments not an array
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(8, constructor, 9, std::string(""), std::vector<std::string>{"one"});  // a string for the int
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(8, constructor, 9, std::string(""), std::vector<int>{1}, std::vector<int>{0, 7});  // snapshots every 0 calls
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  peer.request(8, constructor, 9, std::string(""), std::vector<int>{1}, std::string("often"));
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  for (std::uint64_t caller = 1; caller <= 1000; ++caller) peer.request(9, "framex.actor.lookup", std::string("C"), caller, std::string("n"));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(code_of_next(), code(framex::errc::actor_lost));
  // At `worker.max_actors`, spawns are refused with `overloaded`.
  framex::runtime rt(to({w.address()}));
  run([&]() -> asio::awaitable<void> {
    auto a = co_await framex::spawn<Counter>({.runtime = &rt}, 1);
    auto b = co_await framex::spawn<Counter>({.runtime = &rt}, 2);
    EXPECT_EQ(co_await error_of(framex::spawn<Counter>({.runtime = &rt}, 3)), framex::errc::overloaded);
    EXPECT_EQ(co_await add.with({.runtime = &rt}).remote(b, 1), 3) << "the worker no longer serves its actors";
  });
}

}  // namespace actor_test
