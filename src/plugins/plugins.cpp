// Plugins: the registry of those linked in, loading (Boost.DLL for shared
// libraries), the checks, start and stop, where each API is, and calls here
// or on the workers (`framex.plugin_call`). The OpenAPI document is openapi.cpp.
#include "plugins/plugin_host.hpp"

#define BOOST_DLL_USE_STD_FS
#include <boost/dll/shared_library.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <spdlog/spdlog.h>

#include <dlfcn.h>

#include <algorithm>
#include <mutex>

#include "framex/remote.hpp"
#include "http/http_server.hpp"
#include "protocol/protocol.hpp"

namespace framex::detail {
/// A worker's side of a call to a deployed plugin: `request` and the answer are JSON.
boost::asio::awaitable<std::string> plugin_call(std::string name, std::string request);
}  // namespace framex::detail

template <>
inline constexpr std::string_view framex::wire_name<&framex::detail::plugin_call> = framex::protocol::plugin_call;

namespace framex::detail {
namespace {

namespace json = boost::json;
inline constexpr auto plugin_call_remote = framex::remote<&plugin_call>;

std::vector<const plugin_descriptor& (*)()>& linked_plugins() {
  static std::vector<const plugin_descriptor& (*)()> all;
  return all;
}

std::mutex hosts_mutex;
std::vector<plugin_host*> hosts;  // live hosts, oldest first
std::vector<plugin_host*> worker_hosts;
std::atomic<plugin_host*> current_host{nullptr};  // the newest ingress host, else the newest worker's

void choose_current() {  // under hosts_mutex
  current_host.store(!hosts.empty() ? hosts.back() : worker_hosts.empty() ? nullptr : worker_hosts.back(),
                     std::memory_order_release);
}


bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
  });
}

std::system_error api_error(errc code, const std::string& message) {
  return std::system_error(make_error_code(code), message);
}

// A deployed plugin's answer (see `plugin_host::serve_remote`).
api_result from_answer(const std::string& text) {
  json::value v = json::parse(text);
  json::object& o = v.as_object();
  if (const auto* e = o.if_contains("error")) {
    throw http_error(static_cast<int>(e->at("status").to_number<int>()), std::string(e->at("message").as_string()));
  }
  api_result r;
  if (const auto* pieces = o.if_contains("stream")) {
    auto rest = std::make_shared<std::vector<std::string>>();
    for (const auto& p : pieces->as_array()) rest->emplace_back(p.as_string());
    std::reverse(rest->begin(), rest->end());
    auto next = [rest]() -> boost::asio::awaitable<std::optional<std::string>> {
      if (rest->empty()) co_return std::nullopt;
      std::string piece = std::move(rest->back());
      rest->pop_back();
      co_return piece;
    };
    const std::string type(o.at("content_type").as_string());
    r.streamed.emplace(o.at("format").as_string() == "events" ? stream::events(next) : stream::chunked(next, type));
    return r;
  }
  r.value = std::move(o["value"]);
  return r;
}

}  // namespace

plugin_registrar::plugin_registrar(const plugin_descriptor& (*describe)()) noexcept {
  linked_plugins().push_back(describe);
}

plugin_host::plugin_host(const config& cfg, bool on_workers_side, framex::runtime* rt)
    : cfg_(cfg), on_workers_side_(on_workers_side), runtime_(rt) {
  for (const auto& name : cfg.plugins.load_builtin) load(name, builtin_plugin(name), "built in");
  for (const auto& item : cfg.plugins.load) {
    const bool is_path = item.find('/') != std::string::npos || item.ends_with(".so");
    if (const plugin_descriptor* d = is_path ? open_library(item) : find_linked(item)) load(item, d, is_path ? item : "linked in");
  }
  for (const auto& entry : cfg.plugins.each) {
    const std::string& name = entry.first;
    const bool loaded = std::any_of(plugins_.begin(), plugins_.end(), [&](const auto& p) { return p->d->metadata.name == name; });
    if (!loaded) spdlog::warn("framex: [plugins.{}] is configured, but no plugin of that name is loaded", name);
  }
  std::lock_guard lock(hosts_mutex);
  (on_workers_side_ ? worker_hosts : hosts).push_back(this);
  choose_current();
}

const plugin_descriptor* plugin_host::find_linked(const std::string& item) {
  // A linked-in plugin whose description throws cannot be named: it is
  // reported when the plugin asked for is not found.
  const plugin_descriptor* found = nullptr;
  std::string names, invalid;
  for (auto* describe : linked_plugins()) {
    try {
      const plugin_descriptor& d = describe();
      if (d.metadata.name == item) found = &d;
      if (!names.empty()) names += ", ";
      names += d.metadata.name;
    } catch (const std::exception& e) {
      invalid += "; a linked-in plugin's description is invalid: ";
      invalid += e.what();
    }
  }
  if (found == nullptr) {
    fail(item, "no plugin of that name is linked into this program (linked in: " + (names.empty() ? "none" : names) +
                   "; a shared library is named by its path)" + invalid);
  }
  return found;
}

const plugin_descriptor* plugin_host::open_library(const std::string& item) {
  // Loaded once per process and never unloaded: its code may be running on
  // any thread until the process ends.
  static std::mutex libraries_mutex;
  static auto* libraries = new std::vector<boost::dll::shared_library>;
  std::lock_guard lock(libraries_mutex);
  boost::dll::fs::error_code ec;
  boost::dll::shared_library library(item, ec, boost::dll::load_mode::rtld_now);
  if (ec) {
    const char* why = dlerror();
    fail(item, "cannot be loaded: " + (why != nullptr ? std::string(why) : ec.message()));
    return nullptr;
  }
  if (!library.has("framex_plugin_descriptor")) {
    fail(item, "is not a framex plugin: it exports no framex_plugin_descriptor (build it with framex_add_plugin)");
    return nullptr;
  }
  const plugin_descriptor* d = nullptr;
  try {
    d = library.get<const plugin_descriptor*()>("framex_plugin_descriptor")();
  } catch (const std::exception& e) {
    fail(item, std::string("its description is invalid: ") + e.what());
    return nullptr;
  }
  libraries->push_back(std::move(library));
  if (d->abi != plugin_abi) {
    fail(item, "was built against another framex (plugin ABI " + std::to_string(d->abi) + ", this program's is " +
                   std::to_string(plugin_abi) + ")");
    return nullptr;
  }
  return d;
}

plugin_host::~plugin_host() {
  stop();
  for (auto& p : plugins_) p->object.reset();  // a plugin ends with its host, whatever still holds a slot
  std::lock_guard lock(hosts_mutex);
  auto& list = on_workers_side_ ? worker_hosts : hosts;
  list.erase(std::remove(list.begin(), list.end(), this), list.end());
  choose_current();
}

plugin_host* plugin_host::current() noexcept { return current_host.load(std::memory_order_acquire); }

void plugin_host::fail(const std::string& plugin, const std::string& why) {
  if (cfg_.plugins.strict) throw config_error("plugin " + plugin + ": " + why);
  spdlog::error("framex: plugin {} is left out: {}", plugin, why);
}

void plugin_host::load(const std::string& item, const plugin_descriptor* d, const std::string& source) {
  if (d == nullptr) return fail(item, "no such built-in plugin");
  const plugin_metadata& m = d->metadata;
  if (!valid_name(m.name)) return fail(item, "its metadata's name \"" + m.name + "\" is not 1 to 64 letters, digits, _ or -");
  if (m.version.empty()) return fail(m.name, "its metadata gives no version");
  for (const auto& p : plugins_) {
    if (p->d->metadata.name == m.name) return fail(m.name, "a plugin of that name is loaded already (from " + p->source + ")");
  }
  for (const auto& spec : d->apis) {
    if (!spec.path.empty() && by_path_.contains(spec.path)) {
      return fail(m.name, "its route " + spec.path + " is a route of plugin " + by_path_.find(spec.path)->second.owner->d->metadata.name);
    }
    if (!spec.function.empty() && (!valid_name(spec.function))) {
      return fail(m.name, "its function API name \"" + spec.function + "\" is not 1 to 64 letters, digits, _ or -");
    }
    if (!spec.function.empty() && by_function_.contains(m.name + "." + spec.function)) {
      return fail(m.name, "it has two function APIs named " + spec.function);
    }
  }
  auto p = std::make_shared<plugin>();
  p->d = d;
  p->source = source;
  p->max_ongoing = cfg_.plugins.max_ongoing_requests;
  const auto settings = cfg_.plugins.each.find(m.name);
  json::object keys;
  if (settings != cfg_.plugins.each.end()) {
    if (settings->second.max_ongoing_requests) p->max_ongoing = *settings->second.max_ongoing_requests;
    for (const auto& [key, text] : settings->second.keys) keys[key] = json::parse(text);
  }
  const bool on_workers = settings != cfg_.plugins.each.end() && settings->second.on_workers &&
                          (on_workers_side_ || cfg_.runtime.mode == mode::distributed);
  if (on_workers) {
    for (const auto& spec : d->apis) {
      if (spec.raw) return fail(m.name, "it cannot be deployed to the workers: " + spec.path + " takes whole HTTP requests");
    }
  }
  p->elsewhere = on_workers && !on_workers_side_;
  if (!p->elsewhere) {
    try {
      p->object = d->create(keys, m.name);
    } catch (const std::exception& e) {
      return fail(m.name, std::string("it could not be made: ") + e.what());
    }
  }
  for (const auto& spec : d->apis) {
    const api a{p.get(), &spec, spec.function.empty() ? std::string() : m.name + "." + spec.function};
    if (!spec.path.empty()) by_path_.emplace(spec.path, a);
    if (!a.function.empty()) by_function_.emplace(a.function, a);
    by_member_.emplace(spec.member, a);
  }
  plugins_.push_back(std::move(p));
}

void plugin_host::drop(plugin& p) {
  p.dropped = true;
  p.object.reset();
  for (auto* map : {&by_path_, &by_function_, &by_member_}) {
    std::erase_if(*map, [&](const auto& entry) { return entry.second.owner == &p; });
  }
}

const plugin_host::api* plugin_host::find(std::string_view name) const {
  const api_map& map = name.starts_with('/') ? by_path_ : by_function_;
  if (auto it = map.find(name); it != map.end()) return &it->second;
  return nullptr;
}

const plugin_host::api* plugin_host::find_path(const std::string& path) const {
  if (const auto it = by_path_.find(path); it != by_path_.end()) return &it->second;
  // "/a/b/*" serves what is under /a/b/ and has no route; the longest wins.
  for (std::string_view prefix = path; !prefix.empty();) {
    const std::size_t slash = prefix.rfind('/');
    if (slash == std::string_view::npos) break;
    prefix = prefix.substr(0, slash);
    if (const auto it = by_path_.find(std::string(prefix) + "/*"); it != by_path_.end()) return &it->second;
  }
  return nullptr;
}

void plugin_host::check(const std::function<bool(const std::string&)>& app_has_route) {
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& p : plugins_) {
      if (p->dropped) continue;
      for (const auto& spec : p->d->apis) {
        if (!spec.path.empty() && app_has_route(spec.path)) {
          fail(p->d->metadata.name, "its route " + spec.path + " is also a route of the app");
          drop(*p);
          changed = true;
          break;
        }
      }
      if (p->dropped) continue;
      for (const auto& required : p->d->metadata.required_apis) {
        if (find(required) == nullptr && !app_has_route(required)) {
          fail(p->d->metadata.name, "it requires the API " + required + ", which no loaded plugin or route provides");
          drop(*p);
          changed = true;
          break;
        }
      }
    }
  }
}

boost::asio::awaitable<void> plugin_host::start() {
  for (auto& p : plugins_) {
    if (p->dropped || !p->object) continue;
    std::string why;
    try {
      co_await p->object->start();
      continue;
    } catch (const std::exception& e) {
      why = e.what();
    }
    fail(p->d->metadata.name, "its on_start failed: " + why);
    drop(*p);
  }
  started_ = true;
}

void plugin_host::stop() noexcept {
  for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it) {
    if ((*it)->object && started_) (*it)->object->stop();
  }
  started_ = false;
}

api_slot plugin_host::take_slot(plugin& p) {
  const std::size_t now = p.ongoing.fetch_add(1, std::memory_order_relaxed) + 1;
  api_slot slot(std::shared_ptr<std::atomic<std::size_t>>(p.shared_from_this(), &p.ongoing));
  if (p.max_ongoing != 0 && now > p.max_ongoing) return {};  // releases at once
  return slot;
}

// Why a call of `p` was refused for its bound.
std::string plugin_host::overloaded_message(const plugin& p) {
  return "plugin " + p.d->metadata.name + " is serving its max_ongoing_requests (" + std::to_string(p.max_ongoing) + ")";
}

namespace {

http_reply reply_of(api_result r, api_slot slot) {
  http_reply reply;
  if (r.raw) {
    reply = std::move(*r.raw);
  } else if (r.streamed) {
    reply.streamed = std::move(r.streamed);
  } else {
    reply.body = json::serialize(r.value);
  }
  if (reply.streamed) {  // the plugin's bound holds until the last piece is sent
    stream s = std::move(*reply.streamed);
    auto next = [s, held = std::make_shared<api_slot>(std::move(slot))]() {
      (void)held;
      return s.next();
    };
    reply.streamed.emplace(s.kind() == stream::format::events ? stream::events(std::move(next))
                                                              : stream::chunked(std::move(next), s.content_type()));
  }
  return reply;
}

}  // namespace

boost::asio::awaitable<http_reply> plugin_host::serve(const api& a, http_call& call) {
  auto slot = take_slot(*a.owner);
  if (!slot) {
    http_reply r = error_reply(503, overloaded_message(*a.owner) + "; try again shortly");
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  if (a.spec->raw) {
    const json::object none;
    const api_input in{none, &call};
    api_result r = co_await a.spec->invoke(a.owner->object->get(), *a.spec, in);
    co_return reply_of(std::move(r), std::move(slot));
  }
  const json::object inputs = request_object(call);
  if (a.owner->object) {
    const api_input in{inputs, &call};
    api_result r = co_await a.spec->invoke(a.owner->object->get(), *a.spec, in);
    co_return reply_of(std::move(r), std::move(slot));
  }
  json::object query;
  for (const auto& [k, v] : call.query) query[k] = v;
  json::object request{{"args", inputs}, {"query", std::move(query)}, {"json_body", call.json_body}};
  const auto to_workers = plugin_call_remote.with({.runtime = runtime_});  // (not braced inside co_await: GCC 12)
  const std::string body = json::serialize(request);
  const std::string answer = co_await to_workers.remote(a.spec->path, body);
  co_return reply_of(from_answer(answer), std::move(slot));
}

boost::asio::awaitable<api_result> plugin_host::call(std::string_view name, json::object args) {
  const api* a = find(name);
  if (a == nullptr) throw api_error(errc::unknown_function, "no loaded plugin has the API " + std::string(name));
  auto slot = take_slot(*a->owner);
  if (!slot) {
    throw api_error(errc::overloaded, overloaded_message(*a->owner));
  }
  if (a->owner->object) {
    api_result r;
    try {
      const api_input in{args, nullptr};
      r = co_await a->spec->invoke(a->owner->object->get(), *a->spec, in);
    } catch (const http_error& e) {  // arguments that do not bind
      throw api_error(errc::bad_arguments, std::string(name) + ": " + e.what());
    }
    co_return r;
  }
  json::object request{{"args", std::move(args)}, {"json_body", true}};
  const auto to_workers = plugin_call_remote.with({.runtime = runtime_});
  const std::string api(name), body = json::serialize(request);
  const std::string answer = co_await to_workers.remote(api, body);
  try {
    co_return from_answer(answer);
  } catch (const http_error& e) {
    throw api_error(errc::bad_arguments, std::string(name) + ": " + e.what());
  }
}

api_target plugin_host::find_member(std::string_view member) {
  const auto it = by_member_.find(member);
  if (it == by_member_.end()) {
    throw api_error(errc::unknown_function, "no loaded plugin has an API made of " + std::string(member));
  }
  const api& a = it->second;
  auto slot = take_slot(*a.owner);
  if (!slot) {
    throw api_error(errc::overloaded, overloaded_message(*a.owner));
  }
  return {a.owner->object ? a.owner->object->get() : nullptr, a.spec, a.spec->path.empty() ? a.function : a.spec->path,
          std::move(slot)};
}

boost::asio::awaitable<std::string> plugin_host::serve_remote(const std::string& name, const std::string& request) {
  json::object answer;
  try {
    const api* a = find(name);
    if (a == nullptr || !a->owner->object) throw http_error(404, "this worker hosts no plugin API " + name);
    auto slot = take_slot(*a->owner);
    if (!slot) throw api_error(errc::overloaded, overloaded_message(*a->owner));
    json::value v = json::parse(request);
    const json::object& r = v.as_object();
    http_call call;
    call.json_body = r.at("json_body").as_bool();
    if (const auto* q = r.if_contains("query")) {
      for (const auto& [k, text] : q->as_object()) call.query[std::string(k)] = std::string(text.as_string());
    }
    const api_input in{r.at("args").as_object(), &call};
    api_result out = co_await a->spec->invoke(a->owner->object->get(), *a->spec, in);
    if (out.streamed) {  // collected here, replayed by the ingress
      json::array pieces;
      while (auto piece = co_await out.streamed->next()) pieces.emplace_back(*piece);
      answer["stream"] = std::move(pieces);
      answer["format"] = out.streamed->kind() == stream::format::events ? "events" : "chunked";
      answer["content_type"] = out.streamed->content_type();
    } else {
      answer["value"] = std::move(out.value);
    }
  } catch (const http_error& e) {
    answer = {{"error", {{"status", e.status()}, {"message", e.what()}}}};
  }
  co_return json::serialize(answer);
}

boost::asio::awaitable<std::string> plugin_call(std::string name, std::string request) {
  plugin_host* host = nullptr;
  {
    std::lock_guard lock(hosts_mutex);
    if (!worker_hosts.empty()) host = worker_hosts.back();
  }
  if (host == nullptr) throw api_error(errc::unknown_function, "this worker hosts no plugins");
  co_return co_await host->serve_remote(name, request);
}

boost::asio::awaitable<api_result> call_plugin_api(std::string_view api, json::object&& args) {
  plugin_host* host = plugin_host::current();
  if (host == nullptr) throw api_error(errc::unknown_function, "no plugins are loaded in this process (no framex::app runs)");
  return host->call(api, std::move(args));
}

api_target find_plugin_api(std::string_view member) {
  plugin_host* host = plugin_host::current();
  if (host == nullptr) throw api_error(errc::unknown_function, "no plugins are loaded in this process (no framex::app runs)");
  return host->find_member(member);
}

void plugin_host::log_summary() const {
  for (const auto& p : plugins_) {
    if (p->dropped) continue;
    const plugin_metadata& m = p->d->metadata;
    spdlog::info("framex plugin {} {} ({}{}){}{}", m.name, m.version, p->source, p->elsewhere ? ", runs on the workers" : "",
                 m.description.empty() ? "" : ": ", m.description);
    for (const auto& spec : p->d->apis) {
      std::string methods;
      for (auto meth : spec.methods) {
        if (!methods.empty()) methods += ',';
        methods += to_string(meth);
      }
      if (!spec.path.empty()) spdlog::info("  route {} {}{}", methods, spec.path, spec.streams ? " (streams)" : "");
      if (!spec.function.empty()) spdlog::info("  function API {}.{}", m.name, spec.function);
    }
  }
}

}  // namespace framex::detail
