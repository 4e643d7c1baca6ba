// Object references (framex/object_ref.hpp): inline or spilled by size,
// resolved by worker processes from a storage directory the test makes (each
// object read once per worker), results as references, cleanup, and clear
// errors for missing or corrupt objects and for workers that do not share the
// directory.
#include "framex/object_ref.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/co_spawn.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "framex/fan_out.hpp"
#include "framex/framex.hpp"
#include "raw_peer.hpp"
#include "support.hpp"
#include "worker_process.hpp"

namespace object_ref_test {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using bytes = std::vector<std::uint8_t>;
using framex::test::run;
using framex::test::worker_process;

bytes pattern(std::size_t n, std::uint8_t seed) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 31 + seed);
  return b;
}

std::uint64_t checksum(const bytes& b, int salt) { return std::accumulate(b.begin(), b.end(), std::uint64_t{0}) + static_cast<std::uint64_t>(salt); }
asio::awaitable<std::uint64_t> checksum_async(const bytes& b, int salt) { co_return checksum(b, salt); }
bytes make_bytes(std::uint64_t n, int seed) { return pattern(n, static_cast<std::uint8_t>(seed)); }
bytes reversed(bytes b) {
  std::reverse(b.begin(), b.end());
  return b;
}
int worker_pid() { return static_cast<int>(::getpid()); }
std::uint64_t objects_read_here() { return framex::storage_counters().objects_read; }

constexpr auto score = framex::remote<&checksum>;
constexpr auto score_async = framex::remote<&checksum_async>;
constexpr auto make = framex::remote<&make_bytes>;
constexpr auto reverse = framex::remote<&reversed>;
constexpr auto pid_of = framex::remote<&worker_pid>;
constexpr auto reads = framex::remote<&objects_read_here>;

constexpr std::size_t threshold = 4096;

// A storage directory for the test and the workers.
struct storage {
  framex::test::temp_dir dir;
  [[nodiscard]] std::string path() const { return dir.path().string(); }
  [[nodiscard]] std::string env() const { return "FRAMEX_STORAGE__PATH=" + path(); }
  [[nodiscard]] fs::path file_of(const std::string& name) const {
    for (const auto& owner : fs::directory_iterator(dir.path())) {
      if (fs::exists(owner.path() / name)) return owner.path() / name;
    }
    return {};
  }
};

framex::config to(const std::vector<std::string>& workers, const storage& s) {
  auto cfg = framex::test::distributed(workers);
  cfg.storage.path = s.path();
  cfg.storage.inline_threshold = threshold;
  return cfg;
}

std::vector<std::string> env_for(const storage& s) {
  return {s.env(), "FRAMEX_STORAGE__INLINE_THRESHOLD=" + std::to_string(threshold)};
}

// How many objects the worker at `address` has read from storage.
std::uint64_t reads_of(const std::string& address, const storage& s) {
  framex::runtime rt(to({address}, s));
  const framex::runtime_scope scope(rt);
  return run([&]() -> asio::awaitable<std::uint64_t> { co_return co_await reads.with({.runtime = &rt}).remote(); });
}

TEST(ObjectRef, LocalModeHoldsTheValueAndWritesNothing) {
  framex::runtime rt;
  const framex::runtime_scope scope(rt);
  const auto written = framex::storage_counters().objects_written;
  run([&]() -> asio::awaitable<void> {
    const bytes big = pattern(1 << 21, 7);
    auto ref = co_await framex::put(big);
    EXPECT_FALSE(ref.spilled());
    EXPECT_EQ(co_await score.remote(ref, 3), checksum(big, 3));
    EXPECT_EQ(co_await score_async.remote(ref, 4), checksum(big, 4));
    EXPECT_EQ(co_await framex::get(ref), big);
    auto result = co_await make.remote_ref(100, 1);
    EXPECT_FALSE(result.spilled());
    EXPECT_EQ(co_await framex::get(result), pattern(100, 1));
    EXPECT_EQ(co_await reverse.remote(result), reversed(pattern(100, 1)));
  });
  EXPECT_EQ(framex::storage_counters().objects_written, written);
}

TEST(ObjectRef, SmallValuesTravelInlineAndLargeOnesAreWrittenOnce) {
  storage s;
  worker_process w(0, env_for(s));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  run([&]() -> asio::awaitable<void> {
    const auto written = framex::storage_counters().objects_written;
    auto small = co_await framex::put(pattern(100, 1));
    EXPECT_FALSE(small.spilled());
    EXPECT_EQ(framex::storage_counters().objects_written, written);
    EXPECT_EQ(co_await score.remote(small, 1), checksum(pattern(100, 1), 1));

    const bytes value = pattern(threshold * 4, 2);
    auto big = co_await framex::put(value);
    EXPECT_TRUE(big.spilled());
    EXPECT_EQ(framex::storage_counters().objects_written, written + 1);
    EXPECT_TRUE(fs::exists(s.file_of(big.name()))) << big.name();
    for (int i = 0; i < 5; ++i) EXPECT_EQ(co_await score.remote(big, i), checksum(value, i));
    EXPECT_EQ(co_await score_async.remote(big, 9), checksum(value, 9));
    EXPECT_EQ(co_await framex::get(big), value);
  });
  EXPECT_EQ(reads_of(w.address(), s), 1u) << "the worker read the object more than once";
}

// The case: a 64 MiB array used by 20 calls over 2 workers is read
// from storage at most once by each.
TEST(ObjectRef, ALargeObjectIsReadOncePerWorker) {
  storage s;
  worker_process a(0, env_for(s)), b(0, env_for(s));
  framex::runtime rt(to({a.address(), b.address()}, s));
  const framex::runtime_scope scope(rt);
  const bytes value = pattern(std::size_t{64} << 20, 3);
  run([&]() -> asio::awaitable<void> {
    auto ref = co_await framex::put(value);
    EXPECT_TRUE(ref.spilled());
    std::vector<framex::started<std::uint64_t>> calls;
    for (int i = 0; i < 20; ++i) calls.push_back(co_await framex::start(score.remote(ref, i)));
    for (int i = 0; i < 20; ++i) EXPECT_EQ(co_await calls[static_cast<std::size_t>(i)].get(), checksum(value, i));
  });
  const auto read_a = reads_of(a.address(), s), read_b = reads_of(b.address(), s);
  EXPECT_LE(read_a, 1u);
  EXPECT_LE(read_b, 1u);
  EXPECT_GE(read_a + read_b, 1u);
}

// `put` hashes and writes on the runtime's pool: the caller's executor (one
// thread here) goes on serving a ticker meanwhile.
TEST(ObjectRef, PutLeavesTheCallersExecutorFree) {
  storage s;
  auto cfg = to({"127.0.0.1:1"}, s);  // distributed; no call is made
  framex::runtime rt(cfg);
  asio::io_context io;
  std::atomic<bool> done{false};
  int ticks_during_put = 0;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (asio::steady_timer t(io); !done; ++ticks_during_put) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
  }, asio::detached);
  auto put = asio::co_spawn(io, [&]() -> asio::awaitable<bool> {
    auto ref = co_await framex::put(pattern(std::size_t{32} << 20, 14), &rt);
    done = true;
    co_return ref.spilled();
  }, asio::use_future);
  io.run();
  EXPECT_TRUE(put.get());
  EXPECT_GT(ticks_during_put, 1) << "the caller's thread was blocked while the object was written";
}

// What the caller's connection carries: the value each time by value, 48
// bytes of name (and the call around them) by reference.
TEST(ObjectRef, AReferenceSendsItsNameNotItsValue) {
  storage s;
  worker_process w(0, env_for(s));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  const auto sent = [&] {
    const auto workers = framex::stats(rt).workers;
    return workers.empty() ? std::uint64_t{0} : workers.front().bytes_sent;
  };
  run([&]() -> asio::awaitable<void> {
    const bytes value = pattern(std::size_t{1} << 20, 13);
    EXPECT_EQ(co_await score.remote(value, 0), checksum(value, 0));  // connected
    auto before = sent();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(co_await score.remote(value, i), checksum(value, i));
    EXPECT_GE(sent() - before, 4 * value.size());
    auto ref = co_await framex::put(value);
    before = sent();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(co_await score.remote(ref, i), checksum(value, i));
    EXPECT_GT(sent() - before, 4 * 48u);
    EXPECT_LT(sent() - before, 4 * 200u);
  });
}

TEST(ObjectRef, AResultAsAReferenceGoesFromWorkerToWorkerThroughStorage) {
  storage s;
  worker_process w(0, env_for(s));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  run([&]() -> asio::awaitable<void> {
    const auto read_here = framex::storage_counters().objects_read;
    auto made = co_await make.remote_ref(threshold * 8, 5);
    EXPECT_TRUE(made.spilled());
    EXPECT_TRUE(fs::exists(s.file_of(made.name())));
    auto turned = co_await reverse.remote_ref(made);
    EXPECT_TRUE(turned.spilled());
    EXPECT_EQ(co_await score.remote(turned, 0), checksum(pattern(threshold * 8, 5), 0));
    EXPECT_EQ(framex::storage_counters().objects_read, read_here) << "the data came through the caller";
    EXPECT_EQ(co_await framex::get(turned), reversed(pattern(threshold * 8, 5)));
    EXPECT_EQ(framex::storage_counters().objects_read, read_here + 1);
    auto small = co_await make.remote_ref(10, 5);
    EXPECT_FALSE(small.spilled());
    EXPECT_EQ(co_await framex::get(small), pattern(10, 5));
  });
}

TEST(ObjectRef, AnObjectIsDeletedWithItsLastReference) {
  storage s;
  worker_process w(0, env_for(s));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  run([&]() -> asio::awaitable<void> {
    fs::path put_file, result_file;
    {
      auto ref = co_await framex::put(pattern(threshold * 2, 6));
      auto copy = ref;
      put_file = s.file_of(ref.name());
      EXPECT_TRUE(fs::exists(put_file));
      ref = {};
      EXPECT_TRUE(fs::exists(put_file)) << "a copy still refers to it";
      auto result = co_await make.remote_ref(threshold * 2, 7);
      result_file = s.file_of(result.name());
      EXPECT_TRUE(fs::exists(result_file));
    }
    EXPECT_FALSE(fs::exists(put_file));
    EXPECT_FALSE(fs::exists(result_file));
  });
}

// A process that exits cleanly takes its directory, and its `.alive`, with
// it, even with an object still referenced at exit.
TEST(ObjectRef, AProcessThatExitsCleanlyLeavesNoDirectoryBehind) {
  storage s;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 3;
    try {
      static std::optional<framex::object_ref<bytes>> kept;  // still referenced at exit
      framex::runtime rt(to({"127.0.0.1:1"}, s));
      const framex::runtime_scope scope(rt);
      kept = run([&]() { return framex::put(pattern(threshold * 2, 21)); });
      code = fs::exists(s.file_of(kept->name())) ? 0 : 4;
    } catch (...) {
    }
    std::exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the child did not put its object";
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(s.dir.path())) left.push_back(e.path().filename().string());
  EXPECT_TRUE(left.empty()) << "left behind: " << (left.empty() ? "" : left.front());
}

TEST(ObjectRef, TheObjectsOfADeadProcessAreDeletedAfterTheOrphanTtl) {
  storage s;
  const fs::path dead = s.dir.path() / "00000000deadbeef";
  fs::create_directories(dead);
  std::ofstream(dead / "0123") << "an object";
  std::ofstream(dead / ".alive") << "";
  fs::last_write_time(dead / ".alive", fs::file_time_type::clock::now() - 1h);
  const fs::path alive = s.dir.path() / "00000000cafef00d";  // a live process's
  fs::create_directories(alive);
  std::ofstream(alive / ".alive") << "";
  // Fresh for as long as the test runs, as a live process keeps it by refreshing.
  fs::last_write_time(alive / ".alive", fs::file_time_type::clock::now() + 1h);
  auto cfg = to({"127.0.0.1:1"}, s);
  cfg.storage.orphan_ttl = 1000ms;
  framex::runtime rt(cfg);
  EXPECT_TRUE(framex::test::eventually([&] { return !fs::exists(dead); }, 30s));
  EXPECT_TRUE(fs::exists(alive));
  cfg.storage.orphan_ttl = std::chrono::milliseconds(600000);
  framex::runtime restore(cfg);  // the process's sweeper goes back to the default
}

template <class Awaitable>
asio::awaitable<std::string> failure_of(Awaitable call) {
  try {
    co_await std::move(call);
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), framex::errc::object_unavailable) << e.what();
    co_return e.what();
  }
  ADD_FAILURE() << "the call succeeded";
  co_return std::string();
}

TEST(ObjectRef, MissingAndCorruptObjectsAreClearErrorsNamingThem) {
  storage s;
  worker_process w(0, env_for(s));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  run([&]() -> asio::awaitable<void> {
    auto corrupt = co_await framex::put(pattern(threshold * 2, 8));
    {
      std::fstream f(s.file_of(corrupt.name()), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(100);
      f.put('X');
    }
    std::string why = co_await failure_of(score.remote(corrupt, 1));
    EXPECT_NE(why.find(corrupt.name()), std::string::npos) << why;
    EXPECT_NE(why.find("corrupt"), std::string::npos) << why;

    auto missing = co_await framex::put(pattern(threshold * 2, 9));
    fs::remove(s.file_of(missing.name()));
    why = co_await failure_of(score.remote(missing, 1));
    EXPECT_NE(why.find(missing.name()), std::string::npos) << why;

    auto result = co_await make.remote_ref(threshold * 2, 10);
    fs::remove(s.file_of(result.name()));
    why = co_await failure_of(framex::get(result));
    EXPECT_NE(why.find(result.name()), std::string::npos) << why;
    EXPECT_EQ(co_await pid_of.remote(), w.pid()) << "the worker stays up";
  });
}

// The store is this user's alone: its directories 0700, its files 0600; a
// root another user could write, a root of another user, or a link planted
// for an owner's directory is refused with an error naming it, and nothing is
// written through it.
TEST(ObjectRef, TheStoreIsPrivateAndRefusesWhatItCannotKeepSo) {
  const auto spill = [](const storage& s) -> std::string {
    framex::runtime rt(to({"127.0.0.1:1"}, s));
    return run([&]() -> asio::awaitable<std::string> {
      try {
        auto ref = co_await framex::put(pattern(threshold * 2, 21), &rt);
        co_return ref.spilled() ? ref.name() : std::string("(not spilled)");
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), framex::errc::object_unavailable);
        co_return std::string("refused: ") + e.what();
      }
    });
  };
  storage fresh;
  const fs::path root = fresh.dir.path() / "objects";  // made by the store
  framex::config cfg = to({"127.0.0.1:1"}, fresh);
  cfg.storage.path = root.string();
  {
    framex::runtime rt(cfg);
    const bool spilled = run([&]() -> asio::awaitable<bool> {
      auto ref = co_await framex::put(pattern(threshold * 2, 20), &rt);
      co_return ref.spilled();
    });
    ASSERT_TRUE(spilled);
    ASSERT_TRUE(fs::is_directory(root));
    EXPECT_EQ(fs::status(root).permissions(), fs::perms::owner_all);
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      const auto want = e.is_directory() ? fs::perms::owner_all : fs::perms::owner_read | fs::perms::owner_write;
      EXPECT_EQ(e.status().permissions(), want) << e.path();
    }
  }

  storage open_to_all;
  fs::permissions(open_to_all.dir.path(), fs::perms::all);
  const std::string shared = spill(open_to_all);
  EXPECT_NE(shared.find("refused: " + open_to_all.path() + " is writable by group or others"), std::string::npos) << shared;

  storage planted;
  const framex::test::temp_dir elsewhere;
  char owner[17];
  std::snprintf(owner, sizeof owner, "%016llx", static_cast<unsigned long long>(framex::detail::caller_id()));
  fs::create_directory_symlink(elsewhere.path(), planted.dir.path() / owner);
  const std::string linked = spill(planted);
  EXPECT_NE(linked.find("is a symbolic link"), std::string::npos) << linked;
  EXPECT_TRUE(fs::is_empty(elsewhere.path())) << "written through a planted link";

  if (::geteuid() == 0) {  // only root can give a directory away
    storage theirs;
    ASSERT_EQ(::chown(theirs.path().c_str(), 65534, 65534), 0);
    const std::string foreign = spill(theirs);
    EXPECT_NE(foreign.find(theirs.path() + " belongs to another user"), std::string::npos) << foreign;
  }
}

TEST(ObjectRef, AWorkerWithAnotherStorageDirectoryFailsClearly) {
  storage s, elsewhere;
  worker_process w(0, env_for(elsewhere));
  framex::runtime rt(to({w.address()}, s));
  const framex::runtime_scope scope(rt);
  run([&]() -> asio::awaitable<void> {
    auto ref = co_await framex::put(pattern(threshold * 2, 11));
    const std::string why = co_await failure_of(score.remote(ref, 1));
    EXPECT_NE(why.find(ref.name()), std::string::npos) << why;
    EXPECT_NE(why.find("storage.path"), std::string::npos) << why;
    EXPECT_EQ(co_await score.remote(pattern(10, 1), 1), checksum(pattern(10, 1), 1)) << "values still travel";
  });
}

// What a peer may send that no framex caller would: each gets a clear error,
// nothing is allocated for a size the peer claims, and the worker serves on.
TEST(HostileObjectRefs, MalformedReferencesAndMarkersGetClearErrors) {
  storage s;
  worker_process w(0, env_for(s));
  framex::test::raw_peer peer(w.port());
  const auto code_of_next = [&] {
    auto r = peer.receive();
    return r ? static_cast<int>(framex::test::error_code_of(*r)) : -1;
  };
  const auto code = [](framex::errc e) { return static_cast<int>(e); };
  const auto ext = [](std::int8_t type, std::string payload) { return std::pair<std::int8_t, std::string>(type, std::move(payload)); };
  const auto send = [&](std::uint32_t msgid, const std::pair<std::int8_t, std::string>& first, int second) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_array(4);
    p.pack(0);
    p.pack(msgid);
    p.pack(std::string("object_ref_test::checksum"));
    p.pack_array(2);
    p.pack_ext(static_cast<std::uint32_t>(first.second.size()), first.first);
    p.pack_ext_body(first.second.data(), static_cast<std::uint32_t>(first.second.size()));
    p.pack(second);
    peer.send(std::string(b.data(), b.size()));
  };
  std::string id(48, '\x11');
  send(1, ext(framex::detail::object_ext_type, "short"), 1);
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  std::string no_owner = id;
  std::fill(no_owner.begin() + 40, no_owner.end(), '\0');
  send(2, ext(framex::detail::object_ext_type, no_owner), 1);
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  std::string huge = id;
  std::fill(huge.begin() + 32, huge.begin() + 40, '\x7f');  // claims 9 EB: nothing is allocated for it
  send(3, ext(framex::detail::object_ext_type, huge), 1);
  EXPECT_EQ(code_of_next(), code(framex::errc::object_unavailable));
  send(4, ext(framex::detail::object_ext_type, id), 1);  // names nothing
  EXPECT_EQ(code_of_next(), code(framex::errc::object_unavailable));
  send(5, ext(framex::detail::as_ref_ext_type, "bad"), 1);  // a result-as-reference marker of 3 bytes
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  send(6, ext(framex::detail::as_ref_ext_type, std::string(8, '\x01')), 1);  // a marker, then one argument of two
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  send(7, ext(42, "an ext of another type"), 1);
  EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  {  // a well-formed marker naming an owner this connection's hello did not: no result is written for it
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_array(4);
    p.pack(0);
    p.pack(8);
    p.pack(std::string("object_ref_test::make_bytes"));
    p.pack_array(3);
    p.pack_ext(8, framex::detail::as_ref_ext_type);
    p.pack_ext_body(std::string(8, '\x01').data(), 8);
    p.pack(std::uint64_t{threshold * 4});
    p.pack(5);
    peer.send(std::string(b.data(), b.size()));
    EXPECT_EQ(code_of_next(), code(framex::errc::bad_arguments));
  }
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(s.dir.path())) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 0u) << "the worker wrote something for a hostile peer";
  framex::runtime rt(to({w.address()}, s));
  run([&]() -> asio::awaitable<void> {
    auto ref = co_await framex::put(pattern(threshold * 2, 12), &rt);
    EXPECT_EQ(co_await score.with({.runtime = &rt}).remote(ref, 1), checksum(pattern(threshold * 2, 12), 1));
  });
}

}  // namespace object_ref_test
