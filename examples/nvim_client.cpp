// Talks to a running Neovim over its msgpack-RPC API with framex::rpc_client:
// evaluates an expression, reads the API description, sets a variable with a
// notification, catches Neovim's error, and answers a request Neovim sends
// back on the same connection.
//
//   nvim --headless --clean --listen /tmp/nvim.sock &
//   ./nvim_client /tmp/nvim.sock          # or 127.0.0.1:6666 for --listen 127.0.0.1:6666
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <tuple>

namespace asio = boost::asio;

asio::awaitable<void> talk(framex::rpc_client& nvim) {
  const int three = co_await nvim.call<int>("nvim_eval", "1+2");
  std::printf("nvim_eval(\"1+2\") = %d\n", three);

  // A dynamic answer: [channel id, {version, functions, ...}].
  const framex::msgpack_value info = co_await nvim.call("nvim_get_api_info");
  const auto [channel, api] = info.as<std::tuple<int, std::map<std::string, framex::msgpack_value>>>();
  std::printf("channel %d, %u API functions\n", channel, api.at("functions")->via.array.size);

  co_await nvim.notify("nvim_command", "let g:greeting = 'hello from framex'");
  std::printf("g:greeting = %s\n", (co_await nvim.call<std::string>("nvim_eval", "g:greeting")).c_str());

  try {
    co_await nvim.call<int>("nvim_eval", "1+");
  } catch (const framex::remote_error& e) {
    std::printf("nvim_eval(\"1+\") failed: %s (error object %s)\n", e.remote_message().c_str(), e.error_object()->to_string().c_str());
  }

  // Neovim calls this program back (rpcrequest) while it runs the command.
  const std::string command = "let g:sum = rpcrequest(" + std::to_string(channel) + ", 'add', 20, 22)";
  co_await nvim.call<void>("nvim_command", command);
  std::printf("rpcrequest(add, 20, 22) answered %d\n", co_await nvim.call<int>("nvim_eval", "g:sum"));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NVIM_ADDRESS   (a socket path, or host:port)\n", argv[0]);
    return 2;
  }
  asio::io_context io(1);
  framex::rpc_client nvim{io.get_executor(), argv[1]};
  nvim.on_request("add", [](int a, int b) { return a + b; });
  int status = 0;
  asio::co_spawn(io, talk(nvim), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::fprintf(stderr, "error: %s\n", x.what());
      }
      status = 1;
    }
    nvim.close();  // io.run() returns once the connection is closed
  });
  io.run();
  return status;
}
