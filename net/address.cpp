#include "address.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "framex/error.hpp"

namespace framex::net {

namespace asio = boost::asio;

std::string address::text() const { return is_unix() ? "unix:" + path : (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port; }

std::pair<std::string, std::uint16_t> parse_endpoint(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) throw std::invalid_argument("\"" + std::string(text) + "\" is not host:port");
  unsigned port = 0;
  const std::string_view digits = text.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc{} || end != digits.data() + digits.size() || port > 65535) {
    throw std::invalid_argument("\"" + std::string(text) + "\" has no valid port");
  }
  return {std::string(text.substr(0, colon)), static_cast<std::uint16_t>(port)};
}

address parse_address(std::string_view text, bool bare_path) {
  address a;
  if (text.starts_with("unix:") || (bare_path && text.find('/') != std::string_view::npos && !text.starts_with("["))) {
    a.path = std::string(text.starts_with("unix:") ? text.substr(5) : text);
    if (a.path.empty()) throw std::invalid_argument("\"" + std::string(text) + "\" names no socket path");
    if (a.path.size() >= sizeof(sockaddr_un::sun_path)) {
      throw std::invalid_argument("\"" + std::string(text) + "\": a unix socket path has at most " +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    }
    return a;
  }
  try {
    auto [host, port] = parse_endpoint(text);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    a.host = std::move(host);
    a.port = std::to_string(port);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + " (nor unix:PATH)");
  }
  return a;
}

namespace {
// Connects `socket` to one of `endpoints` or gives up when `deadline` fires.
template <class Socket, class Endpoints>
asio::awaitable<void> connect_before(Socket& socket, const Endpoints& endpoints, asio::steady_timer& deadline) {
  auto [order, error, ignored, timer_error] =
      co_await asio::experimental::make_parallel_group(asio::async_connect(socket, endpoints, asio::deferred),
                                                       deadline.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)ignored;
  (void)timer_error;
  if (order[0] == 1) throw std::system_error(make_error_code(errc::timeout), "connecting");
  if (error) throw std::system_error(error, "connecting");
}
}  // namespace

asio::awaitable<connection::socket_type> dial(const address& at, asio::any_io_executor socket_executor, asio::steady_timer& deadline) {
  if (at.is_unix()) {
    asio::local::stream_protocol::socket socket(socket_executor);
    const std::array<asio::local::stream_protocol::endpoint, 1> where{asio::local::stream_protocol::endpoint(at.path)};
    co_await connect_before(socket, where, deadline);
    co_return connection::socket_type(std::move(socket));
  }
  asio::ip::tcp::resolver resolver(deadline.get_executor());
  const auto endpoints = co_await resolver.async_resolve(at.host, at.port, asio::use_awaitable);
  asio::ip::tcp::socket socket(socket_executor);
  co_await connect_before(socket, endpoints, deadline);
  co_return connection::socket_type(std::move(socket));
}

bool clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISSOCK(st.st_mode)) return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0 || errno != ECONNREFUSED;
  ::close(fd);
  return !live && ::unlink(path.c_str()) == 0;
}

}  // namespace framex::net
