// quickstart — wrap functions once, call them with `co_await fn.remote(...)`.
//
// A free function, a member function, a static method and an async function,
// each wrapped in one line and called from a coroutine. Which runtime runs them
// is configuration, not code: by default (local mode) the blocking ones run on
// framex's thread pool and the async one is awaited right here; with
//
//   FRAMEX_RUNTIME__MODE=distributed FRAMEX_DISTRIBUTED__WORKERS=127.0.0.1:7001 ./quickstart
//
// the same calls are shipped to worker processes, which are this very program
// started as `./quickstart --framex-worker --listen 127.0.0.1:7001`.
#include <framex/fan_out.hpp>
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Legacy code, untouched.
int heavy_job(int x) { return x * 2; }
int where() { return static_cast<int>(::getpid()); }

class Worker {
 public:
  int total(std::vector<int> v) const { return std::accumulate(v.begin(), v.end(), 0); }
  static int scale(int x) { return x * 10; }
  asio::awaitable<std::string> fetch(std::string key) {
    asio::steady_timer t(co_await asio::this_coro::executor, 1ms);  // stands in for real I/O
    co_await t.async_wait(asio::use_awaitable);
    co_return "value-of-" + key;
  }
};
BOOST_DESCRIBE_STRUCT(Worker, (), ())  // no state, but it travels with member calls

// One line per function.
inline constexpr auto heavy = framex::remote<&heavy_job>;
inline constexpr auto total = framex::remote<&Worker::total>;
inline constexpr auto scale = framex::remote<&Worker::scale>;
inline constexpr auto fetch = framex::remote<&Worker::fetch>;
inline constexpr auto runner = framex::remote<&where>;

asio::awaitable<void> handler() {
  Worker w;
  std::vector<int> values{1, 2, 3};
  int a = co_await heavy.remote(21);                            // on the pool, or a worker
  int b = co_await total.remote(w, values);                     // object first, as std::invoke
  int c = co_await scale.remote(2);                             // static method
  std::string d = co_await fetch.remote(w, "answer");           // async
  int e = co_await heavy.with({.timeout = 2s}).remote(1);       // per-call options
  int f = heavy(21);                                            // the plain call still works
  // Many calls at once, at most 16 in flight, with a progress bar on the terminal.
  std::vector<int> inputs(1000);
  std::iota(inputs.begin(), inputs.end(), 0);
  // (Options built in their own statement: GCC 12 destroys a temporary with a
  // destructor inside a co_await expression twice.)
  const framex::map_options options{.max_in_flight = 16, .on_progress = framex::progress_bar("map")};
  const std::vector<int> doubled = co_await framex::map(heavy, inputs, options);
  int pid = co_await runner.remote();
  std::printf("mode                      = %s\n",
              framex::runtime::current().current_mode() == framex::mode::local ? "local" : "distributed");
  std::printf("heavy.remote(21)          = %d\n", a);
  std::printf("total.remote(w, {1,2,3})  = %d\n", b);
  std::printf("scale.remote(2)           = %d\n", c);
  std::printf("fetch.remote(w, \"answer\") = %s\n", d.c_str());
  std::printf("heavy.with(2s).remote(1)  = %d\n", e);
  std::printf("heavy(21)                 = %d\n", f);
  std::printf("map(heavy, 0..999), sum   = %d\n", std::accumulate(doubled.begin(), doubled.end(), 0));
  std::printf("ran in                    = %s\n", pid == ::getpid() ? "this process" : "a worker process");
}

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;  // --framex-worker: serve
  asio::io_context io;
  asio::co_spawn(io, handler(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
}
