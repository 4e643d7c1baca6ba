// A blocking Beast HTTP client for the tests: one request per connection.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <string>

namespace http_client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct response {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string retry_after;
};

struct response_headers {
  std::string www_authenticate;
};

inline response request(std::uint16_t port, http::verb verb, const std::string& target, const std::string& body = {},
                 const std::string& type = "application/json", const std::string& authorization = {},
                 response_headers* headers = nullptr) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  if (!body.empty()) {
    req.set(http::field::content_type, type);
    req.body() = body;
  }
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(stream, buffer, parser);
  auto res = parser.release();
  if (headers != nullptr) headers->www_authenticate = std::string(res[http::field::www_authenticate]);
  return {static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type]),
          std::string(res[http::field::retry_after])};
}

inline response get(std::uint16_t port, const std::string& target) { return request(port, http::verb::get, target); }
inline response post(std::uint16_t port, const std::string& target, const std::string& body) {
  return request(port, http::verb::post, target, body);
}

}  // namespace http_client
