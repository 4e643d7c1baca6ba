// Where a connection goes or is served from: "host:port" over TCP, or a unix
// domain socket, "unix:PATH".
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "connection.hpp"

namespace framex::net {

struct address {
  std::string host;  // TCP: a name or an IP address (IPv6 without brackets)
  std::string port;
  std::string path;  // a unix socket's; non-empty means unix

  [[nodiscard]] bool is_unix() const noexcept { return !path.empty(); }
  /// As it was written: "host:port" or "unix:PATH".
  [[nodiscard]] std::string text() const;
};

/// Splits "host:port" at its last colon (a bracketed IPv6 host keeps its
/// brackets). Throws `std::invalid_argument` saying what is wrong.
std::pair<std::string, std::uint16_t> parse_endpoint(std::string_view text);

/// Parses "host:port", "[v6]:port" or "unix:PATH"; with `bare_path`, also a
/// path that contains a '/' (as Neovim prints its sockets). Throws
/// `std::invalid_argument` saying what is wrong.
address parse_address(std::string_view text, bool bare_path = false);

/// Connects a socket on `socket_executor` to `at`, looking the host up first.
/// Throws `std::system_error`: the connect's error, or `errc::timeout` once
/// `deadline` expires (or is cancelled).
boost::asio::awaitable<connection::socket_type> dial(const address& at, boost::asio::any_io_executor socket_executor,
                                                    boost::asio::steady_timer& deadline);

/// Removes a unix socket file left by a process that is gone: true when
/// `path` is free to bind (nothing there, or a socket nobody accepts on).
bool clear_stale_socket(const std::string& path);

}  // namespace framex::net
