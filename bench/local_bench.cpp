// local_bench — what `.remote()` costs in local mode, against hand-written Asio.
//
// Three comparisons, each run in this one binary with framex and its baseline
// interleaved over several rounds (the median round is reported):
//   1. async function:  co_await fn.remote(x)   vs  co_await fn(x)
//   2. blocking, 1 in flight: .remote() round trip  vs  async_initiate that posts
//      to an asio::thread_pool and posts back to the caller's executor
//   3. the same with 64 calls in flight (throughput)
// Both pools have the same thread count. Output is a table; nothing here gates CI.
//
//   build/release/bench/local_bench [rounds [spin_us]]
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

asio::awaitable<int> async_twice(int x) { co_return x * 2; }
int twice(int x) { return x * 2; }

namespace {

volatile int sink;


constexpr auto async_fn = framex::remote<&async_twice>;
constexpr auto blocking_fn = framex::remote<&twice>;

// The hand-written baseline: post the body to the pool, post the result back.
asio::awaitable<int> baseline_call(asio::thread_pool& pool, int x) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(int)>(
      [&pool, x](auto handler) {
        auto work = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        asio::post(pool, [h = std::move(handler), work = std::move(work), x]() mutable {
          const int r = twice(x);
          asio::post(work, [h = std::move(h), r]() mutable { std::move(h)(r); });
        });
      },
      asio::use_awaitable);
}

// Runs `in_flight` coroutines that together make `calls` calls; returns ns per call.
template <class Call>
double per_call_ns(int calls, int in_flight, Call call) {
  asio::io_context io(1);
  const int each = calls / in_flight;
  const auto start = clock_type::now();
  for (int c = 0; c < in_flight; ++c) {
    asio::co_spawn(io, [&call, each]() -> asio::awaitable<void> {
      for (int i = 0; i < each; ++i) sink = co_await call(i);
    }, asio::detached);
  }
  io.run();
  const auto ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count();
  return ns / (each * in_flight);
}

struct row {
  std::string name;
  std::string target;
  bool lower_is_better;  // compare time per call (latency) or calls per second
  double limit;
  std::function<double()> baseline, framex;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  asio::thread_pool pool(threads);
  // A spin budget (microseconds) other than the default, to see what spinning costs.
  const auto spin = argc > 2 ? std::chrono::microseconds(std::atoi(argv[2])) : framex::runtime_options{}.spin;
  framex::runtime rt({.threads = threads, .spin = spin});
  framex::runtime_scope scope(rt);

  const std::vector<row> rows = {
      {"async fn: .remote(x) vs fn(x)", "<= 1.2x", true, 1.2,
       [] { return per_call_ns(2'000'000, 1, [](int i) { return async_twice(i); }); },
       [] { return per_call_ns(2'000'000, 1, [](int i) { return async_fn.remote(i); }); }},
      {"blocking fn, 1 in flight (latency)", "<= 1.3x", true, 1.3,
       [&] { return per_call_ns(20'000, 1, [&](int i) { return baseline_call(pool, i); }); },
       [] { return per_call_ns(20'000, 1, [](int i) { return blocking_fn.remote(i); }); }},
      {"blocking fn, 64 in flight (throughput)", ">= 0.8x", false, 0.8,
       [&] { return per_call_ns(256'000, 64, [&](int i) { return baseline_call(pool, i); }); },
       [] { return per_call_ns(256'000, 64, [](int i) { return blocking_fn.remote(i); }); }},
  };

  std::printf("framex local runtime vs hand-written Asio; %zu pool threads, median of %d rounds\n\n", threads,
              rounds);
  std::printf("%-40s %14s %14s %8s %9s %s\n", "case", "baseline", "framex", "ratio", "target", "");
  bool all_met = true;
  for (const auto& r : rows) {
    std::vector<double> base, fx;
    r.baseline();  // warm-up: thread caches, page faults
    r.framex();
    for (int i = 0; i < rounds; ++i) {
      base.push_back(r.baseline());
      fx.push_back(r.framex());
    }
    const double b = median(base), f = median(fx);
    // Latency rows compare ns per call; the throughput row compares calls per second.
    const double ratio = r.lower_is_better ? f / b : b / f;
    const bool met = r.lower_is_better ? ratio <= r.limit : ratio >= r.limit;
    all_met = all_met && met;
    if (r.lower_is_better) {
      std::printf("%-40s %11.1f ns %11.1f ns %7.2fx %9s %s\n", r.name.c_str(), b, f, ratio, r.target.c_str(),
                  met ? "met" : "MISSED");
    } else {
      std::printf("%-40s %10.0f k/s %10.0f k/s %7.2fx %9s %s\n", r.name.c_str(), 1e6 / b, 1e6 / f, ratio,
                  r.target.c_str(), met ? "met" : "MISSED");
    }
  }
  std::printf("\n%s\n", all_met ? "all targets met" : "some targets missed");
}
