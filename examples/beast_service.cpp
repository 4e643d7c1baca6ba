// beast_service — your own Boost.Beast server, with blocking legacy code kept
// off its I/O thread.
//
// One coroutine per connection, one I/O thread. `/heavy` calls a blocking
// legacy function (50 ms) with `co_await legacy.remote(...)`, so `/fast` keeps
// answering at once while `/heavy` requests pile up. The same binary runs in
// local mode (framex's pool) or distributed mode (FRAMEX_RUNTIME__MODE and
// FRAMEX_DISTRIBUTED__WORKERS; workers are this program with --framex-worker).
//
//   beast_service [--port N] [--inline] [--trace]
//
// --inline calls the legacy function directly in the handler: the anti-pattern,
// for comparison. --trace prints a line when each /heavy request starts. SIGINT/SIGTERM stop accepting, finish requests in flight and
// exit 0. With --port 0 it picks a free port; it prints the one it listens on.
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Legacy code we cannot change: 50 ms of blocking work.
std::string legacy_report(int id) {
  std::this_thread::sleep_for(50ms);
  return "report #" + std::to_string(id);
}
inline constexpr auto legacy = framex::remote<&legacy_report>;

bool call_inline = false;
bool trace = false;
std::atomic<int> in_flight{0};
std::atomic<int> next_id{0};

asio::awaitable<http::response<http::string_body>> handle(const http::request<http::string_body>& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain");
  const std::string_view target = req.target();
  if (target == "/fast") {
    res.body() = "fast\n";
  } else if (target == "/heavy") {
    const int id = ++next_id;
    if (trace) {
      std::printf("heavy #%d started\n", id);
      std::fflush(stdout);
    }
    std::string report;
    if (call_inline) {
      report = legacy_report(id);  // the anti-pattern: the I/O thread sleeps 50 ms
    } else {
      report = co_await legacy.remote(id);  // (not inside ?: — GCC 12 miscompiles co_await there)
    }
    res.body() = report + "\n";
  } else if (target == "/ping") {
    res.body() = "pong\n";
  } else {
    res.result(http::status::not_found);
    res.body() = "not found\n";
  }
  co_return res;
}

asio::awaitable<void> session(beast::tcp_stream stream, const std::atomic<bool>& stopping) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    stream.expires_after(30s);
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    ++in_flight;
    http::response<http::string_body> res;
    try {
      res = co_await handle(req);
    } catch (const std::exception& e) {
      res = {http::status::internal_server_error, req.version()};
      res.body() = std::string(e.what()) + "\n";
    }
    --in_flight;
    res.keep_alive(req.keep_alive() && !stopping);
    res.prepare_payload();
    const bool keep = res.keep_alive();
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  unsigned short port = 8081;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--inline") call_inline = true;
    if (a == "--trace") trace = true;
    if (a == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::stoi(argv[++i]));
  }

  asio::io_context io;  // the service's one I/O thread
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
  std::atomic<bool> stopping{false};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (;;) {
          boost::system::error_code ec;
          tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;  // closed: shutting down
          asio::co_spawn(io, session(beast::tcp_stream(std::move(socket)), stopping), asio::detached);
        }
      },
      asio::detached);

  // Graceful stop: no new connections; requests in flight finish (their
  // responses say Connection: close); then the process exits.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    stopping = true;
    acceptor.close();
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer t(io);
          for (int i = 0; i < 500 && in_flight > 0; ++i) {
            t.expires_after(10ms);
            co_await t.async_wait(asio::use_awaitable);
          }
          io.stop();
        },
        asio::detached);
  });

  std::printf("beast_service listening on 127.0.0.1:%u (%s, %s mode)\n", acceptor.local_endpoint().port(),
              call_inline ? "inline" : ".remote()",
              framex::runtime::current().current_mode() == framex::mode::local ? "local" : "distributed");
  std::fflush(stdout);
  io.run();
  std::printf("beast_service stopped\n");
}
