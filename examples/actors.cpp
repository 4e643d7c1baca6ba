// actors — state that lives in one place, called remotely one call at a time.
//
// An `Inventory` holds stock in an ordinary std::map: no lock, no
// serialization of the object. `framex::spawn` makes one (in local mode, owned
// by the runtime; distributed, on a worker, where it stays), and every method
// call runs on that one object, in turn. A thousand concurrent `add`s lose
// nothing. Run it as is, or over workers:
//
//   ./actors --framex-worker --listen 127.0.0.1:7001 &
//   FRAMEX_RUNTIME__MODE=distributed FRAMEX_DISTRIBUTED__WORKERS=127.0.0.1:7001 ./actors
//
// It exits with 1 if a figure is not what the turns guarantee.
#include <framex/fan_out.hpp>
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

class Inventory {
 public:
  explicit Inventory(std::string site) : site_(std::move(site)) {}

  int add(std::string item, int n) { return stock_[item] += n; }  // blocking: on the pool, in turn
  int take(std::string item, int n) {
    int& have = stock_[item];
    if (have < n) throw std::runtime_error(site_ + " has only " + std::to_string(have) + " " + item);
    return have -= n;
  }
  [[nodiscard]] int count(std::string item) const {
    const auto it = stock_.find(item);
    return it == stock_.end() ? 0 : it->second;
  }
  [[nodiscard]] int process() const { return static_cast<int>(::getpid()); }
  asio::awaitable<std::string> audit() {  // async: holds the turn across its co_await
    asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
    co_await t.async_wait(asio::use_awaitable);
    std::string out = site_ + ":";
    for (const auto& [item, n] : stock_) out += " " + item + "=" + std::to_string(n);
    co_return out;
  }

 private:
  std::string site_;
  std::map<std::string, int> stock_;
};

inline constexpr auto add = framex::remote<&Inventory::add>;
inline constexpr auto take = framex::remote<&Inventory::take>;
inline constexpr auto count = framex::remote<&Inventory::count>;
inline constexpr auto process = framex::remote<&Inventory::process>;
inline constexpr auto audit = framex::remote<&Inventory::audit>;

asio::awaitable<int> demo() {
  int failures = 0;
  const auto check = [&](const char* what, int got, int want) {
    std::printf("%-26s = %d\n", what, got);
    if (got != want) {
      std::fprintf(stderr, "%s: %d, expected %d\n", what, got, want);
      ++failures;
    }
  };
  auto depot = co_await framex::spawn<Inventory>({.name = "depot"}, std::string("depot"));
  std::printf("%-26s = %s\n", "the actor lives", depot.where() == "local" ? "in this process" : "on a worker");
  std::printf("%-26s = %s\n", "its methods run in", co_await process.remote(depot) == ::getpid() ? "this process" : "the worker");

  // A thousand adds at once, from map's concurrent calls: each runs on the one object, in turn.
  std::vector<std::tuple<framex::actor<Inventory>, std::string, int>> adds(1000, {depot, "bolts", 1});
  const framex::map_options at_most_64{.max_in_flight = 64};  // its own statement: see the README on GCC 12
  co_await framex::map(add, adds, at_most_64);
  check("bolts after 1000 adds", co_await count.remote(depot, "bolts"), 1000);

  // Another handle to the same actor, found by name (from any process of this runtime).
  auto same = co_await framex::actor<Inventory>::lookup("depot");
  check("bolts after take(250)", co_await take.remote(same, "bolts", 250), 750);
  try {
    co_await take.remote(same, "nuts", 1);  // a method's exception reaches the caller; the actor lives on
  } catch (const std::exception& e) {
    std::printf("%-26s = %s\n", "take(nuts) failed", e.what());
  }
  std::printf("%-26s = %s\n", "audit", (co_await audit.remote(depot)).c_str());

  co_await framex::kill(depot);  // ends it now; later calls fail with actor_lost
  try {
    co_await count.remote(same, "bolts");
    ++failures;
  } catch (const std::system_error& e) {
    std::printf("%-26s = %s\n", "after kill", e.code() == framex::errc::actor_lost ? "actor_lost" : e.what());
  }
  co_return failures;
}

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  asio::io_context io;
  auto failures = asio::co_spawn(io, demo(), asio::use_future);
  io.run();
  return failures.get() == 0 ? 0 : 1;
}
