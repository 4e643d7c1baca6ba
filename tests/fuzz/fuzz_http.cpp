// libFuzzer harness: an HTTP request as the ingress reads it (Beast's parser
// under the server's limits) and binds it (query string, JSON body, described
// struct) to route handlers and to the same functions as plugin APIs.
// Whatever the bytes, binding ends in a value or an `http_error` (a 4xx for
// the client), never anything else.
#include "http/http_server.hpp"
#include "framex/app.hpp"
#include "framex/plugin.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/describe.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

struct item {
  std::string name;
  std::int32_t count = 0;
  std::vector<double> weights;
  bool urgent = false;
};
BOOST_DESCRIBE_STRUCT(item, (), (name, count, weights, urgent))

std::int64_t add(std::int64_t a, std::int32_t b) { return a + b; }
std::string greet(std::string name, bool loud) { return loud ? name + "!" : name; }
std::size_t store(item i) { return i.name.size() + i.weights.size(); }

const std::vector<framex::detail::http_handler>& handlers() {
  static const std::vector<framex::detail::http_handler> h{
      framex::detail::route_binder<decltype(&add)>::make(&add, {"a", "b"}),
      framex::detail::route_binder<decltype(&greet)>::make(&greet, {"name", "loud"}),
      framex::detail::route_binder<decltype(&store)>::make(&store, {}),
  };
  return h;
}

const std::vector<framex::detail::plugin_api_spec>& plugin_apis() {
  static const std::vector<framex::detail::plugin_api_spec> apis{
      framex::on_request<&add>("/add", {.params = {"a", "b"}}),
      framex::on_request<&greet>("/greet", {.params = {"name", "loud"}}),
      framex::on_request<&store>("/store"),
  };
  return apis;
}

// What the plugin host does with a request: its arguments as a JSON object.
boost::asio::awaitable<framex::detail::api_result> invoke(const framex::detail::plugin_api_spec& spec,
                                                          const framex::detail::http_call& call) {
  const boost::json::object args = framex::detail::request_object(call);
  const framex::detail::api_input in{args, &call};
  co_return co_await spec.invoke(nullptr, spec, in);
}

template <class Result>
void must_be_a_value_or_4xx(std::exception_ptr e, Result) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const framex::detail::http_error& bad_request) {
    if (bad_request.status() < 400 || bad_request.status() > 499) std::abort();
  } catch (...) {
    std::abort();  // anything else would be a 500 for a malformed request
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  const auto& request = parser.get();
  const std::string_view target = request.target();
  const std::size_t q = target.find('?');
  framex::detail::http_call call;
  if (q != std::string_view::npos) call.query = framex::detail::parse_query(target.substr(q + 1));
  call.body = request.body();
  call.json_body = !call.body.empty();
  boost::asio::io_context io;
  for (const auto& handler : handlers()) {
    boost::asio::co_spawn(io, handler(call), must_be_a_value_or_4xx<framex::detail::http_reply>);
  }
  for (const auto& spec : plugin_apis()) {
    boost::asio::co_spawn(io, invoke(spec, call), must_be_a_value_or_4xx<framex::detail::api_result>);
  }
  io.run();
  return 0;
}
