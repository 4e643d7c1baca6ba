#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>

int triple(int x) { return x * 3; }
constexpr auto tripled = framex::remote<&triple>;

int main() {
  boost::asio::io_context io;
  auto result = boost::asio::co_spawn(io, tripled.remote(14), boost::asio::use_future);
  io.run();
  std::printf("consumer got %d\n", result.get());
}
