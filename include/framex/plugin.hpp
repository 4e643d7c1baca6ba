// framex/plugin.hpp — build a service out of independently written plugins.
//
// A plugin is a class, its metadata and the list of its APIs: HTTP routes
// (served by `framex::app` under /api/v1) and function APIs (called by name
// from other plugins and handlers), registered with one macro. The app loads
// the plugins its configuration names — linked into the binary, or shared
// libraries loaded at start-up — and runs each in this process or, deployed,
// on the workers; plugin code never names the backend.
//
// @code
// struct echo_config { std::string prefix = ">"; };
// BOOST_DESCRIBE_STRUCT(echo_config, (), (prefix))
//
// class EchoPlugin {
//  public:
//   using config_type = echo_config;                       // read from [plugins.echo]
//   explicit EchoPlugin(echo_config cfg);
//   asio::awaitable<void> on_start();                      // optional
//   void on_stop();                                        // optional
//   std::string echo(std::string message);                 // GET /api/v1/echo?message=hi
//   asio::awaitable<std::string> confess(std::string message);   // function API echo.confess
// };
// FRAMEX_PLUGIN(EchoPlugin,
//   framex::plugin_metadata{.name = "echo", .version = "1.0.0", .description = "Says it back"},
//   framex::on_request<&EchoPlugin::echo>("/echo", {.params = {"message"}, .methods = {framex::http_method::get}}),
//   framex::on_request<&EchoPlugin::confess>(framex::func_api, {.params = {"message"}}));
//
// // elsewhere, from any handler or plugin:
// auto s = co_await framex::call_plugin_api<std::string>("echo.confess", {{"message", "hi"}});
// auto t = co_await framex::plugin_api<&EchoPlugin::confess>.remote("hi");   // typed, no names
// @endcode
//
// Parameters bind as `app::on_request`'s do (named ones from the query string
// or the JSON body's members, one described struct from the whole body), and
// results go out as JSON. A handler may instead return a `framex::stream`,
// sent as chunked transfer or as Server-Sent Events.
//
// Configuration (framex.toml, or FRAMEX_ variables and --flags as every key):
// `load_plugins = ["echo", "/opt/svc/libbilling.so"]` (names of plugins linked
// in, or paths of shared libraries built with `framex_add_plugin`),
// `load_builtin_plugins = ["echo", "proxy"]`, `plugins_strict = true` (a plugin
// that fails to load stops start-up; otherwise it is reported and left out),
// `[plugins] max_ongoing_requests = N` (the default bound of every plugin) and
// `[plugins.NAME]`: the plugin's own keys (its `config_type`), plus
// `max_ongoing_requests` and `deploy = "workers"`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "framex/app.hpp"

namespace framex {

/// What a plugin says about itself. `name` is required (letters, digits, `_`,
/// `-`); `required_apis` lists APIs (paths such as "/api/v1/other" or function
/// APIs such as "other.lookup") that must be present when the app starts.
struct plugin_metadata {
  std::string name{};
  std::string version{};
  std::string description{};
  std::string author{};
  std::string url{};
  std::vector<std::string> required_apis{};
};

/// Marks an API as a function API only (no HTTP route).
struct func_api_t {
  explicit constexpr func_api_t() = default;
};
inline constexpr func_api_t func_api{};

/// How one plugin API binds and where it is reachable.
struct api_options {
  /// Names of the method's parameters, in order (as `route_options::params`).
  std::vector<std::string> params{};
  /// HTTP methods served; others get 405.
  std::vector<http_method> methods{http_method::get, http_method::post};
  /// An HTTP route that is also a function API.
  bool func_api = false;
  /// The function API's name inside the plugin ("PLUGIN.NAME"); empty: the
  /// method's own name.
  std::string name{};
  /// One line for the /docs page and openapi.json.
  std::string summary{};
};

namespace detail {

/// What a plugin API produced: a JSON value, or a stream.
struct api_result {
  boost::json::value value;
  std::optional<framex::stream> streamed;
  std::optional<http_reply> raw;  // from a handler of whole requests
};

/// One call's inputs: the arguments by name, and the HTTP request when there
/// is one (a query string's "007" binds to a string parameter as text).
struct api_input {
  const boost::json::object& args;
  const http_call* call = nullptr;
};

/// A plugin's instance, as the host sees it.
class plugin_object {
 public:
  virtual ~plugin_object() = default;
  [[nodiscard]] virtual void* get() noexcept = 0;
  virtual boost::asio::awaitable<void> start() = 0;
  virtual void stop() noexcept = 0;
};

/// One API of a plugin (made by `framex::on_request`).
struct plugin_api_spec {
  std::string path;      // "/api/v1/..." or empty
  std::string function;  // the name inside the plugin, or empty
  std::vector<http_method> methods;
  std::vector<std::string> params;
  std::string summary;
  /// JSON Schema of each parameter (or of the whole body), and of the result.
  std::vector<boost::json::value> param_schemas;
  boost::json::value body_schema;  // null unless one described struct is the body
  boost::json::value result_schema;
  bool streams = false;
  /// Takes the whole request and answers it (`framex::http_request`).
  bool raw = false;
  /// The member function's name ("EchoPlugin::confess"), for `plugin_api<&C::m>`.
  std::string member;
  boost::asio::awaitable<api_result> (*invoke)(void* object, const plugin_api_spec& spec, api_input in) = nullptr;
};

/// Everything the host knows of a plugin before making it.
struct plugin_descriptor {
  int abi = 0;
  plugin_metadata metadata;
  std::vector<plugin_api_spec> apis;
  /// Makes the plugin from its `[plugins.NAME]` keys; throws `config_error`.
  std::unique_ptr<plugin_object> (*create)(const boost::json::object& config, const std::string& name) = nullptr;
};

/// Bumped when `plugin_descriptor` changes: a shared library built against
/// another layout is refused.
inline constexpr int plugin_abi = 1;

/// Adds a plugin linked into the program (FRAMEX_PLUGIN does this).
struct plugin_registrar {
  explicit plugin_registrar(const plugin_descriptor& (*describe)()) noexcept;
};

/// Calls an API of a loaded plugin by path or "plugin.function" name; throws
/// `std::system_error` with `errc::unknown_function` when there is none.
/// (`args` is moved into the call before this returns.)
boost::asio::awaitable<api_result> call_plugin_api(std::string_view api, boost::json::object&& args);

/// One of a plugin's `max_ongoing_requests`, held while it lives; empty when
/// the plugin had none free. It shares the count's ownership: a request still
/// held when its app goes away (a suspended connection destroyed with the
/// app's io_context) releases it safely.
class api_slot {
 public:
  api_slot() = default;
  explicit api_slot(std::shared_ptr<std::atomic<std::size_t>> count) noexcept : count_(std::move(count)) {}
  api_slot(api_slot&&) noexcept = default;
  api_slot& operator=(api_slot&& other) noexcept {
    release();
    count_ = std::move(other.count_);
    return *this;
  }
  ~api_slot() { release(); }
  explicit operator bool() const noexcept { return count_ != nullptr; }

 private:
  void release() noexcept {
    if (count_ != nullptr) count_->fetch_sub(1, std::memory_order_relaxed);
    count_.reset();
  }
  std::shared_ptr<std::atomic<std::size_t>> count_;
};

/// A plugin API found by its member function's name ("EchoPlugin::confess"),
/// holding one of the plugin's `max_ongoing_requests` while it lives.
struct api_target {
  void* object = nullptr;  // null when the plugin runs on the workers
  const plugin_api_spec* spec = nullptr;
  std::string_view name;   // the path or function name to call it by (the host holds it)
  api_slot slot;
};
/// Throws as `call_plugin_api`.
api_target find_plugin_api(std::string_view member);

}  // namespace detail

/// An HTTP route of a plugin; `path` is under /api/v1 unless it begins with
/// "/api/". `M` is a member function of the plugin class (or a static one).
/// A path ending in "/*" serves every path under it that no other route
/// has (the longest such prefix wins).
template <auto M>
detail::plugin_api_spec on_request(std::string path, api_options options = {});
/// A function API of a plugin, named "PLUGIN." plus `options.name` or the
/// method's name.
template <auto M>
detail::plugin_api_spec on_request(func_api_t, api_options options = {});

/// Calls a loaded plugin's API, by path ("/api/v1/echo") or function name
/// ("echo.confess"), with its arguments by name, and converts the result to
/// `T` (`boost::json::value` takes it as it is; `framex::stream` takes a
/// stream). Errors: `std::system_error` with `errc::unknown_function` for no
/// such API, `errc::bad_arguments` when arguments or result do not convert,
/// `errc::overloaded` beyond the plugin's `max_ongoing_requests`; what the API
/// throws propagates.
template <class T>
boost::asio::awaitable<T> call_plugin_api(std::string_view api, boost::json::object args = {});

/// A plugin's API called with typed arguments, as `remote` calls functions:
/// `co_await framex::plugin_api<&EchoPlugin::confess>.remote("hi")`.
template <auto M>
struct plugin_api_t;
template <auto M>
inline constexpr plugin_api_t<M> plugin_api{};

}  // namespace framex

#include "framex/impl/plugin.hpp"

#if defined(FRAMEX_PLUGIN_SHARED_LIBRARY)
/// Registers a plugin class: its metadata, then one `framex::on_request` per API.
/// In a shared library built with `framex_add_plugin`, exports it instead.
#define FRAMEX_PLUGIN(Class, ...)                                                                        \
  extern "C" __attribute__((visibility("default"))) const ::framex::detail::plugin_descriptor*          \
  framex_plugin_descriptor() {                                                                           \
    static const ::framex::detail::plugin_descriptor d = ::framex::detail::describe_plugin<Class>(__VA_ARGS__); \
    return &d;                                                                                           \
  }                                                                                                      \
  static_assert(true)
#else
#define FRAMEX_PLUGIN_CAT2_(a, b) a##b
#define FRAMEX_PLUGIN_CAT_(a, b) FRAMEX_PLUGIN_CAT2_(a, b)
#define FRAMEX_PLUGIN(Class, ...)                                                                        \
  namespace {                                                                                            \
  const ::framex::detail::plugin_registrar FRAMEX_PLUGIN_CAT_(framex_plugin_registrar_, __LINE__){        \
      +[]() -> const ::framex::detail::plugin_descriptor& {                                              \
        static const ::framex::detail::plugin_descriptor d = ::framex::detail::describe_plugin<Class>(__VA_ARGS__); \
        return d;                                                                                        \
      }};                                                                                                \
  }                                                                                                      \
  static_assert(true)
#endif
