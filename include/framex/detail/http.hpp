// What a route handler sees and returns; Beast stays inside the library.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "framex/stream.hpp"

namespace framex::detail {

/// One request, as a route handler sees it.
struct http_call {
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  bool json_body = false;  // Content-Type: application/json
  std::string authorization;  // the Authorization header, as sent
  std::string method;        // "GET", ...
  std::string target;        // the path (normalized: see src/http/http_server.hpp) and the query as sent
  std::string content_type;  // the Content-Type header, as sent
};

/// A route handler's answer.
struct http_reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers{};  // more response headers
  /// Sent piece by piece instead of `body` (chunked, or as events).
  std::optional<framex::stream> streamed{};
};

/// What /docs and openapi.json say of a route: its parameters' names and the
/// JSON Schemas of the parameters (or of the whole body) and of the result.
struct route_doc {
  std::vector<std::string> params;
  std::vector<boost::json::value> param_schemas;
  boost::json::value body_schema;  // null unless one described struct is the body
  boost::json::value result_schema;
  std::string summary;
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
