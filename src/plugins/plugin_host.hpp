// The plugins a process runs: which the configuration names, loaded (linked
// in, built in, or from shared libraries), checked, made, started and stopped;
// where each API is; and the calls to them, here or on the workers.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "framex/config.hpp"
#include "framex/plugin.hpp"

namespace framex::detail {

/// The descriptors of framex's own plugins (builtin_plugins.cpp).
const plugin_descriptor* builtin_plugin(std::string_view name);

class plugin_host {
 public:
  /// In the ingress (`on_workers_side` false) every plugin named is loaded;
  /// those deployed to the workers (in distributed mode) are described but
  /// not made. A worker makes every one (a deployed plugin may call the
  /// others' APIs there). Throws `config_error` for
  /// a plugin that cannot be loaded when `plugins_strict`; otherwise logs it
  /// and leaves it out.
  /// Calls to deployed plugins go through `rt` (null: the current runtime).
  plugin_host(const config& cfg, bool on_workers_side, framex::runtime* rt = nullptr);
  ~plugin_host();
  plugin_host(const plugin_host&) = delete;
  plugin_host& operator=(const plugin_host&) = delete;

  /// Checks every plugin's `required_apis` (an API is present when a plugin
  /// has it or `has_route` says the app serves that path) and the app's
  /// routes against the plugins' (`has_route` of each plugin path: a
  /// duplicate). Throws `config_error` when strict; otherwise drops the plugin.
  void check(const std::function<bool(const std::string&)>& app_has_route);
  /// Runs each made plugin's `on_start`, in load order; one that throws is a
  /// load failure (as above).
  boost::asio::awaitable<void> start();
  /// `on_stop` of each, in reverse order. Idempotent.
  void stop() noexcept;

  struct plugin;
  struct api {
    plugin* owner;
    const plugin_api_spec* spec;
    std::string function;  // "plugin.function", or empty
  };
  /// The HTTP API at `path`, or null.
  [[nodiscard]] const api* find_path(const std::string& path) const;

  /// Serves an HTTP request to `a` (after the method check).
  boost::asio::awaitable<http_reply> serve(const api& a, http_call& call);
  /// Calls `name` (a path or a function name) with `args`; a deployed plugin's
  /// through the runtime, on a worker.
  boost::asio::awaitable<api_result> call(std::string_view name, boost::json::object args);
  api_target find_member(std::string_view member);
  /// On a worker: one call from an ingress (`framex.plugin_call`).
  boost::asio::awaitable<std::string> serve_remote(const std::string& name, const std::string& request);

  /// One line per plugin and per API, for the log.
  void log_summary() const;
  /// The OpenAPI 3.0 document of the plugins' routes plus `extra` (the app's
  /// own routes: path → methods and doc).
  struct route_info {
    std::string path;
    std::vector<http_method> methods;
    route_doc doc;
  };
  [[nodiscard]] std::string openapi(const std::vector<route_info>& extra) const;

  /// The host `call_plugin_api` uses: the latest started, or null.
  ///
  /// A raw pointer, held across `co_await` by the calls it serves. That is
  /// safe because nothing runs a call after its host is gone: an app stops
  /// its plugins and joins its I/O threads before the host is destroyed, and
  /// `serve_worker`'s worker (made after the host) stops and joins its threads
  /// first. Frames still suspended then are destroyed later without running;
  /// what they release (a request's `api_slot`) shares its plugin's record,
  /// not the host. A host made elsewhere must keep that order.
  static plugin_host* current() noexcept;

 private:
  // The description of a plugin linked into the program, or of one in a
  // shared library at the path `item`; null after `fail`.
  const plugin_descriptor* find_linked(const std::string& item);
  const plugin_descriptor* open_library(const std::string& item);
  void load(const std::string& item, const plugin_descriptor* d, const std::string& source);
  void fail(const std::string& plugin, const std::string& why);
  void drop(plugin& p);
  const api* find(std::string_view name) const;
  static api_slot take_slot(plugin& p);
  static std::string overloaded_message(const plugin& p);

  config cfg_;
  bool on_workers_side_;
  framex::runtime* runtime_;
  std::vector<std::shared_ptr<plugin>> plugins_;  // shared with the slots of requests still held
  struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using api_map = std::unordered_map<std::string, api, name_hash, std::equal_to<>>;
  api_map by_path_;
  api_map by_function_;
  api_map by_member_;
  bool started_ = false;
};

// A loaded plugin: what it is, where it runs, and its bound on requests.
struct plugin_host::plugin : std::enable_shared_from_this<plugin> {
  const plugin_descriptor* d = nullptr;
  std::string source;                     // "built in", "linked in" or the library's path
  std::unique_ptr<plugin_object> object;  // null when it runs elsewhere
  bool elsewhere = false;                 // on the workers (ingress side)
  std::size_t max_ongoing = 0;            // 0: no bound
  std::atomic<std::size_t> ongoing{0};
  bool dropped = false;
};

}  // namespace framex::detail
