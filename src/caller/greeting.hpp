// The caller's side of the connect sequence: the challenge (with a token)
// and the hello, over a connection just made, within one deadline. Free
// functions over a `net::client` (defined in connect.cpp); the runtime applies
// what the hello told to its slot under its own lock.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "framex/config.hpp"
#include "framex/error.hpp"
#include "framex/resources.hpp"
#include "caller/remote_call.hpp"
#include "net/client.hpp"

namespace framex::detail {

/// Why a connection could not be made ready; empty `what`: it could.
struct greeting_failure {
  std::string what;
  errc code = errc::worker_lost;
  bool unknown_method = false;  // the peer answered that it knows no such method
  bool other_protocol = false;  // the peer speaks another protocol (plaintext to TLS): retrying cannot help
};

/// What a worker's hello told.
struct greeted {
  resource_map resources;
  std::unordered_map<std::string, std::string> mismatched;  // name -> the worker's signature, where it differs
  request_limits limits;  // bytes: the smaller of both sides' message limits
  bool framex = false;  // it answered the hello: it takes framex's own notifications
};

struct greeting_settings {
  const std::string& token;  // empty: none
  bool over_tls = false;
  hello_mode mode = hello_mode::automatic;
  std::size_t max_message_size = 0;
};

/// The challenge (with a token) and the hello on `conn`, until `deadline`
/// fires (the connection is closed then). Completes on `deadline`'s executor.
/// A server that knows no hello passes with `hello_mode::automatic` and no
/// token: it is called by method name, with this side's limit.
boost::asio::awaitable<std::pair<greeting_failure, greeted>> greet(const std::shared_ptr<net::client>& conn,
                                                                   const std::shared_ptr<boost::asio::steady_timer>& deadline,
                                                                   const greeting_settings& settings);

}  // namespace framex::detail
