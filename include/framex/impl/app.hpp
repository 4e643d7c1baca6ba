// Template bodies for framex/app.hpp: binding a route's parameters and result.
#pragma once

#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <cstddef>
#include <optional>
#include <string_view>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "framex/detail/signature.hpp"

namespace framex::detail {

/// The body as a JSON value; throws http_error(400) when it is not JSON.
boost::json::value parse_body(const http_call& call);
/// The query string as a JSON object: values that parse as JSON are typed
/// (`n=5` is 5), the rest are strings.
boost::json::object query_object(const http_call& call);
/// A request's arguments: the JSON body's object, or the query string's
/// (`query_object`). Throws http_error(400) for a body that is not a JSON object.
boost::json::object request_object(const http_call& call);

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
concept string_keyed = requires {
  typename T::mapped_type;
  typename T::key_type;
} && std::is_convertible_v<typename T::key_type, std::string_view>;

/// The JSON Schema (OpenAPI 3.0's dialect) of what `T` becomes in JSON.
template <class T>
boost::json::value json_schema() {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_void_v<U>) {
    return {{"nullable", true}};
  } else if constexpr (std::is_same_v<U, bool>) {
    return {{"type", "boolean"}};
  } else if constexpr (std::is_integral_v<U>) {
    return {{"type", "integer"}};
  } else if constexpr (std::is_floating_point_v<U>) {
    return {{"type", "number"}};
  } else if constexpr (std::is_convertible_v<U, std::string_view>) {
    return {{"type", "string"}};
  } else if constexpr (is_optional<U>::value) {
    boost::json::value s = json_schema<typename U::value_type>();
    s.as_object()["nullable"] = true;
    return s;
  } else if constexpr (std::is_same_v<U, framex::stream>) {
    return {{"type", "string"}, {"description", "a stream of pieces"}};
  } else if constexpr (boost::describe::has_describe_members<U>::value) {
    boost::json::object properties;
    boost::json::array required;
    boost::mp11::mp_for_each<boost::describe::describe_members<U, boost::describe::mod_public>>([&](auto d) {
      properties[d.name] = json_schema<decltype(std::declval<U&>().*d.pointer)>();
      required.push_back(boost::json::string(d.name));
    });
    return {{"type", "object"}, {"properties", std::move(properties)}, {"required", std::move(required)}};
  } else if constexpr (string_keyed<U>) {
    return {{"type", "object"}, {"additionalProperties", json_schema<typename U::mapped_type>()}};
  } else if constexpr (requires(const U& u) {
                         typename U::value_type;
                         u.begin();
                       }) {
    return {{"type", "array"}, {"items", json_schema<typename U::value_type>()}};
  } else {
    return boost::json::object{};  // any JSON value
  }
}

template <class T>
T value_as(const boost::json::value& v, const std::string& what) {
  auto r = boost::json::try_value_to<T>(v);
  if (!r) throw http_error(400, what + ": " + r.error().message() + " (got " + boost::json::serialize(v) + ")");
  return std::move(*r);
}

template <class T>
T bind_named(const http_call& call, const boost::json::object& inputs, const std::string& name) {
  const auto* v = inputs.if_contains(name);
  if (v == nullptr) throw http_error(400, "parameter '" + name + "' is missing");
  if constexpr (std::is_same_v<T, std::string>) {
    if (!call.json_body && v->is_number()) return call.query.at(name);  // "007" stays a string
  }
  auto r = boost::json::try_value_to<T>(*v);  // (the message is made only for an error)
  if (!r) return value_as<T>(*v, "parameter '" + name + "'");
  return std::move(*r);
}

// Names the first member of a described struct that the request lacks, or
// has with the wrong type.
template <class T>
void check_members(const boost::json::object& inputs) {
  if constexpr (boost::describe::has_describe_members<T>::value) {
    boost::mp11::mp_for_each<boost::describe::describe_members<T, boost::describe::mod_public>>([&](auto d) {
      const std::string what = std::string("parameter '") + d.name + "'";
      const auto* v = inputs.if_contains(d.name);
      if (v == nullptr) throw http_error(400, what + " is missing");
      (void)value_as<std::remove_cvref_t<decltype(std::declval<T&>().*d.pointer)>>(*v, what);
    });
  }
}

template <class Fn, class Params = typename fn_traits<Fn>::params>
struct route_binder;
template <class Fn, class... Ps>
struct route_binder<Fn, type_list<Ps...>> {
  using result = typename fn_traits<Fn>::result;
  using value = typename awaited<result>::type;

  static http_handler make(Fn fn, std::vector<std::string> names) {
    constexpr bool whole_body = sizeof...(Ps) == 1 && (boost::describe::has_describe_members<std::remove_cvref_t<Ps>>::value && ...);
    if (!(whole_body && names.empty()) && names.size() != sizeof...(Ps)) {
      throw std::invalid_argument("framex::app::on_request: name each of the function's " +
                                  std::to_string(sizeof...(Ps)) + " parameters");
    }
    return [fn, names = std::move(names)](http_call& call) -> boost::asio::awaitable<http_reply> {
      const boost::json::object inputs = request_object(call);
      auto args = bind(call, inputs, names, std::index_sequence_for<Ps...>{});
      http_reply reply;
      if constexpr (std::is_void_v<value>) {
        if constexpr (awaited<result>::is_awaitable) {
          co_await std::apply(fn, std::move(args));
        } else {
          std::apply(fn, std::move(args));
        }
        reply.body = "null";
      } else if constexpr (std::is_same_v<value, framex::stream>) {
        if constexpr (awaited<result>::is_awaitable) {
          framex::stream s = co_await std::apply(fn, std::move(args));
          reply.streamed.emplace(std::move(s));
        } else {
          reply.streamed.emplace(std::apply(fn, std::move(args)));
        }
      } else if constexpr (awaited<result>::is_awaitable) {
        reply.body = boost::json::serialize(boost::json::value_from(co_await std::apply(fn, std::move(args))));
      } else {
        reply.body = boost::json::serialize(boost::json::value_from(std::apply(fn, std::move(args))));
      }
      co_return reply;
    };
  }

  static route_doc doc(const route_options& o) {
    route_doc d;
    d.params = o.params;
    d.summary = o.summary;
    if constexpr (sizeof...(Ps) == 1) {
      if (o.params.empty()) d.body_schema = json_schema<Ps...>();
    }
    if (!o.params.empty()) d.param_schemas = {json_schema<Ps>()...};
    d.result_schema = json_schema<value>();
    return d;
  }

  template <std::size_t... I>
  static std::tuple<std::remove_cvref_t<Ps>...> bind(const http_call& call, const boost::json::object& inputs,
                                                    const std::vector<std::string>& names, std::index_sequence<I...>) {
    if (names.empty()) {  // one described struct: the whole object
      (check_members<std::remove_cvref_t<Ps>>(inputs), ...);
      return {value_as<std::remove_cvref_t<Ps>>(boost::json::value(inputs), "the request's fields")...};
    }
    return {bind_named<std::remove_cvref_t<Ps>>(call, inputs, names[I])...};
  }
};

}  // namespace framex::detail

namespace framex {

template <class Fn>
app& app::on_request(std::string path, Fn fn, route_options options) {
  static_assert(std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>,
                "framex::app::on_request: pass a function pointer, e.g. &run_job");
  detail::route_doc doc = detail::route_binder<Fn>::doc(options);
  add_route(std::move(path), std::move(options.methods), detail::route_binder<Fn>::make(fn, std::move(options.params)),
            std::move(doc));
  return *this;
}

}  // namespace framex
