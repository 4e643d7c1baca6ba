// distributed_bench — framex distributed mode against its floors and yardsticks,
// all on 127.0.0.1, in one run, printed side by side:
//
//   0. the cost of a call, counted on each side (allocations, system calls,
//      CPU time): a tiny async and blocking call, ping-pong and 128 in flight;
//   1. ping-pong latency (p50/p99) of a tiny call, 1 in flight, against a raw
//      TCP echo of the same bytes (blocking sockets: the floor);
//   2. throughput with 128 calls in flight on one connection to one worker,
//      against gRPC C++ unary calls of the same shape (generic callback API);
//      and 4 connections with 128 in flight each, against one connection and
//      against 4 gRPC channels;
//   0–2 run twice: with the runtime's own I/O thread reading the replies, and
//      with the caller's io_context serving the connections (`caller io`:
//      `framex::runtime(cfg, io)`, so a reply resumes its coroutine where it
//      was read);
//   2c. framex::rpc_client calling the same function by name against the
//      runtime's own path, both with the caller's io_context: ping-pong p50
//      and 128 in flight, alternating rounds;
//   2d. framex::map over 100,000 tiny calls (64 in flight) against the same
//      written by hand: 64 coroutines in a parallel_group taking the next input;
//   3. a 1 MiB binary argument echoed, against gRPC (by an async function, served
//      on the worker's I/O thread as gRPC's callback handler is, and by a
//      blocking one, which adds the hop to the worker's pool);
//   4. local vs distributed (1 and 2 workers): a no-op, 1 ms of CPU, a 10 ms
//      blocking sleep and a 1 MiB echo, 64 in flight each;
//   5. TLS (mutual, certificates made for the run) against plaintext, to
//      workers alike but for TLS: ping-pong p50 and 128-in-flight throughput,
//      and a reconnect's handshake resumed against a full one, with RSA-2048
//      and ECDSA P-256 certificates.
//
// Every server (framex workers, the echo server, the gRPC server) is this
// binary in another role, in its own process, stopped by PID at the end.
// gRPC is only a yardstick: it is compiled in when found (FRAMEX_BENCH_GRPC).
//
//   distributed_bench [--quick] [--only cost|pingpong|pipelined|connections|rpc_client|actor|refs|fanout|mib|compare|tls|discovery]
#include <framex/actor.hpp>
#include <framex/fan_out.hpp>
#include <framex/framex.hpp>
#include <framex/plugin.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <map>
#include <vector>

#include "cost.hpp"
#include "net/client.hpp"
#include "net/tls.hpp"
#include "etcd_process.hpp"
#include "tls_certs.hpp"

#ifdef FRAMEX_BENCH_GRPC
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#endif

extern char** environ;

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- the functions under test ----

asio::awaitable<int> tiny(int x) { co_return x; }  // async: served on the worker's I/O thread
int tiny_blocking(int x) { return x; }              // blocking: served on the worker's pool
int tiny_inline(int x) { return x; }                // blocking, marked inline_ok: served on the I/O thread
template <>
inline constexpr bool framex::inline_ok<&tiny_inline> = true;
void noop() {}
// What the process has allocated so far: called remotely, it reads the worker's counter.
std::uint64_t worker_allocations() { return framex::bench::allocations(); }
std::uint64_t worker_allocated_bytes() { return framex::bench::allocated_bytes(); }
int cpu_1ms() {
  const auto end = clock_type::now() + 1ms;
  int spins = 0;
  while (clock_type::now() < end) ++spins;
  return spins;
}
int sleep_10ms() {
  std::this_thread::sleep_for(10ms);
  return 10;
}
std::vector<std::byte> echo(std::vector<std::byte> data) { return data; }
asio::awaitable<std::vector<std::byte>> echo_async(std::vector<std::byte> data) { co_return data; }

// An actor whose method does what tiny_blocking does, on its live object.
struct bench_actor {
  int calls = 0;
  int tiny(int x) {
    ++calls;
    return x;
  }
  asio::awaitable<int> tiny_async(int x) {
    ++calls;
    co_return x;
  }
};

// A plugin whose function API does what `tiny` does.
struct bench_plugin {
  asio::awaitable<int> tiny(int x) { co_return x; }
};
FRAMEX_PLUGIN(bench_plugin, framex::plugin_metadata{.name = "benchplug", .version = "1"},
              framex::on_request<&bench_plugin::tiny>("/benchplug/tiny", {.params = {"x"}, .func_api = true}));

// Reads all of a large argument, as a scoring function would.
std::uint64_t sum_of(const std::vector<std::byte>& data, int salt) {
  std::uint64_t sum = static_cast<std::uint64_t>(salt);
  for (const std::byte b : data) sum += static_cast<std::uint64_t>(b);
  return sum;
}

constexpr auto tiny_fn = framex::remote<&tiny>;
constexpr auto tiny_blocking_fn = framex::remote<&tiny_blocking>;
constexpr auto noop_fn = framex::remote<&noop>;
constexpr auto cpu_fn = framex::remote<&cpu_1ms>;
constexpr auto sleep_fn = framex::remote<&sleep_10ms>;
constexpr auto echo_fn = framex::remote<&echo>;

namespace {

bool quick = false;
std::string only;  // empty: every section
bool section(const char* name) { return only.empty() || only == name; }

// ---- child processes ----

struct child {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

child spawn(std::vector<std::string> args) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  args.insert(args.begin(), "/proc/self/exe");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  child c;
  if (::posix_spawn(&c.pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ) != 0) {
    throw std::runtime_error("spawn");
  }
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) throw std::runtime_error("a server did not start");
    char buf[128];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) throw std::runtime_error("a server did not start");
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  c.port = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
  return c;
}

void stop(child& c) {
  if (c.pid <= 0) return;
  ::kill(c.pid, SIGTERM);
  ::waitpid(c.pid, nullptr, 0);
  c.pid = -1;
}

// ---- the raw TCP echo floor ----

int run_echo_server() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::printf("echo listening on 127.0.0.1:%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  for (;;) {
    auto socket = std::make_shared<asio::ip::tcp::socket>(io);
    acceptor.accept(*socket);
    socket->set_option(asio::ip::tcp::no_delay(true));
    std::thread([socket] {
      std::vector<char> buf(1 << 16);
      boost::system::error_code ec;
      for (;;) {
        const std::size_t n = socket->read_some(asio::buffer(buf), ec);
        if (ec) return;
        asio::write(*socket, asio::buffer(buf.data(), n), ec);
        if (ec) return;
      }
    }).detach();
  }
}

struct latency {
  double p50_us = 0, p99_us = 0;
};

latency summarize(std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  return {samples[samples.size() / 2], samples[samples.size() * 99 / 100]};
}

latency raw_echo_pingpong(std::uint16_t port, std::size_t bytes, int rounds) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  s.set_option(asio::ip::tcp::no_delay(true));
  std::vector<char> out(bytes, 'x'), in(bytes);
  std::vector<double> samples;
  for (int i = -rounds / 10; i < rounds; ++i) {
    const auto start = clock_type::now();
    asio::write(s, asio::buffer(out));
    asio::read(s, asio::buffer(in));
    if (i >= 0) samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
  }
  return summarize(samples);
}

// ---- framex measurements ----

// The io_context that serves a runtime's connections, for runtimes built with
// one (`framex::runtime(cfg, io)`): the bench's calls through such a runtime
// run on it, on `threads` threads in `framex_throughput`.
struct served_by {
  asio::io_context* io;
  int threads = 1;
};
std::map<const framex::runtime*, served_by> caller_io;

// A caller's io_context never runs out of work while its runtime's connections
// are open: what runs on it stops it when done. (Not `run_one` in a loop,
// which gives each call a fresh thread cache of Asio's and so an allocation.)
// Null `on`: a fresh io_context of its own.
template <class Make>
auto run_on_io(const served_by* on, Make make) {
  if (on != nullptr) {
    asio::io_context& io = *on->io;
    std::optional<typename decltype(make())::value_type> result;
    std::exception_ptr error;
    asio::co_spawn(io, make(), [&](std::exception_ptr e, auto r) {
      error = e;
      result = std::move(r);
      io.stop();
    });
    io.restart();
    io.run();
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }
  asio::io_context io(1);
  auto f = asio::co_spawn(io, make(), asio::use_future);
  io.run();
  return f.get();
}

const served_by* served(const framex::runtime& rt) {
  const auto it = caller_io.find(&rt);
  return it != caller_io.end() ? &it->second : nullptr;
}

// Round-trip latency of `call()`, one at a time.
template <class Call>
latency pingpong_with(const served_by* on, int rounds, Call call) {
  return run_on_io(on, [&]() -> asio::awaitable<latency> {
    std::vector<double> samples;
    for (int i = -rounds / 10; i < rounds; ++i) {
      const auto start = clock_type::now();
      co_await call();
      if (i >= 0) samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
    }
    co_return summarize(samples);
  });
}

template <auto Fn, class... Args>
latency framex_pingpong(framex::runtime& rt, int rounds, Args... args) {
  return pingpong_with(served(rt), rounds, [&] { return framex::remote<Fn>.with({.runtime = &rt}).remote(args...); });
}

// Calls per second with `in_flight` coroutines each making calls until `total` are done.
template <class Call>
double throughput_with(const served_by* on, int in_flight, int total, Call call) {
  asio::io_context own_io(1);
  asio::io_context& io = on != nullptr ? *on->io : own_io;
  std::atomic<int> issued{0}, failures{0}, running{in_flight};
  for (int c = 0; c < in_flight; ++c) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          while (issued.fetch_add(1) < total) co_await call();
        },
        [&](std::exception_ptr e) {
          if (e) ++failures;
          if (--running == 0) io.stop();
        });
  }
  const auto start = clock_type::now();
  io.restart();
  std::vector<std::thread> more;
  for (int i = 1; i < (on != nullptr ? on->threads : 1); ++i) more.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : more) t.join();
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  if (failures != 0) std::printf("  (%d coroutines failed)\n", failures.load());
  return total / seconds;
}

template <auto Fn, class... Args>
double framex_throughput(framex::runtime& rt, int in_flight, int total, Args... args) {
  return throughput_with(served(rt), in_flight, total, [&] { return framex::remote<Fn>.with({.runtime = &rt}).remote(args...); });
}

framex::config distributed(std::vector<std::string> workers) {
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.workers = std::move(workers);
  return cfg;
}

// ---- gRPC yardstick ----

#ifdef FRAMEX_BENCH_GRPC
class echo_service final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class reactor final : public grpc::ServerGenericBidiReactor {
     public:
      reactor() { StartRead(&buf_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        StartWrite(&buf_);
      }
      void OnWriteDone(bool ok) override { Finish(ok ? grpc::Status::OK : grpc::Status::CANCELLED); }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer buf_;
    };
    return new reactor;
  }
};

int run_grpc_server() {
  echo_service service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  auto server = builder.BuildAndStart();
  std::printf("grpc listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}

struct grpc_client {
  // Clients of different `index`es have connections of their own.
  explicit grpc_client(const std::string& address, int index = 0) {
    grpc::ChannelArguments args;
    args.SetInt("framex.bench.channel", index);
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub = std::make_unique<grpc::GenericStub>(channel);
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
};

grpc::ByteBuffer bytes_of(std::size_t n) {
  std::string s(n, 'x');
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

// Calls per second with `in_flight` unary calls outstanding until `total` are done.
double grpc_throughput(grpc_client& c, int in_flight, int total, std::size_t bytes) {
  const grpc::ByteBuffer request = bytes_of(bytes);
  std::atomic<int> issued{0}, done{0};
  std::mutex m;
  std::condition_variable cv;
  struct call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer response;
  };
  std::function<void()> issue = [&] {
    if (issued.fetch_add(1) >= total) return;
    auto* k = new call;
    c.stub->UnaryCall(&k->ctx, "/bench.Echo/Call", grpc::StubOptions(), &request, &k->response,
                      [&, k](grpc::Status s) {
                        delete k;
                        if (!s.ok()) std::printf("  grpc call failed: %s\n", s.error_message().c_str());
                        issue();
                        // The last touch of this frame's locals: the waiter returns once it sees `total`.
                        std::lock_guard lock(m);
                        if (done.fetch_add(1) + 1 == total) cv.notify_all();
                      });
  };
  const auto start = clock_type::now();
  for (int i = 0; i < in_flight; ++i) issue();
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return done.load() == total; });
  return total / std::chrono::duration<double>(clock_type::now() - start).count();
}

// Calls per second of `clients.size()` channels at once, each with `in_flight` calls outstanding.
double grpc_throughput(std::vector<std::unique_ptr<grpc_client>>& clients, int in_flight, int total) {
  const auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (auto& c : clients) {
    threads.emplace_back([&c, in_flight, each = total / static_cast<int>(clients.size())] { (void)grpc_throughput(*c, in_flight, each, 4); });
  }
  for (auto& t : threads) t.join();
  return total / std::chrono::duration<double>(clock_type::now() - start).count();
}
#endif

// ---- TLS ----

// A TLS worker (mutual TLS) with certificates of `type`, and a caller's settings for it.
struct tls_setup_for_bench {
  explicit tls_setup_for_bench(framex::test::pki::key_type type)
      : ca("bench CA", type), worker(ca.issue("worker", "IP:127.0.0.1")), caller(ca.issue("caller", "DNS:caller")) {}
  child spawn_worker() const {
    return spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--worker.tls", "true", "--worker.cert_file",
                  worker.cert, "--worker.key_file", worker.key, "--worker.ca_file", ca.ca_file(),
                  "--worker.require_client_cert", "true"});
  }
  framex::tls_settings settings() const {
    return {.enabled = true, .ca_file = ca.ca_file(), .cert_file = caller.cert, .key_file = caller.key};
  }
  framex::test::pki ca;
  framex::test::pki::files worker, caller;
};

// A pending call that hands its outcome to a future.
struct awaited_call final : framex::net::pending_call {
  std::promise<void> answered;
  void on_response(framex::net::received_message) noexcept override { answered.set_value(); }
  void on_lost(std::error_code) noexcept override { answered.set_value(); }
};

// Median microseconds from connect to the first answer (TCP, TLS handshake,
// one call) over `rounds` connections: each a full handshake, or each resuming
// the session of the one before.
// Without `t`: plaintext, the floor.
double reconnect_us(const tls_setup_for_bench* t, std::uint16_t port, bool resume, int rounds) {
  std::shared_ptr<framex::net::tls_context> context;
  if (t != nullptr) {
    const auto s = t->settings();
    context = std::make_shared<framex::net::tls_context>(framex::net::tls_context::role::client,
                                                         framex::net::tls_files{s.ca_file, s.cert_file, s.key_file}, "bench");
  }
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  std::vector<double> samples;
  int resumed = 0;
  for (int i = -2; i < rounds; ++i) {
    if (context && !resume) context->forget_sessions();
    const auto start = clock_type::now();
    asio::ip::tcp::socket socket(asio::make_strand(io));
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    auto conn = std::make_shared<framex::net::client>(std::move(socket), framex::net::connection_limits{},
                                                      framex::net::tls_setup{context, "127.0.0.1", "worker"});
    conn->start();
    awaited_call call;
    auto answered = call.answered.get_future();
    framex::detail::message_buffer body(32);
    msgpack::packer<framex::detail::message_buffer> p(body);
    p.pack_array(0);
    conn->call("bench.none", std::move(body), call);
    answered.wait();
    if (i >= 0) {
      samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
      resumed += conn->tls_resumed() || !context ? 1 : 0;
    }
    conn->close(std::make_error_code(std::errc::connection_aborted));
  }
  guard.reset();
  runner.join();
  if (resume && resumed != rounds) std::printf("  (only %d of %d reconnects resumed)\n", resumed, rounds);
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// CPU seconds this process and `worker` have used so far.
double cpu_seconds(pid_t worker) { return framex::bench::cpu_seconds(0) + framex::bench::cpu_seconds(worker); }

// ---- the cost of a call, counted ----

struct call_cost {
  std::optional<double> allocs_caller, allocs_worker, syscalls_caller, syscalls_worker;
  double cpu_caller_us = 0, cpu_worker_us = 0;
};

// Runs `run`, which makes `calls` calls through `rt` to the one worker `worker`,
// and counts what they cost each side.
template <class Run>
call_cost measure_cost(framex::runtime& rt, pid_t worker, int calls, Run run) {
  const auto worker_allocs = [&] {
    return run_on_io(served(rt), [&] { return framex::remote<&worker_allocations>.with({.runtime = &rt}).remote(); });
  };
  framex::bench::syscall_counter caller_sys, worker_sys;
  const bool perf = caller_sys.attach(0) && worker_sys.attach(worker);
  const std::uint64_t w0 = worker_allocs();
  const double c0 = framex::bench::cpu_seconds(0), cw0 = framex::bench::cpu_seconds(worker);
  caller_sys.start();
  worker_sys.start();
  const std::uint64_t a0 = framex::bench::allocations();
  run();
  const std::uint64_t a1 = framex::bench::allocations();
  worker_sys.stop();
  caller_sys.stop();
  call_cost c;
  c.cpu_caller_us = (framex::bench::cpu_seconds(0) - c0) * 1e6 / calls;
  c.cpu_worker_us = (framex::bench::cpu_seconds(worker) - cw0) * 1e6 / calls;
  const std::uint64_t w1 = worker_allocs();
  if (framex::bench::allocations_counted()) {
    c.allocs_caller = static_cast<double>(a1 - a0) / calls;
    c.allocs_worker = static_cast<double>(w1 - w0) / calls;
  }
  if (perf) {
    const auto sc = caller_sys.detach(), sw = worker_sys.detach();
    if (sc) c.syscalls_caller = static_cast<double>(*sc) / calls;
    if (sw) c.syscalls_worker = static_cast<double>(*sw) / calls;
  }
  return c;
}

// Round-trip latency of GET `target`, one request at a time on one
// keep-alive connection.
latency http_pingpong(std::uint16_t port, const std::string& target, int rounds) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  beast::flat_buffer buffer;
  std::vector<double> samples;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (int i = -rounds / 10; i < rounds; ++i) {
    const auto start = clock_type::now();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    if (res.result_int() != 200) throw std::runtime_error(target + " answered " + std::to_string(res.result_int()));
    if (i >= 0) samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
  }
  return summarize(samples);
}

int app_tiny(int x) { return x; }

// ---- the report ----

void row(const char* what, const std::string& a, const std::string& b, const std::string& ratio) {
  std::printf("| %-52s | %-22s | %-22s | %-12s |\n", what, a.c_str(), b.c_str(), ratio.c_str());
}
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string lat(const latency& l) { return fmt("%.1f", l.p50_us) + " / " + fmt("%.1f us", l.p99_us); }
std::string pair(const std::optional<double>& caller, const std::optional<double>& worker, const char* f) {
  if (!caller || !worker) return "-";
  return fmt(f, *caller) + " + " + fmt(f, *worker);
}
void cost_row(const char* what, const std::string& timing, const call_cost& c) {
  std::printf("| %-34s | %-16s | %-16s | %-16s | %-16s |\n", what, timing.c_str(),
              pair(c.allocs_caller, c.allocs_worker, "%.2f").c_str(), pair(c.syscalls_caller, c.syscalls_worker, "%.2f").c_str(),
              pair(std::optional<double>(c.cpu_caller_us), std::optional<double>(c.cpu_worker_us), "%.1f").c_str());
}

int run_driver() {
  const int rounds = quick ? 2000 : 20000;
  const int total = quick ? 20000 : 200000;
  child w1 = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2"});
  child w2 = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2"});
  child echo_server = spawn({"--echo-server"});
#ifdef FRAMEX_BENCH_GRPC
  child grpc_server = spawn({"--grpc-server"});
#endif
  std::printf("framex distributed_bench: 127.0.0.1, %u hardware threads, %d ping-pong rounds, %d pipelined calls\n\n",
              std::thread::hardware_concurrency(), rounds, total);

  framex::runtime one(distributed({w1.address()}));
  framex::runtime two(distributed({w1.address(), w2.address()}));
  framex::runtime local(framex::runtime_options{.threads = 2});
  // The same worker, its connection served by the caller's own io_context.
  asio::io_context own_io(1);
  framex::runtime mine(distributed({w1.address()}), own_io);
  caller_io[&mine] = {&own_io};
  // The same function called by name through an rpc_client, also served by its caller's io_context.
  asio::io_context rpc_io(1);
  framex::rpc_client rpc(rpc_io.get_executor(), w1.address());
  const served_by rpc_on{&rpc_io};
  const std::string tiny_name = framex::detail::registration<&tiny>::entry.name;
  const auto rpc_call = [&] { return rpc.call<int>(tiny_name, 1); };
  (void)framex_pingpong<&tiny>(one, 100, 1);  // connect and warm up
  (void)framex_pingpong<&tiny>(mine, 100, 1);
  (void)pingpong_with(&rpc_on, 100, rpc_call);


  // 0. What a call costs, counted: allocations and system calls per call on
  // each side (caller + worker), beside its time and CPU time.
  if (section("cost")) {
    std::printf("| %-34s | %-16s | %-16s | %-16s | %-16s |\n", "cost per call (caller + worker)", "time",
                "allocations", "system calls", "CPU us");
    std::printf("|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(18, '-').c_str(),
                std::string(18, '-').c_str(), std::string(18, '-').c_str(), std::string(18, '-').c_str());
    const int pp_calls = rounds + rounds / 10;  // framex_pingpong warms up with a tenth more
    latency l;
    auto c = measure_cost(one, w1.pid, pp_calls, [&] { l = framex_pingpong<&tiny>(one, rounds, 1); });
    cost_row("async tiny call, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    c = measure_cost(one, w1.pid, pp_calls, [&] { l = framex_pingpong<&tiny_blocking>(one, rounds, 1); });
    cost_row("blocking tiny call, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    c = measure_cost(one, w1.pid, pp_calls, [&] { l = framex_pingpong<&tiny_inline>(one, rounds, 1); });
    cost_row("blocking, inline_ok, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    double rate = 0;
    c = measure_cost(one, w1.pid, total / 2, [&] { rate = framex_throughput<&tiny>(one, 128, total / 2, 1); });
    cost_row("async tiny call, 128 in flight", fmt("%.0f calls/s", rate), c);
    c = measure_cost(one, w1.pid, total / 2, [&] { rate = framex_throughput<&tiny_blocking>(one, 128, total / 2, 1); });
    cost_row("blocking tiny call, 128 in flight", fmt("%.0f calls/s", rate), c);
    // The caller's io_context serves the connection: a reply resumes its
    // coroutine where it was read, and the calls that follow leave together.
    c = measure_cost(mine, w1.pid, pp_calls, [&] { l = framex_pingpong<&tiny>(mine, rounds, 1); });
    cost_row("caller io: async, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    c = measure_cost(mine, w1.pid, pp_calls, [&] { l = framex_pingpong<&tiny_blocking>(mine, rounds, 1); });
    cost_row("caller io: blocking, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    c = measure_cost(mine, w1.pid, total / 2, [&] { rate = framex_throughput<&tiny>(mine, 128, total / 2, 1); });
    cost_row("caller io: async, 128 in flight", fmt("%.0f calls/s", rate), c);
    c = measure_cost(mine, w1.pid, total / 2, [&] { rate = framex_throughput<&tiny_blocking>(mine, 128, total / 2, 1); });
    cost_row("caller io: blocking, 128 in flight", fmt("%.0f calls/s", rate), c);
    c = measure_cost(mine, w1.pid, pp_calls, [&] { l = pingpong_with(&rpc_on, rounds, rpc_call); });
    cost_row("rpc_client: async, ping-pong", fmt("%.1f us p50", l.p50_us), c);
    c = measure_cost(mine, w1.pid, total / 2, [&] { rate = throughput_with(&rpc_on, 128, total / 2, rpc_call); });
    cost_row("rpc_client: async, 128 in flight", fmt("%.0f calls/s", rate), c);
    if (!framex::bench::allocations_counted()) std::printf("(allocations are not counted in a sanitizer build)\n");
    std::printf("\n");
  }

  std::printf("| %-52s | %-22s | %-22s | %-12s |\n", "case", "baseline", "framex", "ratio");
  std::printf("|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
              std::string(24, '-').c_str(), std::string(14, '-').c_str());
  // 1. Ping-pong. A tiny request is [0, id, "tiny", [1]]: 12 bytes; use that for the echo.
  if (section("pingpong")) {
  const latency floor = raw_echo_pingpong(echo_server.port, 12, rounds);
  const auto against_floor = [&](const char* what, const latency& l) {
    row(what, lat(floor), lat(l), fmt("%.2fx p50", l.p50_us / floor.p50_us));
  };
  against_floor("ping-pong p50/p99: raw TCP echo vs async tiny call", framex_pingpong<&tiny>(one, rounds, 1));
  against_floor("ping-pong p50/p99: raw TCP echo vs blocking tiny call", framex_pingpong<&tiny_blocking>(one, rounds, 1));
  against_floor("ping-pong p50/p99: raw TCP echo vs async, caller io", framex_pingpong<&tiny>(mine, rounds, 1));
  against_floor("ping-pong p50/p99: raw TCP echo vs blocking, caller io", framex_pingpong<&tiny_blocking>(mine, rounds, 1));
  }
#ifdef FRAMEX_BENCH_GRPC
  grpc_client g(grpc_server.address());
  (void)grpc_throughput(g, 8, 1000, 4);  // connect and warm up
#endif

  // 2. Pipelined throughput, 128 in flight, one connection, one worker.
  // framex and gRPC alternate over 5 rounds and the medians are compared, so
  // drift in the machine's speed hits both alike.
  constexpr int alternations = 5;
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const auto compare_rounds = [&](const char* what, auto framex_round, [[maybe_unused]] auto grpc_round) {
    std::vector<double> fx, base;
    for (int r = 0; r < alternations; ++r) {
      fx.push_back(framex_round());
#ifdef FRAMEX_BENCH_GRPC
      base.push_back(grpc_round());
#endif
    }
#ifdef FRAMEX_BENCH_GRPC
    row(what, fmt("%.0f calls/s", median(base)), fmt("%.0f calls/s", median(fx)), fmt("%.2fx", median(fx) / median(base)));
#else
    row(what, "(gRPC not built)", fmt("%.0f calls/s", median(fx)), "-");
#endif
  };

  // 2. Pipelined throughput, 128 in flight, one connection, one worker.
  if (section("pipelined")) {
    const auto grpc_128 = [&] {
#ifdef FRAMEX_BENCH_GRPC
      return grpc_throughput(g, 128, total / alternations, 4);
#else
      return 0.0;
#endif
    };
    compare_rounds("128 in flight, 1 connection: gRPC unary vs framex",
                   [&] { return framex_throughput<&tiny>(one, 128, total / alternations, 1); }, grpc_128);
    compare_rounds("128 in flight, 1 connection: gRPC unary vs framex, caller io",
                   [&] { return framex_throughput<&tiny>(mine, 128, total / alternations, 1); }, grpc_128);
  }

  // 2b. Several connections: a worker and a caller with two I/O threads each,
  // 4 connections with 128 calls in flight on each, against one connection
  // with 128 and against 4 gRPC channels with 128 each.
  if (section("connections")) {
    child wc = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--worker.io_threads", "2"});
    auto one_cfg = distributed({wc.address()});
    one_cfg.distributed.io_threads = 2;
    auto four_cfg = one_cfg;
    four_cfg.distributed.connections_per_worker = 4;
    // One connection with 128 in flight against four with 128 each,
    // alternating; and how many cores caller and worker kept busy meanwhile
    // (CPU seconds per second), which bounds what more connections can add.
    const auto one_against_four = [&](const char* what, framex::runtime& one_rt, framex::runtime& four_rt) {
      (void)framex_throughput<&tiny>(one_rt, 128, 2000, 1);  // connect and warm up
      (void)framex_throughput<&tiny>(four_rt, 512, 8000, 1);
      std::vector<double> one_rates, four_rates, one_busy, four_busy;
      const auto busy = [&](std::vector<double>& rates, std::vector<double>& cores, auto run) {
        const double cpu0 = cpu_seconds(wc.pid);
        const auto t0 = clock_type::now();
        rates.push_back(run());
        cores.push_back((cpu_seconds(wc.pid) - cpu0) / std::chrono::duration<double>(clock_type::now() - t0).count());
      };
      for (int r = 0; r < alternations; ++r) {
        busy(one_rates, one_busy, [&] { return framex_throughput<&tiny>(one_rt, 128, total / alternations, 1); });
        busy(four_rates, four_busy, [&] { return framex_throughput<&tiny>(four_rt, 512, total / alternations, 1); });
      }
      row(what, fmt("%.0f calls/s", median(one_rates)), fmt("%.0f calls/s", median(four_rates)),
          fmt("%.2fx", median(four_rates) / median(one_rates)));
      row("  cores busy (caller + worker), 1 vs 4 connections", fmt("%.2f", median(one_busy)), fmt("%.2f", median(four_busy)),
          "-");
    };
    framex::runtime one_conn(one_cfg), four_conn(four_cfg);
    one_against_four("128 in flight: 1 connection vs 4 connections x 128", one_conn, four_conn);
#ifdef FRAMEX_BENCH_GRPC
    std::vector<std::unique_ptr<grpc_client>> channels;
    for (int i = 0; i < 4; ++i) channels.push_back(std::make_unique<grpc_client>(grpc_server.address(), i + 1));
    (void)grpc_throughput(channels, 128, 4000);  // connect and warm up
    compare_rounds("4 connections x 128 in flight: gRPC vs framex",
                   [&] { return framex_throughput<&tiny>(four_conn, 512, total / alternations, 1); },
                   [&] { return grpc_throughput(channels, 128, total / alternations); });
#endif
    // The same, the connections served by the caller's io_context on two threads.
    asio::io_context one_io, four_io;
    framex::runtime one_mine(one_cfg, one_io), four_mine(four_cfg, four_io);
    caller_io[&one_mine] = {&one_io, 2};
    caller_io[&four_mine] = {&four_io, 2};
    one_against_four("caller io, 2 threads: 1 connection vs 4 x 128", one_mine, four_mine);
#ifdef FRAMEX_BENCH_GRPC
    compare_rounds("4 connections x 128 in flight: gRPC vs framex, caller io",
                   [&] { return framex_throughput<&tiny>(four_mine, 512, total / alternations, 1); },
                   [&] { return grpc_throughput(channels, 128, total / alternations); });
#endif
    for (auto* rt : {&one_conn, &four_conn, &one_mine, &four_mine}) rt->shutdown();
    for (auto* io : {&one_io, &four_io}) {
      io->restart();
      io->run();  // until the connections have closed
    }
    stop(wc);
  }

  // 2c. rpc_client (a method name, a msgpack_value-free typed result) against
  // the runtime's own path: the same worker and function, both served by the
  // caller's io_context, alternating rounds.
  if (section("rpc_client")) {
    std::vector<double> runtime_pp, rpc_pp, runtime_tp, rpc_tp;
    for (int r = 0; r < alternations; ++r) {
      runtime_pp.push_back(framex_pingpong<&tiny>(mine, rounds / alternations, 1).p50_us);
      rpc_pp.push_back(pingpong_with(&rpc_on, rounds / alternations, rpc_call).p50_us);
      runtime_tp.push_back(framex_throughput<&tiny>(mine, 128, total / alternations, 1));
      rpc_tp.push_back(throughput_with(&rpc_on, 128, total / alternations, rpc_call));
    }
    row("ping-pong p50: runtime vs rpc_client, caller io", fmt("%.1f us", median(runtime_pp)), fmt("%.1f us", median(rpc_pp)),
        fmt("%.3fx", median(rpc_pp) / median(runtime_pp)));
    row("128 in flight: runtime vs rpc_client, caller io", fmt("%.0f calls/s", median(runtime_tp)),
        fmt("%.0f calls/s", median(rpc_tp)), fmt("%.3fx", median(rpc_tp) / median(runtime_tp)));
  }

  // 2c'. An actor's method against a stateless call of the same function:
  // blocking and async, ping-pong and 128 in flight (the actor's calls take
  // turns; the stateless ones run side by side), alternating rounds.
  if (section("actor")) {
    const framex::runtime_scope scope(mine);
    auto actor = run_on_io(served(mine), [] { return framex::spawn<bench_actor>(); });
    const auto method = [&] { return framex::remote<&bench_actor::tiny>.with({.runtime = &mine}).remote(actor, 1); };
    const auto async_method = [&] { return framex::remote<&bench_actor::tiny_async>.with({.runtime = &mine}).remote(actor, 1); };
    std::vector<double> stateless_pp, actor_pp, async_pp, actor_async_pp, stateless_tp, actor_tp;
    (void)pingpong_with(served(mine), 100, method);
    for (int r = 0; r < alternations; ++r) {
      stateless_pp.push_back(framex_pingpong<&tiny_blocking>(mine, rounds / alternations, 1).p50_us);
      actor_pp.push_back(pingpong_with(served(mine), rounds / alternations, method).p50_us);
      async_pp.push_back(framex_pingpong<&tiny>(mine, rounds / alternations, 1).p50_us);
      actor_async_pp.push_back(pingpong_with(served(mine), rounds / alternations, async_method).p50_us);
      stateless_tp.push_back(framex_throughput<&tiny_blocking>(mine, 128, total / alternations / 4, 1));
      actor_tp.push_back(throughput_with(served(mine), 128, total / alternations / 4, method));
    }
    row("ping-pong p50: blocking call vs actor method", fmt("%.1f us", median(stateless_pp)), fmt("%.1f us", median(actor_pp)),
        fmt("%.3fx", median(actor_pp) / median(stateless_pp)));
    row("ping-pong p50: async call vs async actor method", fmt("%.1f us", median(async_pp)), fmt("%.1f us", median(actor_async_pp)),
        fmt("%.3fx", median(actor_async_pp) / median(async_pp)));
    row("128 in flight: blocking call vs actor method", fmt("%.0f calls/s", median(stateless_tp)),
        fmt("%.0f calls/s", median(actor_tp)), fmt("%.3fx", median(actor_tp) / median(stateless_tp)));
  }

  // 2c''. A 64 MiB argument used by 20 calls (4 at a time) over 2 workers:
  // by value, then as an object reference (written once to storage by `put`,
  // read once by each worker); wall time and bytes sent on the caller's
  // connections, in alternating rounds.
  if (section("refs")) {
    char dir[] = "/tmp/framex-bench-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp");
    const std::vector<std::string> args = {"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--storage.path", dir,
                                           "--distributed.max_message_size", "100000000"};
    child wa = spawn(args), wb = spawn(args);
    auto cfg = distributed({wa.address(), wb.address()});
    cfg.distributed.max_message_size = 100000000;
    cfg.storage.path = dir;
    {
      framex::runtime rt(cfg);
      std::vector<std::byte> data(std::size_t{64} << 20);
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 131);
      const auto sent = [&] {
        std::uint64_t n = 0;
        for (const auto& w : framex::stats(rt).workers) n += w.bytes_sent;
        return n;
      };
      const auto calls_with = [&](const auto& arg) {
        run_on_io(nullptr, [&]() -> asio::awaitable<int> {
          for (int round = 0; round < 5; ++round) {
            std::vector<framex::started<std::uint64_t>> calls;
            for (int i = 0; i < 4; ++i) calls.push_back(co_await framex::start(framex::remote<&sum_of>.with({.runtime = &rt}).remote(arg, i)));
            for (auto& c : calls) (void)co_await c.get();
          }
          co_return 0;
        });
      };
      std::vector<double> value_s, ref_s, value_bytes, ref_bytes;
      for (int r = 0; r < (quick ? 1 : 3); ++r) {
        auto before = sent();
        auto start = clock_type::now();
        calls_with(data);
        value_s.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
        value_bytes.push_back(static_cast<double>(sent() - before));
        data[static_cast<std::size_t>(r)] = std::byte{1};  // new content: a new object, read anew
        before = sent();
        start = clock_type::now();
        const auto ref = run_on_io(nullptr, [&] { return framex::put(data, &rt); });
        calls_with(ref);
        ref_s.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
        ref_bytes.push_back(static_cast<double>(sent() - before));
      }
      row("64 MiB x 20 calls, 2 workers: by value vs object_ref, wall", fmt("%.2f s", median(value_s)), fmt("%.2f s", median(ref_s)),
          fmt("%.3fx", median(ref_s) / median(value_s)));
      row("  bytes sent on the caller's connections", fmt("%.0f", median(value_bytes)), fmt("%.0f", median(ref_bytes)),
          fmt("%.0fx fewer", median(value_bytes) / std::max(1.0, median(ref_bytes))));
    }
    stop(wa);
    stop(wb);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  // 2d. framex::map against a hand-written bounded fan-out of the same calls
  // (both with the caller's io_context), alternating rounds.
  if (section("fanout")) {
    const int n = quick ? 20000 : 100000;
    std::vector<int> inputs(static_cast<std::size_t>(n), 1);
    const auto timed = [&](auto make) {
      return run_on_io(served(mine), [&]() -> asio::awaitable<double> {
        const auto start = clock_type::now();
        const std::vector<int> out = co_await make();
        if (out.size() != inputs.size()) std::printf("  (%zu results for %zu inputs)\n", out.size(), inputs.size());
        co_return n / std::chrono::duration<double>(clock_type::now() - start).count();
      });
    };
    const auto by_map = [&]() -> asio::awaitable<std::vector<int>> {
      co_return co_await framex::map(framex::remote<&tiny>.with({.runtime = &mine}), inputs, {.max_in_flight = 64});
    };
    const auto by_hand = [&]() -> asio::awaitable<std::vector<int>> {
      std::vector<int> out(inputs.size());
      std::size_t next = 0;  // one thread runs the caller's io_context here
      const auto worker = [&]() -> asio::awaitable<void> {
        for (std::size_t i; (i = next++) < inputs.size();) out[i] = co_await framex::remote<&tiny>.with({.runtime = &mine}).remote(inputs[i]);
      };
      const auto ex = co_await asio::this_coro::executor;
      std::vector<decltype(asio::co_spawn(ex, worker(), asio::deferred))> ops;
      for (int w = 0; w < 64; ++w) ops.push_back(asio::co_spawn(ex, worker(), asio::deferred));
      (void)co_await asio::experimental::make_parallel_group(std::move(ops)).async_wait(asio::experimental::wait_for_one_error(),
                                                                                         asio::use_awaitable);
      co_return out;
    };
    std::vector<double> hand, mapped;
    for (int r = 0; r < alternations; ++r) {
      hand.push_back(timed(by_hand));
      mapped.push_back(timed(by_map));
    }
    row("100,000 tiny calls, 64 in flight: by hand vs map", fmt("%.0f calls/s", median(hand)), fmt("%.0f calls/s", median(mapped)),
        fmt("%.2fx", median(mapped) / median(hand)));
  }

  // 3. 1 MiB binary echo, one at a time.
  const std::vector<std::byte> mib(1 << 20, std::byte{7});
  const int mib_rounds = quick ? 50 : 300;
  if (section("mib")) {
    const auto grpc_mib = [&] {
#ifdef FRAMEX_BENCH_GRPC
      return grpc_throughput(g, 1, mib_rounds / alternations, 1 << 20);
#else
      return 0.0;
#endif
    };
    // gRPC's callback handler runs on its I/O threads, like an async function.
    compare_rounds("1 MiB echo, 1 in flight: gRPC vs framex async fn",
                   [&] { return framex_throughput<&echo_async>(one, 1, mib_rounds / alternations, mib); }, grpc_mib);
    compare_rounds("1 MiB echo, 1 in flight: gRPC vs framex blocking fn",
                   [&] { return framex_throughput<&echo>(one, 1, mib_rounds / alternations, mib); }, grpc_mib);
    // The two kinds of function against each other, and what the worker
    // allocates per echo (the decoded argument is 1 MiB of it).
    const auto worker_bytes = [&] {
      return run_on_io(served(one), [&] { return framex::remote<&worker_allocated_bytes>.with({.runtime = &one}).remote(); });
    };
    std::vector<double> async_rate, blocking_rate;
    std::uint64_t async_bytes = 0, blocking_bytes = 0;
    for (int r = 0; r < alternations; ++r) {
      std::uint64_t b0 = worker_bytes();
      async_rate.push_back(framex_throughput<&echo_async>(one, 1, mib_rounds / alternations, mib));
      std::uint64_t b1 = worker_bytes();
      async_bytes += b1 - b0;
      blocking_rate.push_back(framex_throughput<&echo>(one, 1, mib_rounds / alternations, mib));
      blocking_bytes += worker_bytes() - b1;
    }
    row("1 MiB echo, 1 in flight: async fn vs blocking fn", fmt("%.0f calls/s", median(async_rate)),
        fmt("%.0f calls/s", median(blocking_rate)), fmt("%.2fx", median(blocking_rate) / median(async_rate)));
    if (framex::bench::allocations_counted()) {
      const double per = static_cast<double>(alternations * (mib_rounds / alternations));
      row("1 MiB echo: worker MiB allocated per call, async vs blocking",
          fmt("%.2f MiB", static_cast<double>(async_bytes) / per / (1 << 20)),
          fmt("%.2f MiB", static_cast<double>(blocking_bytes) / per / (1 << 20)), "-");
    }
  }

  // 4. Local vs distributed, 64 in flight.
  if (section("compare")) {
  std::printf("\n| %-30s | %-16s | %-22s | %-22s |\n", "64 in flight (calls/s)", "local (2 threads)",
              "distributed, 1 worker", "distributed, 2 workers");
  std::printf("|%s|%s|%s|%s|\n", std::string(32, '-').c_str(), std::string(18, '-').c_str(),
              std::string(24, '-').c_str(), std::string(24, '-').c_str());
  const auto compare = [&](const char* name, auto measure) {
    const double l = measure(local), d1 = measure(one), d2 = measure(two);
    std::printf("| %-30s | %-16.0f | %-22.0f | %-22.0f |\n", name, l, d1, d2);
  };
  compare("no-op", [&](framex::runtime& rt) { return framex_throughput<&noop>(rt, 64, total / 2); });
  compare("1 ms of CPU", [&](framex::runtime& rt) { return framex_throughput<&cpu_1ms>(rt, 64, quick ? 500 : 3000); });
  compare("10 ms blocking sleep", [&](framex::runtime& rt) { return framex_throughput<&sleep_10ms>(rt, 64, quick ? 200 : 1000); });
  compare("1 MiB echo", [&](framex::runtime& rt) { return framex_throughput<&echo>(rt, 64, mib_rounds, mib); });
  }

  // 5. TLS against plaintext, alternating rounds against twin workers. A
  // handshake's cost is a reconnect's time (TCP connect, handshake, one call)
  // less a plaintext reconnect's.
  // Plugins: a function API called by name (JSON arguments) and typed, vs
  // `remote` of the same function; local, then deployed to a worker. And the
  // ingress: /ping with plugins loaded vs none, a plugin route vs an app route.
  if (section("plugins")) {
    const auto by_name = [] {
      boost::json::object args{{"x", 1}};
      return framex::call_plugin_api<int>("benchplug.tiny", std::move(args));
    };
    const auto typed = [] { return framex::plugin_api<&bench_plugin::tiny>.remote(1); };
    const auto compare_calls = [&](const std::string& where, framex::runtime& rt) {
      const latency direct = framex_pingpong<&tiny>(rt, rounds, 1);
      const latency named = pingpong_with(nullptr, rounds, by_name);
      const latency typed_l = pingpong_with(nullptr, rounds, typed);
      row((where + ": remote<&tiny> vs call_plugin_api by name").c_str(), lat(direct), lat(named),
          fmt("%.2fx p50", named.p50_us / direct.p50_us));
      row((where + ": remote<&tiny> vs plugin_api<&m>.remote").c_str(), lat(direct), lat(typed_l),
          fmt("%.2fx p50", typed_l.p50_us / direct.p50_us));
    };
    framex::config plain;
    plain.server.port = 0;
    plain.server.dashboard_port = 0;
    plain.log.level = "warn";
    {
      framex::config cfg = plain;
      cfg.plugins.load = {"benchplug"};
      cfg.plugins.load_builtin = {"echo"};
      framex::app with_plugins{cfg};
      with_plugins.on_request("/api/v1/tiny", &app_tiny, {.params = {"x"}});
      with_plugins.start();
      compare_calls("local", local);
      framex::app without{plain};
      without.start();
      const int http_rounds = rounds / 2;
      const latency ping_plain = http_pingpong(without.port(), "/ping", http_rounds);
      const latency ping_plugins = http_pingpong(with_plugins.port(), "/ping", http_rounds);
      row("ingress /ping: no plugins vs plugins loaded", lat(ping_plain), lat(ping_plugins),
          fmt("%.2fx rate", ping_plain.p50_us / ping_plugins.p50_us));
      const latency app_route = http_pingpong(with_plugins.port(), "/api/v1/tiny?x=1", http_rounds);
      const latency plugin_route = http_pingpong(with_plugins.port(), "/api/v1/benchplug/tiny?x=1", http_rounds);
      row("ingress: app route vs plugin route, same function", lat(app_route), lat(plugin_route),
          fmt("%.2fx rate", app_route.p50_us / plugin_route.p50_us));
    }
    {
      ::setenv("FRAMEX_LOAD_PLUGINS", "benchplug", 1);
      ::setenv("FRAMEX_PLUGINS__BENCHPLUG__DEPLOY", "workers", 1);
      child w3 = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2"});
      ::unsetenv("FRAMEX_LOAD_PLUGINS");
      ::unsetenv("FRAMEX_PLUGINS__BENCHPLUG__DEPLOY");
      framex::config cfg = distributed({w3.address()});
      cfg.server = plain.server;
      cfg.log.level = "warn";
      cfg.plugins.load = {"benchplug"};
      cfg.apply("plugins.benchplug.deploy", "workers", "bench");
      framex::app deployed{cfg};
      deployed.start();
      framex::runtime direct_rt(distributed({w3.address()}));
      (void)framex_pingpong<&tiny>(direct_rt, 100, 1);
      (void)pingpong_with(nullptr, 100, by_name);
      compare_calls("deployed", direct_rt);
      stop(w3);
    }
  }

  if (section("tls")) {
    std::printf("\n| %-52s | %-22s | %-22s | %-12s |\n", "TLS 1.3, mutual (certificates)", "plaintext", "TLS", "cost");
    std::printf("|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
                std::string(24, '-').c_str(), std::string(14, '-').c_str());
    for (const auto type : {framex::test::pki::key_type::rsa_2048, framex::test::pki::key_type::ec_p256}) {
      const char* name = type == framex::test::pki::key_type::rsa_2048 ? "RSA-2048" : "ECDSA P-256";
      tls_setup_for_bench t(type);
      child tw = t.spawn_worker();
      auto cfg = distributed({tw.address()});
      cfg.distributed.tls = t.settings();
      framex::runtime secure(cfg);
      (void)framex_pingpong<&tiny>(secure, 100, 1);  // connect and warm up
      std::vector<double> plain_p50, tls_p50, plain_tp, tls_tp, plain_cpu, tls_cpu;
      // Calls per second, and the CPU they took in this process and the worker.
      const auto pipelined = [&](framex::runtime& rt, pid_t worker, std::vector<double>& rate, std::vector<double>& cpu) {
        const int calls = total / alternations;
        const double before = cpu_seconds(worker);
        rate.push_back(framex_throughput<&tiny>(rt, 128, calls, 1));
        cpu.push_back((cpu_seconds(worker) - before) * 1e6 / calls);
      };
      for (int r = 0; r < alternations; ++r) {
        plain_p50.push_back(framex_pingpong<&tiny>(one, rounds / alternations, 1).p50_us);
        tls_p50.push_back(framex_pingpong<&tiny>(secure, rounds / alternations, 1).p50_us);
        pipelined(one, w1.pid, plain_tp, plain_cpu);
        pipelined(secure, tw.pid, tls_tp, tls_cpu);
      }
      const double pp = median(plain_p50), tp = median(tls_p50);
      row((std::string(name) + ": ping-pong p50, async tiny call").c_str(), fmt("%.1f us", pp), fmt("%.1f us", tp),
          fmt("+%.1f us", tp - pp));
      const double pt = median(plain_tp), tt = median(tls_tp);
      row((std::string(name) + ": 128 in flight, 1 connection").c_str(), fmt("%.0f calls/s", pt), fmt("%.0f calls/s", tt),
          fmt("%+.1f%%", 100.0 * (tt / pt - 1.0)));
      const double pc = median(plain_cpu), tc = median(tls_cpu);
      row((std::string(name) + ": 128 in flight, CPU per call (both ends)").c_str(), fmt("%.1f us", pc), fmt("%.1f us", tc),
          fmt("%+.1f%%", 100.0 * (tc / pc - 1.0)));
      const int reconnects = quick ? 50 : 300;
      const double plain = reconnect_us(nullptr, w1.port, false, reconnects);
      const double full = reconnect_us(&t, tw.port, false, reconnects) - plain;
      const double resumed = reconnect_us(&t, tw.port, true, reconnects) - plain;
      row((std::string(name) + ": a reconnect's handshake, full vs resumed").c_str(), fmt("%.0f us full", full),
          fmt("%.0f us resumed", resumed), fmt("%.1fx faster", full / resumed));
      secure.shutdown();
      stop(tw);
    }
  }

  // 6. Discovery through a real etcd: how soon a caller routes to a worker
  // that registers and stops routing to one that drains, and throughput
  // against the static list over the same workers.
  if (section("discovery")) {
    if (!framex::test::etcd_installed()) {
      std::printf("\n(etcd is not installed: the discovery section is left out)\n");
    } else {
      framex::test::etcd_process etcd;
      std::printf("\n| %-52s | %-22s | %-22s | %-12s |\n", "etcd discovery", "median", "worst", "");
      std::printf("|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
                  std::string(24, '-').c_str(), std::string(14, '-').c_str());
      framex::config watching;
      watching.runtime.mode = framex::mode::distributed;
      watching.distributed.discovery = etcd.discovery("/framex/bench/join");
      framex::runtime rt(watching);
      const auto state_of = [&](const std::string& address) -> std::string {
        for (const auto& w : framex::stats(rt).workers) {
          if (w.address == address) return w.state;
        }
        return "absent";
      };
      const auto ms_until = [](clock_type::time_point from, auto&& condition) {
        while (!condition()) std::this_thread::sleep_for(std::chrono::microseconds(200));
        return std::chrono::duration<double, std::milli>(clock_type::now() - from).count();
      };
      std::vector<double> join, leave;
      for (int r = 0; r < (quick ? 3 : 10); ++r) {
        child w = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--distributed.discovery",
                         etcd.discovery("/framex/bench/join")});
        const auto listening = clock_type::now();  // registration starts as it listens
        join.push_back(ms_until(listening, [&] { return state_of(w.address()) != "absent"; }));
        (void)framex_pingpong<&tiny>(rt, 10, 1);  // routed there: it is the only worker
        const auto drained = clock_type::now();
        ::kill(w.pid, SIGTERM);
        leave.push_back(ms_until(drained, [&] {
          const auto st = state_of(w.address());
          return st == "absent" || st == "draining";
        }));
        ::waitpid(w.pid, nullptr, 0);
      }
      const auto worst = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
      row("a worker registers: until callers route to it", fmt("%.1f ms", median(join)), fmt("%.1f ms", worst(join)), "");
      row("a worker drains (SIGTERM): until callers stop", fmt("%.1f ms", median(leave)), fmt("%.1f ms", worst(leave)), "");
      rt.shutdown();

      std::printf("\n| %-52s | %-22s | %-22s | %-12s |\n", "128 in flight, async tiny call", "static list", "etcd", "etcd/static");
      std::printf("|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
                  std::string(24, '-').c_str(), std::string(14, '-').c_str());
      for (const int n : {1, 2, 4}) {
        const std::string prefix = "/framex/bench/n" + std::to_string(n);
        std::vector<child> workers;
        std::vector<std::string> addresses;
        for (int i = 0; i < n; ++i) {
          workers.push_back(spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "1", "--distributed.discovery",
                                   etcd.discovery(prefix)}));
          addresses.push_back(workers.back().address());
        }
        framex::runtime listed(distributed(addresses));
        framex::config followed_cfg;
        followed_cfg.runtime.mode = framex::mode::distributed;
        followed_cfg.distributed.discovery = etcd.discovery(prefix);
        framex::runtime followed(followed_cfg);
        (void)ms_until(clock_type::now(), [&] { return framex::stats(followed).workers.size() == static_cast<std::size_t>(n); });
        (void)framex_throughput<&tiny>(listed, 128, 2000, 1);  // connect and warm up
        (void)framex_throughput<&tiny>(followed, 128, 2000, 1);
        std::vector<double> a, b;
        for (int r = 0; r < alternations; ++r) {
          a.push_back(framex_throughput<&tiny>(listed, 128, total / alternations, 1));
          b.push_back(framex_throughput<&tiny>(followed, 128, total / alternations, 1));
        }
        row((std::to_string(n) + (n == 1 ? " worker" : " workers")).c_str(), fmt("%.0f calls/s", median(a)),
            fmt("%.0f calls/s", median(b)), fmt("%+.1f%%", 100.0 * (median(b) / median(a) - 1.0)));
        listed.shutdown();
        followed.shutdown();
        for (auto& w : workers) stop(w);
      }

      // A rolling restart of 4 workers (each drained, then replaced) under a
      // steady 2,000 calls/s with one retry.
      const std::string roll = etcd.discovery("/framex/bench/roll");
      std::vector<child> workers;
      for (int i = 0; i < 4; ++i) {
        workers.push_back(spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--distributed.discovery", roll}));
      }
      framex::config roll_cfg;
      roll_cfg.runtime.mode = framex::mode::distributed;
      roll_cfg.distributed.discovery = roll;
      framex::runtime rolled(roll_cfg);
      (void)ms_until(clock_type::now(), [&] { return framex::stats(rolled).workers.size() == 4; });
      std::atomic<bool> stopping{false};
      std::atomic<int> failed{0};
      std::vector<double> latencies;
      std::mutex latency_mutex;
      asio::io_context load_io(1);
      for (int c = 0; c < 20; ++c) {  // 20 callers, one call every 10 ms each
        asio::co_spawn(
            load_io,
            [&]() -> asio::awaitable<void> {
              asio::steady_timer pace(co_await asio::this_coro::executor);
              auto next = clock_type::now();
              while (!stopping) {
                const auto start = clock_type::now();
                try {
                  co_await framex::remote<&tiny>.with({.timeout = 10s, .runtime = &rolled, .retries = 1}).remote(1);
                } catch (const std::exception&) {
                  ++failed;
                }
                {
                  std::lock_guard lock(latency_mutex);
                  latencies.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
                }
                next += std::chrono::milliseconds(10);
                pace.expires_at(next);
                co_await pace.async_wait(asio::use_awaitable);
              }
            },
            asio::detached);
      }
      std::thread load([&] { load_io.run(); });
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      const auto restart_began = clock_type::now();
      for (auto& w : workers) {
        stop(w);  // SIGTERM: drains, exits
        w = spawn({"--framex-worker", "--listen", "127.0.0.1:0", "--threads", "2", "--distributed.discovery", roll});
        (void)ms_until(clock_type::now(), [&] {
          for (const auto& s : framex::stats(rolled).workers) {
            if (s.address == w.address() && s.state == "ready") return true;
          }
          return false;
        });
      }
      const double restart_s = std::chrono::duration<double>(clock_type::now() - restart_began).count();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      stopping = true;
      load.join();
      const latency l = summarize(latencies);
      std::printf("\n| %-52s | %-22s | %-22s | %-12s |\n", "rolling restart, 4 workers, 2,000 calls/s", "calls", "failed",
                  "p50 / p99");
      std::printf("|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
                  std::string(24, '-').c_str(), std::string(14, '-').c_str());
      row(("each worker drained and replaced in turn (" + fmt("%.1f s", restart_s) + ")").c_str(),
          std::to_string(latencies.size()), std::to_string(failed.load()), lat(l));
      rolled.shutdown();
      for (auto& w : workers) stop(w);
    }
  }

  one.shutdown();
  two.shutdown();
  mine.shutdown();
  own_io.restart();
  own_io.run();  // until the connection has closed
  stop(w1);
  stop(w2);
  stop(echo_server);
#ifdef FRAMEX_BENCH_GRPC
  stop(grpc_server);
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A server role (worker, echo, gRPC) ends with the driver, however the
  // driver ends, and so do the perf counters attached to it.
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--framex-worker" || a == "--echo-server" || a == "--grpc-server") {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) return 0;  // the driver is gone already
      break;
    }
  }
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--echo-server") return run_echo_server();
#ifdef FRAMEX_BENCH_GRPC
    if (a == "--grpc-server") return run_grpc_server();
#endif
    if (a == "--quick") quick = true;
    if (a == "--only" && i + 1 < argc) only = argv[++i];
  }
  return run_driver();
}
