// What a route handler sees and returns; Beast stays inside the library.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace framex::detail {

/// One request, as a route handler sees it.
struct http_call {
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  bool json_body = false;  // Content-Type: application/json
  std::string authorization;  // the Authorization header, as sent
};

/// A route handler's answer.
struct http_reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers{};  // more response headers
};

/// Thrown by binding code: becomes `{status, message}` with this status.
class http_error : public std::runtime_error {
 public:
  http_error(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  [[nodiscard]] int status() const noexcept { return status_; }

 private:
  int status_;
};

using http_handler = std::function<boost::asio::awaitable<http_reply>(http_call&)>;

}  // namespace framex::detail
