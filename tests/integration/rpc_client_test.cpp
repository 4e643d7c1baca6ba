// framex::rpc_client against msgpack-RPC servers framex did not write: a
// Python server (Debian's python3-msgpack) that answers out of order, sends
// notifications and requests of its own and fails with plain strings; a real
// Neovim (`nvim --headless --listen`); and a framex worker called by method
// name. Over TCP and unix sockets. Also the runtime's `distributed.hello`
// against a server that refuses the hello.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "framex/framex.hpp"
#include "support.hpp"
#include "worker_process.hpp"

using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using framex::test::child_process;
using framex::test::runs_to_completion;
using framex::test::temp_dir;
using framex::test::worker_process;
namespace asio = boost::asio;

namespace {

int rpc_sum(int a, int b) { return a + b; }
std::vector<std::string> rpc_words(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t end = std::min(text.find(' ', at), text.size());
    if (end > at) out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace

template <>
inline constexpr std::string_view framex::wire_name<&rpc_sum> = "rpc.sum";
template <>
inline constexpr std::string_view framex::wire_name<&rpc_words> = "rpc.words";

namespace {

// The Python server of tests/interop/plain_rpc_server.py, on TCP or at `unix_path`.
class python_server {
 public:
  explicit python_server(const std::string& unix_path = {})
      : child_({"/usr/bin/python3", FRAMEX_SOURCE_DIR "/tests/interop/plain_rpc_server.py", unix_path.empty() ? "tcp" : "unix:" + unix_path},
               {}, {}, true) {
    const std::string line = child_.first_line();
    if (line.find("listening on ") == std::string::npos) throw std::runtime_error("the Python server did not start: " + line);
    const std::string where = line.substr(line.find("on ") + 3);
    address_ = unix_path.empty() ? "127.0.0.1:" + where : where;
  }
  [[nodiscard]] const std::string& address() const { return address_; }

 private:
  child_process child_;
  std::string address_;
};

// Runs `body` on a fresh io_context (one thread) and closes `client` once it
// ends; fails the test if it threw or io.run() did not return.
void run_client(asio::io_context& io, framex::rpc_client& client, std::function<asio::awaitable<void>()> body) {
  std::exception_ptr failed;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    failed = e;
    client.close();
  });
  EXPECT_TRUE(runs_to_completion(io, 1, std::chrono::seconds(60))) << "io.run() did not return after the client closed";
  if (failed) std::rethrow_exception(failed);
}

// The remote_error a call ends with (a test failure if it ends otherwise).
template <class Awaitable>
asio::awaitable<std::optional<framex::remote_error>> remote_error_of(Awaitable call) {
  try {
    co_await std::move(call);
    ADD_FAILURE() << "the call succeeded";
  } catch (const framex::remote_error& e) {
    co_return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "another error: " << e.what();
  }
  co_return std::nullopt;
}

// ---- a Python server ----

class RpcClientPython : public ::testing::TestWithParam<bool> {  // true: over a unix socket
 protected:
  temp_dir dir;
  python_server server{GetParam() ? dir.at("py.sock") : std::string()};
  asio::io_context io{1};
  framex::rpc_client client{io.get_executor(), server.address()};
};

TEST_P(RpcClientPython, TypedCallsPipelinedAndAnsweredOutOfOrder) {
  std::vector<int> finished;
  run_client(io, client, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await client.call<int>("add", 40, 2), 42);
    const framex::msgpack_value dynamic = co_await client.call("add", 1, 2);
    EXPECT_EQ(dynamic.as<int>(), 3);
    // The first is answered 300 ms after the second: each resumes with its own answer.
    auto slow = [&]() -> asio::awaitable<void> {
      EXPECT_EQ(co_await client.call<std::string>("echo_after", "slow", 300), "slow");
      finished.push_back(1);
    };
    auto fast = [&]() -> asio::awaitable<void> {
      EXPECT_EQ(co_await client.call<std::string>("echo_after", "fast", 0), "fast");
      finished.push_back(2);
    };
    co_await (slow() && fast());
  });
  EXPECT_EQ(finished, (std::vector<int>{2, 1}));
}

TEST_P(RpcClientPython, StringAndArrayErrorObjectsBecomeRemoteErrors) {
  run_client(io, client, [&]() -> asio::awaitable<void> {
    auto e = co_await remote_error_of(client.call<int>("fail", "the disk is full"));
    EXPECT_TRUE(e.has_value());
    if (e) {
      EXPECT_EQ(e->code(), framex::errc::exception);
      EXPECT_EQ(e->remote_message(), "the disk is full");
      EXPECT_EQ(e->remote_type(), "msgpack_rpc.error");
      EXPECT_NE(e->error_object(), nullptr);
      if (e->error_object() != nullptr) {
        EXPECT_EQ(e->error_object()->as<std::string>(), "the disk is full");
      }
    }
    e = co_await remote_error_of(client.call<int>("fail_array", "no such buffer"));
    if (e && e->error_object() != nullptr) {
      EXPECT_EQ(e->remote_message(), "no such buffer");
      EXPECT_EQ((e->error_object()->as<std::tuple<int, std::string>>()), std::tuple(7, std::string("no such buffer")));
    }
    e = co_await remote_error_of(client.call<int>("no_such_method"));
    if (e) {
        EXPECT_EQ(e->remote_message(), "Unknown method: no_such_method");
      }
    // A result that does not decode as asked.
    EXPECT_EQ(co_await framex::test::error_of(client.call<std::string>("add", 1, 2)), framex::errc::signature_mismatch);
  });
}

// A server that is no framex worker is sent none of framex's own messages (a
// timed-out call sends no framex.cancel, which this server would answer with
// msgid -1), and a response no call of the connection made (msgid -1, or
// 2^32 plus a waiting call's) is ignored: the calls in flight go on.
TEST_P(RpcClientPython, AStrangerIsSentNoFramexMessageAndResponsesToNoCallCostNothing) {
  run_client(io, client, [&]() -> asio::awaitable<void> {
    auto kept = [&]() -> asio::awaitable<std::string> { co_return co_await client.call<std::string>("echo_after", "kept", 1500); };
    auto meanwhile = [&]() -> asio::awaitable<int> {
      EXPECT_EQ(co_await framex::test::error_of(client.with({.timeout = 100ms}).call<std::string>("echo_after", "late", 5000)),
                framex::errc::timeout);
      co_return co_await client.call<int>("strays");
    };
    const auto [got, strays] = co_await (kept() && meanwhile());
    EXPECT_EQ(got, "kept");
    EXPECT_GE(strays, 1);
    EXPECT_EQ(co_await client.call<std::vector<std::string>>("framex_seen"), std::vector<std::string>{});
  });
}

TEST_P(RpcClientPython, NotificationsBothWays) {
  std::vector<int> ticks;
  client.on_notification("tick", [&](int i) { ticks.push_back(i); });
  run_client(io, client, [&]() -> asio::awaitable<void> {
    co_await client.notify("note", "first", 1);
    co_await client.notify("note", "second", 2);
    const std::vector<std::tuple<std::string, int>> notes = co_await client.call<std::vector<std::tuple<std::string, int>>>("notes");
    EXPECT_EQ(notes, (std::vector<std::tuple<std::string, int>>{{"first", 1}, {"second", 2}}));
    EXPECT_EQ(co_await client.call<int>("ticks", 5), 5);
    // The notifications were sent before the answer, and run in order on this executor.
    for (int i = 0; i < 100 && ticks.size() < 5; ++i) co_await asio::steady_timer(io, 10ms).async_wait(asio::use_awaitable);
  });
  EXPECT_EQ(ticks, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_P(RpcClientPython, RequestsFromTheServerAreAnsweredByHandlers) {
  client.on_request("client.add", [](int a, int b) { return a + b; });
  client.on_request("client.later", [](int a, int b) -> asio::awaitable<int> {
    co_await asio::steady_timer(co_await asio::this_coro::executor, 20ms).async_wait(asio::use_awaitable);
    co_return a * b;
  });
  client.on_request("client.throws", [](int, int) -> int { throw std::runtime_error("refused by the handler"); });
  run_client(io, client, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await client.call<int>("ask_client", "client.add", 20, 22), 42);
    EXPECT_EQ(co_await client.call<int>("ask_client", "client.later", 6, 7), 42);
    // The handler's exception, and a method with no handler, reach the server as error objects.
    using answer = std::map<std::string, std::map<std::string, framex::msgpack_value>>;
    const auto thrown = co_await client.call<answer>("ask_client", "client.throws", 1, 2);
    EXPECT_EQ(thrown.at("error").at("message").as<std::string>(), "refused by the handler");
    const auto missing = co_await client.call<answer>("ask_client", "client.nothing", 1, 2);
    EXPECT_EQ(missing.at("error").at("code").as<int>(), static_cast<int>(framex::errc::unknown_function));
    // Arguments of the wrong type: bad_arguments, and the client stays up.
    const auto wrong = co_await client.call<answer>("ask_client", "client.add", "x", 2);
    EXPECT_EQ(wrong.at("error").at("code").as<int>(), static_cast<int>(framex::errc::bad_arguments));
    EXPECT_EQ(co_await client.call<int>("add", 1, 1), 2);
  });
}

TEST_P(RpcClientPython, TimeoutCancellationAndReconnect) {
  run_client(io, client, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await framex::test::error_of(client.with({.timeout = 100ms}).call<std::string>("echo_after", "late", 5000)),
              framex::errc::timeout);
    // Asio cancellation: the timer wins, the call ends with `cancelled`.
    asio::steady_timer timer(io, 50ms);
    auto raced = co_await (framex::test::error_of(client.call<std::string>("echo_after", "late", 5000)) ||
                           timer.async_wait(asio::use_awaitable));
    EXPECT_EQ(raced.index(), 1u);
    // The server drops the connection: the call in flight fails, the next one reconnects.
    EXPECT_EQ(co_await framex::test::error_of(client.call<int>("drop")), framex::errc::worker_lost);
    EXPECT_EQ(co_await client.with({.retries = 2}).call<int>("add", 2, 3), 5);
  });
}

// close() ends the calls in flight as its documentation says: `cancelled`.
TEST_P(RpcClientPython, CloseFailsTheCallsInFlightWithCancelled) {
  run_client(io, client, [&]() -> asio::awaitable<void> {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer timer(io, 200ms);
          co_await timer.async_wait(asio::use_awaitable);
          client.close();
        },
        asio::detached);
    EXPECT_EQ(co_await framex::test::error_of(client.call<std::string>("echo_after", "late", 5000)), framex::errc::cancelled);
  });
}

TEST(RpcClientPythonFlood, RequestsBeyondMaxServingAreRefusedAsOverloaded) {
  python_server server;
  asio::io_context io(1);
  framex::rpc_client client(io.get_executor(), server.address(), {.max_serving = 4});
  client.on_request("client.slow", []() -> asio::awaitable<int> {
    co_await asio::steady_timer(co_await asio::this_coro::executor, 300ms).async_wait(asio::use_awaitable);
    co_return 1;
  });
  std::tuple<int, int> counted{};
  run_client(io, client, [&]() -> asio::awaitable<void> {
    counted = co_await client.call<std::tuple<int, int>>("flood", "client.slow", 20);
    EXPECT_EQ(co_await client.call<int>("add", 1, 1), 2) << "the client did not stay up";
  });
  const auto [answered, overloaded] = counted;
  EXPECT_EQ(answered + overloaded, 20);
  EXPECT_GE(answered, 4);
  EXPECT_GE(overloaded, 1) << "20 requests were all taken at once with max_serving = 4";
}

INSTANTIATE_TEST_SUITE_P(Transport, RpcClientPython, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "UnixSocket" : "Tcp"; });

// ---- a framex worker, called by method name ----

TEST(RpcClientFramexWorker, CallsRegisteredFunctionsByWireNameOverTcpAndUnixSockets) {
  temp_dir dir;
  worker_process tcp;
  worker_process unix_worker(0, {}, "/proc/self/exe", {"--listen", "unix:" + dir.at("w.sock")});
  for (const std::string& address : std::vector<std::string>{tcp.address(), "unix:" + dir.at("w.sock")}) {
    asio::io_context io(1);
    framex::rpc_client client(io.get_executor(), address);
    run_client(io, client, [&]() -> asio::awaitable<void> {
      EXPECT_EQ(co_await client.call<int>("rpc.sum", 20, 22), 42);
      const std::vector<std::string> words = co_await client.call<std::vector<std::string>>("rpc.words", "any msgpack peer");
      EXPECT_EQ(words, (std::vector<std::string>{"any", "msgpack", "peer"}));
      auto e = co_await remote_error_of(client.call<int>("rpc.sum", "x", 2));
      if (e) {
        EXPECT_EQ(e->code(), framex::errc::bad_arguments);
      }
    });
  }
  // The runtime too reaches a worker on a unix socket.
  framex::runtime rt(framex::test::distributed({"unix:" + dir.at("w.sock")}));
  EXPECT_EQ(framex::test::run([&] { return framex::remote<&rpc_sum>.with({.runtime = &rt}).remote(1, 2); }), 3);
  EXPECT_EQ(framex::test::run([&] { return framex::remote<&rpc_words>.with({.runtime = &rt}).remote("a b"); }).size(), 2u);
}

TEST(RpcClientFramexWorker, AWorkerWithATokenServesAClientThatHoldsItAndRefusesOneThatDoesNot) {
  temp_dir dir;
  const std::string token = dir.write("token", "c0ffee-0123456789abcdef-rpc-client-token");
  worker_process w(0, {}, "/proc/self/exe", {"--worker.token_file", token});
  asio::io_context io(1);
  framex::rpc_client with_token(io.get_executor(), w.address(), {.token_file = token});
  framex::rpc_client without(io.get_executor(), w.address());
  run_client(io, with_token, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await with_token.call<int>("rpc.sum", 40, 2), 42);
    EXPECT_EQ(co_await framex::test::error_of(without.call<int>("rpc.sum", 1, 2)), framex::errc::unauthorized);
    without.close();
  });
}

TEST(RpcClientFramexWorker, AUnixSocketLeftByADeadWorkerIsReplacedAndALiveOneIsNot) {
  temp_dir dir;
  const std::string path = dir.at("stale.sock");
  {
    worker_process first(0, {}, "/proc/self/exe", {"--listen", "unix:" + path});
    first.kill_now();  // leaves its socket file behind
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  worker_process second(0, {}, "/proc/self/exe", {"--listen", "unix:" + path});
  EXPECT_THROW(worker_process(0, {}, "/proc/self/exe", {"--listen", "unix:" + path}), std::runtime_error)
      << "a second worker took over a socket a live one accepts on";
  framex::runtime rt(framex::test::distributed({"unix:" + path}));
  EXPECT_EQ(framex::test::run([&] { return framex::remote<&rpc_sum>.with({.runtime = &rt}).remote(2, 2); }), 4);
  second.stop();
  EXPECT_FALSE(std::filesystem::exists(path)) << "the worker left its socket file";
}

// ---- the runtime's hello against a server that refuses it ----

TEST(DistributedHello, AutoGoesOnWithoutItRequiredFailsClearlyAndNeitherHangs) {
  python_server server;
  for (const auto mode : {framex::hello_mode::automatic, framex::hello_mode::required, framex::hello_mode::off}) {
    auto cfg = framex::test::distributed({server.address()});
    cfg.distributed.hello = mode;
    auto outcome = std::async(std::launch::async, [&] {
      framex::runtime rt(cfg);
      return framex::test::run([&]() -> asio::awaitable<std::string> {
        try {
          co_return std::to_string(co_await framex::remote<&rpc_sum>.with({.runtime = &rt}).remote(1, 2));
        } catch (const std::system_error& e) {
          co_return std::string(e.what());
        }
      });
    });
    ASSERT_EQ(outcome.wait_for(60s), std::future_status::ready) << "the call or the runtime's shutdown hung";
    const std::string got = outcome.get();
    if (mode == framex::hello_mode::required) {
      EXPECT_NE(got.find("framex.hello refused: Unknown method: framex.hello"), std::string::npos) << got;
      EXPECT_NE(got.find("distributed.hello"), std::string::npos) << got;
    } else {
      // rpc.sum is no method of the Python server: its own error, from a call that reached it.
      EXPECT_NE(got.find("Unknown method: rpc.sum"), std::string::npos) << got;
    }
  }
}

TEST(DistributedHello, ATokenNeedsTheHello) {
  temp_dir dir;
  auto cfg = framex::test::distributed({"127.0.0.1:1"});
  cfg.distributed.hello = framex::hello_mode::off;
  cfg.distributed.token_file = dir.write("token", "c0ffee-0123456789abcdef-a-long-token");
  try {
    framex::runtime rt{cfg};
    ADD_FAILURE() << "a runtime with a token and no hello was built";
  } catch (const framex::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("distributed.hello"), std::string::npos) << e.what();
  }
}

// ---- a real Neovim ----

// `nvim --headless --clean --listen ADDRESS`, ready once it accepts.
class neovim {
 public:
  explicit neovim(std::string listen) : child_({"nvim", "--headless", "--clean", "--listen", listen}, {}, "/dev/null", true) {
    listen_ = std::move(listen);
    if (!framex::test::eventually([&] { return accepts(); }, 20s)) throw std::runtime_error("nvim did not listen on " + listen_);
  }
  static bool installed() { return std::system("command -v nvim > /dev/null 2>&1") == 0; }

 private:
  bool accepts() const {
    const bool unix_socket = listen_.find('/') != std::string::npos;
    const int fd = ::socket(unix_socket ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = false;
    if (unix_socket) {
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", listen_.c_str());
      ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(listen_.substr(listen_.rfind(':') + 1))));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    ::close(fd);
    return ok;
  }
  child_process child_;
  std::string listen_;
};

// A port on 127.0.0.1 free a moment ago.
std::string free_tcp_address() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

class RpcClientNeovim : public ::testing::TestWithParam<bool> {};  // true: over a unix socket

TEST_P(RpcClientNeovim, EvalApiInfoNotificationErrorAndARequestBack) {
  FRAMEX_REQUIRE(neovim::installed(), "nvim is not installed (scripts/setup.sh installs it)");
  temp_dir dir;
  const std::string address = GetParam() ? dir.at("nvim.sock") : free_tcp_address();
  neovim nvim(address);
  asio::io_context io(1);
  framex::rpc_client client(io.get_executor(), address);  // a bare path is a unix socket
  client.on_request("framex_add", [](int a, int b) { return a + b; });
  run_client(io, client, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await client.call<int>("nvim_eval", "1+2"), 3);
    // A large dynamic answer: [channel id, {version, functions, ui_events, types, ...}].
    const framex::msgpack_value info = co_await client.call("nvim_get_api_info");
    const auto [channel, api] = info.as<std::tuple<int, std::map<std::string, framex::msgpack_value>>>();
    EXPECT_GT(channel, 0);
    EXPECT_GT(api.at("functions").get().via.array.size, 100u);
    // A notification runs before the next request.
    co_await client.notify("nvim_command", "let g:framex_seen = 42");
    EXPECT_EQ(co_await client.call<int>("nvim_eval", "g:framex_seen"), 42);
    // Neovim's error object is an array [kind, message].
    auto e = co_await remote_error_of(client.call<int>("nvim_eval", "1+"));
    if (e) {
      EXPECT_NE(e->remote_message().find("E15"), std::string::npos) << e->remote_message();
      EXPECT_EQ(e->error_object()->get().type, msgpack::type::ARRAY);
    }
    // Neovim calls back on the same connection; the handler answers.
    co_await client.call<void>("nvim_command", "let g:framex_sum = rpcrequest(" + std::to_string(channel) + ", 'framex_add', 20, 22)");
    EXPECT_EQ(co_await client.call<int>("nvim_eval", "g:framex_sum"), 42);
  });
}

INSTANTIATE_TEST_SUITE_P(Transport, RpcClientNeovim, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "UnixSocket" : "Tcp"; });

}  // namespace
