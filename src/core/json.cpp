// Boost.JSON's compiled part (Debian ships Boost 1.81 without libboost_json),
// and the JSON helpers of the route binder.
#include <boost/json/src.hpp>

#include "framex/detail/http.hpp"

namespace framex::detail {

boost::json::value parse_body(const http_call& call) {
  boost::system::error_code ec;
  auto v = boost::json::parse(call.body, ec);
  if (ec) throw http_error(400, "the body must be JSON (Content-Type: application/json): " + ec.message());
  return v;
}

boost::json::object query_object(const http_call& call) {
  boost::json::object out;
  for (const auto& [key, text] : call.query) {
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || v.is_object() || v.is_array()) {
      out[key] = text;
    } else {
      out[key] = std::move(v);
    }
  }
  return out;
}

boost::json::object request_object(const http_call& call) {
  if (!call.json_body) return query_object(call);
  boost::json::value v = parse_body(call);
  if (!v.is_object()) throw http_error(400, "the JSON body must be an object");
  return std::move(v.as_object());
}

}  // namespace framex::detail
