// legacy_blocking — keep a blocking legacy call off the I/O thread.
//
// `legacy_report` sleeps like a slow database driver would. Called inline it
// would freeze the io_context; called through `.remote()` it runs on framex's
// pool while the same single-threaded io_context keeps serving a 20 ms timer.
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Blocking code we cannot change.
std::string legacy_report(int id) {
  std::this_thread::sleep_for(300ms);
  return "report #" + std::to_string(id);
}

inline constexpr auto report = framex::remote<&legacy_report>;

int main() {
  asio::io_context io;  // run by this thread only
  int ticks = 0;
  bool done = false;

  // Something the service must keep doing: a heartbeat every 20 ms.
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer t(io);
    while (!done) {
      t.expires_after(20ms);
      co_await t.async_wait(asio::use_awaitable);
      ++ticks;
    }
  }, asio::detached);

  std::string result;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    result = co_await report.remote(7);  // the io_context stays free meanwhile
    done = true;
  }, asio::detached);

  io.run();
  std::printf("%s, heartbeat ticked %d times during the 300 ms call\n", result.c_str(), ticks);
  // Inline, the heartbeat would have ticked once at most.
  return ticks >= 5 ? 0 : 1;
}
