// Template bodies for framex/plugin.hpp: describing a plugin class, binding its
// APIs' arguments from JSON, JSON Schemas of their types, and the typed calls.
#pragma once

#include <boost/describe/members.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/mp11/algorithm.hpp>

#include <algorithm>
#include <concepts>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "framex/config.hpp"
#include "framex/detail/distributed_call.hpp"
#include "framex/detail/signature.hpp"
#include "framex/error.hpp"

namespace framex::detail {

/// A plugin's configuration from its `[plugins.NAME]` keys: members not given
/// keep their defaults; an unknown key or a wrong type is a `config_error`.
template <class Cfg>
Cfg plugin_config_from(const boost::json::object& keys, const std::string& plugin) {
  Cfg cfg{};
  std::vector<std::string> known;
  if constexpr (boost::describe::has_describe_members<Cfg>::value) {
    boost::mp11::mp_for_each<boost::describe::describe_members<Cfg, boost::describe::mod_public>>([&](auto d) {
      known.emplace_back(d.name);
      const auto* v = keys.if_contains(d.name);
      if (v == nullptr) return;
      using member = std::remove_cvref_t<decltype(cfg.*d.pointer)>;
      auto r = boost::json::try_value_to<member>(*v);
      if (!r) {
        throw config_error("plugins." + plugin + "." + d.name + ": " + r.error().message() + " (got " +
                           boost::json::serialize(*v) + ")");
      }
      cfg.*d.pointer = std::move(*r);
    });
  }
  for (const auto& [key, value] : keys) {
    if (std::find(known.begin(), known.end(), std::string_view(key)) == known.end()) {
      std::string takes;
      for (const auto& k : known) {
        if (!takes.empty()) takes += ", ";
        takes += k;
      }
      throw config_error("plugins." + plugin + ": unknown key \"" + std::string(key) + "\" (the plugin takes " +
                         (takes.empty() ? std::string("none") : takes) + ")");
    }
  }
  return cfg;
}

struct no_plugin_config {};

template <class C>
class plugin_holder final : public plugin_object {
 public:
  template <class... A>
  explicit plugin_holder(A&&... a) : object_(std::forward<A>(a)...) {}
  void* get() noexcept override { return &object_; }
  boost::asio::awaitable<void> start() override {
    if constexpr (requires { object_.on_start(); }) {
      if constexpr (awaited<decltype(object_.on_start())>::is_awaitable) {
        co_await object_.on_start();
      } else {
        object_.on_start();
      }
    }
    co_return;
  }
  void stop() noexcept override {
    if constexpr (requires { object_.on_stop(); }) {
      try {
        object_.on_stop();
      } catch (...) {  // a plugin's stop must not stop the others'
      }
    }
  }

 private:
  C object_;
};

template <class C>
std::unique_ptr<plugin_object> create_plugin(const boost::json::object& keys, const std::string& name) {
  if constexpr (requires { typename C::config_type; }) {
    return std::make_unique<plugin_holder<C>>(plugin_config_from<typename C::config_type>(keys, name));
  } else {
    static_assert(std::is_default_constructible_v<C>,
                  "FRAMEX_PLUGIN: the class needs a default constructor, or `using config_type = ...;` and a "
                  "constructor taking it");
    (void)plugin_config_from<no_plugin_config>(keys, name);
    return std::make_unique<plugin_holder<C>>();
  }
}

template <class T>
boost::json::value result_json(T&& value) {
  return boost::json::value_from(std::forward<T>(value));
}

inline const http_call& no_http_call() {
  static const http_call none = [] {
    http_call c;
    c.json_body = true;
    return c;
  }();
  return none;
}

template <auto M, class Params = typename fn_traits<decltype(M)>::params>
struct api_binder;
template <auto M, class... Ps>
struct api_binder<M, type_list<Ps...>> {
  using traits = fn_traits<decltype(M)>;
  using result = typename traits::result;
  using value = typename awaited<result>::type;
  using args = std::tuple<std::remove_cvref_t<Ps>...>;
  static constexpr bool whole_body =
      sizeof...(Ps) == 1 && (boost::describe::has_describe_members<std::remove_cvref_t<Ps>>::value && ...);
  static constexpr bool raw = sizeof...(Ps) == 1 && (std::is_same_v<std::remove_cvref_t<Ps>, http_call> && ...);
  static_assert(!raw || std::is_same_v<value, http_reply>,
                "framex::on_request: a method taking the whole framex::http_request returns a framex::http_response");

  static void check(const std::vector<std::string>& names) {
    if constexpr (raw) {
      if (!names.empty()) throw std::invalid_argument(derived_name<M>() + " takes the whole request: it names no parameters");
      return;
    }
    if (!(whole_body && names.empty()) && names.size() != sizeof...(Ps)) {
      throw std::invalid_argument(derived_name<M>() + ": name each of its " + std::to_string(sizeof...(Ps)) +
                                  " parameters in .params (" + std::to_string(names.size()) + " named)");
    }
  }

  template <std::size_t... I>
  static std::tuple<std::remove_cvref_t<Ps>...> bind(const plugin_api_spec& spec, api_input in,
                                                    std::index_sequence<I...>) {
    const http_call& call = in.call != nullptr ? *in.call : no_http_call();
    if (spec.params.empty()) {  // one described struct: the whole object
      (check_members<std::remove_cvref_t<Ps>>(in.args), ...);
      return {value_as<std::remove_cvref_t<Ps>>(boost::json::value(in.args), "the request's fields")...};
    }
    return {bind_named<std::remove_cvref_t<Ps>>(call, in.args, spec.params[I])...};
  }

  static result run(void* object, args& values) {
    return std::apply(
        [object](auto&... a) -> result {
          if constexpr (traits::is_member) {
            return (static_cast<typename traits::object*>(object)->*M)(std::move(a)...);
          } else {
            (void)object;
            return M(std::move(a)...);
          }
        },
        values);
  }

  static boost::asio::awaitable<api_result> invoke(void* object, const plugin_api_spec& spec, api_input in) {
    api_result out;
    if constexpr (raw) {
      if (in.call == nullptr) throw http_error(400, spec.path + " answers HTTP requests only");
      args request{*in.call};
      if constexpr (awaited<result>::is_awaitable) {
        http_reply reply = co_await run(object, request);
        out.raw.emplace(std::move(reply));
      } else {
        out.raw.emplace(run(object, request));
      }
      co_return out;
    } else {
      args values = bind(spec, in, std::index_sequence_for<Ps...>{});
      co_return co_await invoke_bound(object, values);
    }
  }

  // (Results are named before use: GCC 12 mishandles temporaries with
  // destructors in a co_await expression.)
  static boost::asio::awaitable<api_result> invoke_bound(void* object, args& values) {
    api_result out;
    if constexpr (std::is_void_v<value>) {
      if constexpr (awaited<result>::is_awaitable) {
        co_await run(object, values);
      } else {
        run(object, values);
      }
    } else if constexpr (std::is_same_v<value, framex::stream>) {
      if constexpr (awaited<result>::is_awaitable) {
        framex::stream s = co_await run(object, values);
        out.streamed.emplace(std::move(s));
      } else {
        out.streamed.emplace(run(object, values));
      }
    } else if constexpr (awaited<result>::is_awaitable) {
      value v = co_await run(object, values);
      out.value = result_json(std::move(v));
    } else {
      out.value = result_json(run(object, values));
    }
    co_return out;
  }

  static plugin_api_spec make(std::string path, std::string function, api_options o) {
    check(o.params);
    plugin_api_spec s;
    s.path = std::move(path);
    s.function = std::move(function);
    s.methods = std::move(o.methods);
    s.params = std::move(o.params);
    s.summary = std::move(o.summary);
    if constexpr (whole_body) {
      if (s.params.empty()) s.body_schema = json_schema<Ps...>();
    }
    if (!s.params.empty()) s.param_schemas = {json_schema<Ps>()...};
    s.result_schema = json_schema<value>();
    s.streams = std::is_same_v<value, framex::stream>;
    s.raw = raw;
    s.member = derived_name<M>();
    s.invoke = &invoke;
    return s;
  }
};

/// The method's own name: "confess" of "EchoPlugin::confess".
inline std::string last_name(const std::string& qualified) {
  const std::size_t colons = qualified.rfind("::");
  return colons == std::string::npos ? qualified : qualified.substr(colons + 2);
}

template <class C, class... Specs>
plugin_descriptor describe_plugin(plugin_metadata metadata, Specs... apis) {
  static_assert((std::is_same_v<Specs, plugin_api_spec> && ...),
                "FRAMEX_PLUGIN(Class, metadata, apis...): each API is a framex::on_request<&Class::method>(...)");
  plugin_descriptor d;
  d.abi = plugin_abi;
  d.metadata = std::move(metadata);
  (d.apis.push_back(std::move(apis)), ...);
  d.create = &create_plugin<C>;
  return d;
}

/// Converts what an API gave to `T`.
template <class T>
T api_value_as(api_result r, std::string_view api) {
  if constexpr (std::is_same_v<T, framex::stream>) {
    if (!r.streamed) throw std::system_error(make_error_code(errc::bad_arguments), std::string(api) + " does not stream");
    return std::move(*r.streamed);
  } else if constexpr (std::is_void_v<T>) {
    return;
  } else {
    if (r.streamed) {
      throw std::system_error(make_error_code(errc::bad_arguments),
                              std::string(api) + " streams: call it as call_plugin_api<framex::stream>");
    }
    if constexpr (std::is_same_v<T, boost::json::value>) {
      return std::move(r.value);
    } else {
      auto v = boost::json::try_value_to<T>(r.value);
      if (!v) {
        throw std::system_error(make_error_code(errc::bad_arguments),
                                std::string(api) + "'s result does not convert: " + v.error().message() + " (got " +
                                    boost::json::serialize(r.value) + ")");
      }
      return std::move(*v);
    }
  }
}

}  // namespace framex::detail

namespace framex {

template <auto M>
detail::plugin_api_spec on_request(std::string path, api_options options) {
  if (!path.starts_with("/api/")) path = "/api/v1" + (path.starts_with('/') ? path : "/" + path);
  std::string function;
  if (options.func_api) function = options.name.empty() ? detail::last_name(detail::derived_name<M>()) : options.name;
  return detail::api_binder<M>::make(std::move(path), std::move(function), std::move(options));
}

template <auto M>
detail::plugin_api_spec on_request(func_api_t, api_options options) {
  std::string function = options.name.empty() ? detail::last_name(detail::derived_name<M>()) : options.name;
  options.methods.clear();
  return detail::api_binder<M>::make({}, std::move(function), std::move(options));
}

template <class T>
boost::asio::awaitable<T> call_plugin_api(std::string_view api, boost::json::object args) {
  const std::string name(api);  // the caller's view may not outlive the first suspension
  detail::api_result r = co_await detail::call_plugin_api(name, std::move(args));
  co_return detail::api_value_as<T>(std::move(r), name);
}

template <auto M>
struct plugin_api_t {
  using traits = detail::fn_traits<decltype(M)>;
  using value = typename detail::awaited<typename traits::result>::type;

  /// Calls the API with these arguments (converted to its parameters' types).
  template <class... A>
  boost::asio::awaitable<value> remote(A&&... a) const {
    return call(typename detail::api_binder<M>::args(std::forward<A>(a)...));
  }

 private:
  static boost::asio::awaitable<value> call(typename detail::api_binder<M>::args args) {
    static_assert(!detail::api_binder<M>::raw, "framex::plugin_api: this API takes whole HTTP requests");
    static const std::string member = detail::derived_name<M>();
    detail::api_target target = detail::find_plugin_api(member);
    if (target.object != nullptr) {
      if constexpr (detail::awaited<typename traits::result>::is_awaitable) {
        co_return co_await detail::api_binder<M>::run(target.object, args);
      } else {
        co_return detail::api_binder<M>::run(target.object, args);
      }
    }
    // Deployed: by name, as JSON.
    boost::json::object named;
    std::apply(
        [&](const auto&... a) {
          std::size_t i = 0;
          if (target.spec->params.empty()) {
            ((named = boost::json::value_from(a).as_object()), ...);
          } else {
            ((named[target.spec->params[i++]] = boost::json::value_from(a)), ...);
          }
        },
        args);
    detail::api_result r = co_await detail::call_plugin_api(target.name, std::move(named));
    co_return detail::api_value_as<value>(std::move(r), target.name);
  }
};

}  // namespace framex
