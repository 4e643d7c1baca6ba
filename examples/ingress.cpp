// ingress — let framex serve your handlers over HTTP, with a live dashboard.
//
// Each route binds request parameters to an ordinary or coroutine function and
// returns its result as JSON. Configuration comes from framex.toml, FRAMEX_*
// variables and flags (`--server.port 9000`, `--print-config`); in distributed
// mode the handlers' `.remote()` calls go to workers, which are this program
// started with --framex-worker.
//
//   curl 'http://127.0.0.1:8080/api/v1/add?a=2&b=40'
//   curl -d '{"label":"nightly","n":21}' http://127.0.0.1:8080/api/v1/demo/run
//   open http://127.0.0.1:8260/   (the dashboard)
#include <framex/framex.hpp>

#include <boost/describe.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Blocking work, shipped to the pool or to workers.
int heavy_job(int n) {
  std::this_thread::sleep_for(5ms);
  return n * 2;
}
int slow_job(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
inline constexpr auto heavy = framex::remote<&heavy_job>;
inline constexpr auto slow = framex::remote<&slow_job>;

struct job {
  std::string label;
  int n = 0;
};
BOOST_DESCRIBE_STRUCT(job, (), (label, n))

struct job_result {
  std::string label;
  int value = 0;
};
BOOST_DESCRIBE_STRUCT(job_result, (), (label, value))

// Handlers: a coroutine taking a described struct (the JSON body), an ordinary
// function taking named scalars, one that times out and one that throws.
asio::awaitable<job_result> run_job(job j) {
  const int value = co_await heavy.remote(j.n);  // not inside the braces: GCC 12 miscompiles co_await in a braced init
  co_return job_result{j.label, value};
}
int add(int a, int b) { return a + b; }
asio::awaitable<int> run_slow(int ms) { co_return co_await slow.with({.timeout = 100ms}).remote(ms); }
std::string fail_job(std::string why) { throw std::runtime_error(why); }
// Failures are logged with an id; the client gets the id, not the text.
asio::awaitable<std::string> fail(std::string why) { co_return co_await framex::remote<&fail_job>.remote(why); }

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  try {
    framex::app app{framex::config::load(argc, argv)};
    app.on_request("/api/v1/demo/run", &run_job, {.methods = {framex::http_method::post}})
        .on_request("/api/v1/add", &add, {.params = {"a", "b"}})
        .on_request("/api/v1/slow", &run_slow, {.params = {"ms"}})
        .on_request("/api/v1/fail", &fail, {.params = {"why"}});
    app.run();
  } catch (const framex::config_error& e) {
    std::fprintf(stderr, "ingress: %s\n", e.what());
    return 2;
  }
}
