#include "framex/config.hpp"

#include "net/address.hpp"
#include "core/resources.hpp"
#include "membership/discovery.hpp"

#include <toml++/toml.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

extern char** environ;  // NOLINT: POSIX

namespace framex {
namespace {

enum class kind { text, integer, list, boolean, rules, amounts };

struct key_info {
  const char* name;
  kind type;
  // Applies text already known to be of `type`; throws std::invalid_argument with a reason.
  void (*set)(config&, std::string_view);
  std::string (*get)(const config&);
};

std::size_t to_size(std::string_view text) {
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) throw std::invalid_argument("expected a non-negative integer");
  return v;
}

std::vector<std::string> to_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ",") + i;
  return s;
}

// "PATH=KEY|KEY;PATH=KEY"
std::map<std::string, std::vector<std::string>> to_rules(std::string_view text) {
  std::map<std::string, std::vector<std::string>> out;
  while (!text.empty()) {
    const std::size_t semicolon = text.find(';');
    const std::string_view rule = text.substr(0, semicolon);
    const std::size_t eq = rule.find('=');
    if (eq == 0 || eq == std::string_view::npos) throw std::invalid_argument("expected PATH=KEY|KEY;PATH=KEY");
    auto& keys = out[std::string(rule.substr(0, eq))];
    std::string_view rest = rule.substr(eq + 1);
    while (!rest.empty()) {
      const std::size_t bar = rest.find('|');
      if (bar != 0) keys.emplace_back(rest.substr(0, bar));
      if (bar == std::string_view::npos) break;
      rest.remove_prefix(bar + 1);
    }
    if (keys.empty()) throw std::invalid_argument("the rule for " + std::string(rule.substr(0, eq)) + " lists no key");
    if (semicolon == std::string_view::npos) break;
    text.remove_prefix(semicolon + 1);
  }
  return out;
}

// "cpu=8,gpu=1,zone:eu=1"
std::map<std::string, double> to_amounts(std::string_view text) {
  std::map<std::string, double> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const std::size_t eq = item.rfind('=');
    if (eq == 0 || eq == std::string_view::npos) throw std::invalid_argument("expected NAME=AMOUNT,NAME=AMOUNT");
    double amount = 0;
    const std::string_view digits = item.substr(eq + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), amount);
    if (ec != std::errc{} || end != digits.data() + digits.size() || !(amount >= 0)) {
      throw std::invalid_argument(std::string(item.substr(0, eq)) + ": expected an amount of at least 0");
    }
    out[std::string(item.substr(0, eq))] = amount;
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

// What --print-config shows of a key: its source, never a key itself.
std::string key_source(const std::string& key) {
  if (key.starts_with("file:") || key.starts_with("env:")) return key;
  return key.empty() ? "" : "(a key)";
}

bool to_bool(std::string_view text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw std::invalid_argument("expected true or false");
}

std::chrono::milliseconds to_ms(std::string_view text) { return std::chrono::milliseconds(to_size(text)); }
// A spin budget: at most 10 ms, which is already far past any wake-up it saves.
std::chrono::microseconds to_us(std::string_view text) {
  const std::size_t us = to_size(text);
  if (us > 10000) throw std::invalid_argument("at most 10000 (10 ms)");
  return std::chrono::microseconds(us);
}

std::chrono::milliseconds positive_ms(std::string_view text) {
  const auto ms = to_ms(text);
  if (ms.count() == 0) throw std::invalid_argument("expected more than 0");
  return ms;
}

std::uint16_t to_port(std::string_view text) {
  const std::size_t v = to_size(text);
  if (v > 65535) throw std::invalid_argument("expected a port number");
  return static_cast<std::uint16_t>(v);
}

// The TLS keys of `Section` ("worker.tls", "worker.ca_file", ...).
template <auto Section, bool tls_settings::*Flag>
constexpr key_info tls_flag(const char* name) {
  return {name, kind::boolean, [](config& c, std::string_view v) { (c.*Section).tls.*Flag = to_bool(v); },
          [](const config& c) -> std::string { return (c.*Section).tls.*Flag ? "true" : "false"; }};
}

template <auto Section, std::string tls_settings::*File>
constexpr key_info tls_file(const char* name) {
  return {name, kind::text, [](config& c, std::string_view v) { (c.*Section).tls.*File = std::string(v); },
          [](const config& c) { return (c.*Section).tls.*File; }};
}

const key_info keys[] = {
    {"server.host", kind::text, [](config& c, std::string_view v) { c.server.host = std::string(v); },
     [](const config& c) { return c.server.host; }},
    {"server.port", kind::integer, [](config& c, std::string_view v) { c.server.port = to_port(v); },
     [](const config& c) { return std::to_string(c.server.port); }},
    {"server.dashboard_host", kind::text, [](config& c, std::string_view v) { c.server.dashboard_host = std::string(v); },
     [](const config& c) { return c.server.dashboard_host; }},
    {"server.dashboard_port", kind::integer, [](config& c, std::string_view v) { c.server.dashboard_port = to_port(v); },
     [](const config& c) { return std::to_string(c.server.dashboard_port); }},
    {"server.body_limit", kind::integer, [](config& c, std::string_view v) { c.server.body_limit = to_size(v); },
     [](const config& c) { return std::to_string(c.server.body_limit); }},
    {"server.read_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.server.read_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.server.read_timeout.count()); }},
    {"server.threads", kind::integer,
     [](config& c, std::string_view v) { c.server.threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.server.threads); }},
    {"server.max_connections", kind::integer, [](config& c, std::string_view v) { c.server.max_connections = to_size(v); },
     [](const config& c) { return std::to_string(c.server.max_connections); }},
    {"server.header_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.server.header_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.server.header_timeout.count()); }},
    tls_flag<&config::server, &tls_settings::enabled>("server.tls"),
    tls_file<&config::server, &tls_settings::ca_file>("server.ca_file"),
    tls_file<&config::server, &tls_settings::cert_file>("server.cert_file"),
    tls_file<&config::server, &tls_settings::key_file>("server.key_file"),
    tls_flag<&config::server, &tls_settings::require_client_cert>("server.require_client_cert"),
    {"runtime.mode", kind::text,
     [](config& c, std::string_view v) {
       if (v == "local") {
         c.runtime.mode = mode::local;
       } else if (v == "distributed") {
         c.runtime.mode = mode::distributed;
       } else {
         throw std::invalid_argument("expected \"local\" or \"distributed\"");
       }
     },
     [](const config& c) -> std::string { return c.runtime.mode == mode::local ? "local" : "distributed"; }},
    {"runtime.threads", kind::integer, [](config& c, std::string_view v) { c.runtime.threads = to_size(v); },
     [](const config& c) { return std::to_string(c.runtime.threads); }},
    {"runtime.spin_us", kind::integer, [](config& c, std::string_view v) { c.runtime.spin = to_us(v); },
     [](const config& c) { return std::to_string(c.runtime.spin.count()); }},
    {"distributed.workers", kind::list,
     [](config& c, std::string_view v) {
       auto list = to_list(v);
       for (const auto& w : list) (void)net::parse_address(w);
       c.distributed.workers = std::move(list);
     },
     [](const config& c) { return join(c.distributed.workers); }},
    {"distributed.discovery", kind::text,
     [](config& c, std::string_view v) {
       (void)detail::parse_discovery(v);
       c.distributed.discovery = std::string(v);
     },
     [](const config& c) { return c.distributed.discovery; }},
    {"distributed.hello", kind::text,
     [](config& c, std::string_view v) {
       if (v == "auto") {
         c.distributed.hello = hello_mode::automatic;
       } else if (v == "required") {
         c.distributed.hello = hello_mode::required;
       } else if (v == "off") {
         c.distributed.hello = hello_mode::off;
       } else {
         throw std::invalid_argument("expected \"auto\", \"required\" or \"off\"");
       }
     },
     [](const config& c) -> std::string {
       switch (c.distributed.hello) {
         case hello_mode::automatic: return "auto";
         case hello_mode::required: return "required";
         case hello_mode::off: return "off";
       }
       return "auto";
     }},
    {"distributed.connections_per_worker", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.connections_per_worker = to_size(v);
       if (c.distributed.connections_per_worker == 0) throw std::invalid_argument("expected at least 1");
     },
     [](const config& c) { return std::to_string(c.distributed.connections_per_worker); }},
    {"distributed.call_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.call_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.call_timeout.count()); }},
    {"distributed.connect_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.connect_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.connect_timeout.count()); }},
    {"distributed.max_message_size", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.max_message_size = to_size(v);
       if (c.distributed.max_message_size < 1024) throw std::invalid_argument("expected at least 1024");
     },
     [](const config& c) { return std::to_string(c.distributed.max_message_size); }},
    {"distributed.max_message_elements", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.max_message_elements = to_size(v);
       if (c.distributed.max_message_elements < 1024) throw std::invalid_argument("expected at least 1024");
     },
     [](const config& c) { return std::to_string(c.distributed.max_message_elements); }},
    {"distributed.message_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.message_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.distributed.message_timeout.count()); }},
    {"distributed.io_threads", kind::integer,
     [](config& c, std::string_view v) { c.distributed.io_threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.io_threads); }},
    {"distributed.heartbeat_ms", kind::integer, [](config& c, std::string_view v) { c.distributed.heartbeat = to_ms(v); },
     [](const config& c) { return std::to_string(c.distributed.heartbeat.count()); }},
    {"distributed.token_file", kind::text, [](config& c, std::string_view v) { c.distributed.token_file = std::string(v); },
     [](const config& c) { return c.distributed.token_file; }},
    tls_flag<&config::distributed, &tls_settings::enabled>("distributed.tls"),
    tls_file<&config::distributed, &tls_settings::ca_file>("distributed.ca_file"),
    tls_file<&config::distributed, &tls_settings::cert_file>("distributed.cert_file"),
    tls_file<&config::distributed, &tls_settings::key_file>("distributed.key_file"),
    {"worker.listen", kind::text,
     [](config& c, std::string_view v) {
       (void)net::parse_address(v);
       c.worker.listen = std::string(v);
     },
     [](const config& c) { return c.worker.listen; }},
    {"worker.threads", kind::integer, [](config& c, std::string_view v) { c.worker.threads = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.threads); }},
    {"worker.spin_us", kind::integer, [](config& c, std::string_view v) { c.worker.spin = to_us(v); },
     [](const config& c) { return std::to_string(c.worker.spin.count()); }},
    {"worker.io_threads", kind::integer,
     [](config& c, std::string_view v) { c.worker.io_threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.worker.io_threads); }},
    {"worker.max_queued", kind::integer, [](config& c, std::string_view v) { c.worker.max_queued = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_queued); }},
    {"worker.max_calls_per_connection", kind::integer,
     [](config& c, std::string_view v) { c.worker.max_calls_per_connection = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_calls_per_connection); }},
    {"worker.max_held_bytes", kind::integer, [](config& c, std::string_view v) { c.worker.max_held_bytes = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_held_bytes); }},
    {"worker.max_connections", kind::integer, [](config& c, std::string_view v) { c.worker.max_connections = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_connections); }},
    {"worker.idle_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.idle_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.idle_timeout.count()); }},
    {"worker.max_output_bytes", kind::integer,
     [](config& c, std::string_view v) { c.worker.max_output_bytes = std::max<std::size_t>(1024, to_size(v)); },
     [](const config& c) { return std::to_string(c.worker.max_output_bytes); }},
    {"worker.expose_errors", kind::boolean, [](config& c, std::string_view v) { c.worker.expose_errors = to_bool(v); },
     [](const config& c) -> std::string { return c.worker.expose_errors ? "true" : "false"; }},
    {"worker.token_file", kind::text, [](config& c, std::string_view v) { c.worker.token_file = std::string(v); },
     [](const config& c) { return c.worker.token_file; }},
    {"worker.auth_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.auth_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.auth_timeout.count()); }},
    {"worker.drain_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.drain_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.drain_timeout.count()); }},
    {"worker.actor_grace_ms", kind::integer, [](config& c, std::string_view v) { c.worker.actor_grace = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.actor_grace.count()); }},
    {"worker.max_actors", kind::integer, [](config& c, std::string_view v) { c.worker.max_actors = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_actors); }},
    {"storage.path", kind::text, [](config& c, std::string_view v) { c.storage.path = std::string(v); },
     [](const config& c) { return c.storage.path; }},
    {"storage.inline_threshold", kind::integer, [](config& c, std::string_view v) { c.storage.inline_threshold = to_size(v); },
     [](const config& c) { return std::to_string(c.storage.inline_threshold); }},
    {"storage.orphan_ttl_ms", kind::integer, [](config& c, std::string_view v) { c.storage.orphan_ttl = std::max(to_ms(v), std::chrono::milliseconds(1000)); },
     [](const config& c) { return std::to_string(c.storage.orphan_ttl.count()); }},
    {"storage.cache_bytes", kind::integer, [](config& c, std::string_view v) { c.storage.cache_bytes = to_size(v); },
     [](const config& c) { return std::to_string(c.storage.cache_bytes); }},
    {"worker.serve", kind::list, [](config& c, std::string_view v) { c.worker.serve = to_list(v); },
     [](const config& c) { return join(c.worker.serve); }},
    {"worker.insecure", kind::boolean, [](config& c, std::string_view v) { c.worker.insecure = to_bool(v); },
     [](const config& c) -> std::string { return c.worker.insecure ? "true" : "false"; }},
    tls_flag<&config::worker, &tls_settings::enabled>("worker.tls"),
    tls_file<&config::worker, &tls_settings::ca_file>("worker.ca_file"),
    tls_file<&config::worker, &tls_settings::cert_file>("worker.cert_file"),
    tls_file<&config::worker, &tls_settings::key_file>("worker.key_file"),
    tls_flag<&config::worker, &tls_settings::require_client_cert>("worker.require_client_cert"),
    {"worker.resources", kind::amounts, [](config& c, std::string_view v) { c.worker.resources = to_amounts(v); },
     [](const config& c) {
       std::string s;
       for (const auto& [name, amount] : c.worker.resources) {
         if (!s.empty()) s += ',';
         s += name + '=' + detail::amount_text(amount);
       }
       return s;
     }},
    {"worker.advertise", kind::text,
     [](config& c, std::string_view v) {
       if (!v.empty()) (void)net::parse_address(v);
       c.worker.advertise = std::string(v);
     },
     [](const config& c) { return c.worker.advertise; }},
    {"etcd.lease_ttl_ms", kind::integer,
     [](config& c, std::string_view v) {
       const auto ms = to_ms(v);
       if (ms < std::chrono::seconds(2) || ms.count() % 1000 != 0) throw std::invalid_argument("expected whole seconds, at least 2000");
       c.etcd.lease_ttl = ms;
     },
     [](const config& c) { return std::to_string(c.etcd.lease_ttl.count()); }},
    {"etcd.timeout_ms", kind::integer, [](config& c, std::string_view v) { c.etcd.timeout = positive_ms(v); },
     [](const config& c) { return std::to_string(c.etcd.timeout.count()); }},
    {"etcd.watch_idle_ms", kind::integer, [](config& c, std::string_view v) { c.etcd.watch_idle = positive_ms(v); },
     [](const config& c) { return std::to_string(c.etcd.watch_idle.count()); }},
    {"etcd.user", kind::text, [](config& c, std::string_view v) { c.etcd.user = std::string(v); },
     [](const config& c) { return c.etcd.user; }},
    {"etcd.password_file", kind::text, [](config& c, std::string_view v) { c.etcd.password_file = std::string(v); },
     [](const config& c) { return c.etcd.password_file; }},
    tls_flag<&config::etcd, &tls_settings::enabled>("etcd.tls"),
    tls_file<&config::etcd, &tls_settings::ca_file>("etcd.ca_file"),
    tls_file<&config::etcd, &tls_settings::cert_file>("etcd.cert_file"),
    tls_file<&config::etcd, &tls_settings::key_file>("etcd.key_file"),
    {"auth.rules", kind::rules, [](config& c, std::string_view v) { c.auth.rules = to_rules(v); },
     [](const config& c) {
       std::string s;
       for (const auto& [path, keys] : c.auth.rules) {
         if (!s.empty()) s += ';';
         s += path;
         s += '=';
         for (std::size_t i = 0; i < keys.size(); ++i) {
           if (i != 0) s += '|';
           s += key_source(keys[i]);
         }
       }
       return s;
     }},
    {"auth.dashboard_key", kind::text, [](config& c, std::string_view v) { c.auth.dashboard_key = std::string(v); },
     [](const config& c) { return key_source(c.auth.dashboard_key); }},
    {"load_plugins", kind::list, [](config& c, std::string_view v) { c.plugins.load = to_list(v); },
     [](const config& c) { return join(c.plugins.load); }},
    {"load_builtin_plugins", kind::list,
     [](config& c, std::string_view v) {
       auto list = to_list(v);
       for (const auto& name : list) {
         if (name != "echo" && name != "proxy") throw std::invalid_argument("no built-in plugin \"" + name + "\" (there are echo and proxy)");
       }
       c.plugins.load_builtin = std::move(list);
     },
     [](const config& c) { return join(c.plugins.load_builtin); }},
    {"plugins_strict", kind::boolean, [](config& c, std::string_view v) { c.plugins.strict = to_bool(v); },
     [](const config& c) -> std::string { return c.plugins.strict ? "true" : "false"; }},
    {"plugins.max_ongoing_requests", kind::integer,
     [](config& c, std::string_view v) { c.plugins.max_ongoing_requests = to_size(v); },
     [](const config& c) { return std::to_string(c.plugins.max_ongoing_requests); }},
    {"log.level", kind::text,
     [](config& c, std::string_view v) {
       for (const char* l : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
         if (v == l) {
           c.log.level = std::string(v);
           return;
         }
       }
       throw std::invalid_argument("expected one of trace, debug, info, warn, error, critical, off");
     },
     [](const config& c) { return c.log.level; }},
};

std::string quoted_json(std::string_view text) {
  std::string out(1, '"');
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(ch));
      out.append(escaped);
      continue;
    }
    out += ch;
  }
  out += '"';
  return out;
}

// TOML as JSON text, for a plugin's own keys.
std::string json_text(const toml::node& node) {
  if (const auto* table = node.as_table()) {
    std::string out(1, '{');
    for (const auto& [k, v] : *table) {
      if (out.size() > 1) out += ',';
      out.append(quoted_json(k.str())).append(1, ':').append(json_text(v));
    }
    out += '}';
    return out;
  }
  if (const auto* array = node.as_array()) {
    std::string out(1, '[');
    for (const auto& v : *array) {
      if (out.size() > 1) out += ',';
      out.append(json_text(v));
    }
    out += ']';
    return out;
  }
  if (node.is_string()) return quoted_json(*node.value<std::string>());
  if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
  if (node.is_integer()) return std::to_string(*node.value<std::int64_t>());
  std::ostringstream o;  // floating point, and dates and times as text
  o.precision(17);
  node.visit([&o](const auto& n) { o << n; });
  return node.is_floating_point() ? o.str() : quoted_json(o.str());
}

// Whether `text` is one JSON value (a plugin key given as text is taken as
// JSON when it is one, else as a string): a cheap check of its shape, the
// plugin's own conversion being the judge of the rest.
bool looks_like_json(std::string_view text) {
  if (text.empty()) return false;
  if (text == "true" || text == "false" || text == "null") return true;
  const char f = text.front(), b = text.back();
  if ((f == '{' && b == '}') || (f == '[' && b == ']') || (f == '"' && b == '"' && text.size() > 1)) return true;
  double ignored = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ignored);
  return ec == std::errc{} && end == text.data() + text.size();
}

bool is_section(std::string_view s) {
  for (const auto& k : keys) {
    if (std::string_view(k.name).starts_with(s) && k.name[s.size()] == '.') return true;
  }
  return false;
}

const key_info* find_key(std::string_view name) {
  for (const auto& k : keys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

std::string toml_text(const toml::node& node, kind type, const std::string& where) {
  auto wrong = [&](const char* expected) {
    return config_error(where + ": expected " + expected + ", got a TOML " +
                        std::string(toml::impl::node_type_friendly_names[static_cast<int>(node.type())]));
  };
  switch (type) {
    case kind::text:
      if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
      throw wrong("a string");
    case kind::integer:
      if (node.is_integer()) {
        const auto v = *node.value<std::int64_t>();
        if (v < 0) throw config_error(where + ": expected a non-negative integer");
        return std::to_string(v);
      }
      throw wrong("an integer");
    case kind::boolean:
      if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
      throw wrong("a boolean");
    case kind::rules: {
      const auto* table = node.as_table();
      if (table == nullptr) throw wrong("a table of path = [keys]");
      std::string text;
      for (const auto& [path, keys] : *table) {
        if (!text.empty()) text += ';';
        text += path.str();
        text += '=';
        const auto* array = keys.as_array();
        if (array == nullptr) throw config_error(where + ": " + std::string(path.str()) + ": expected an array of keys");
        bool first = true;
        for (const auto& k : *array) {
          if (!k.is_string()) throw config_error(where + ": " + std::string(path.str()) + ": expected an array of keys");
          if (!first) text += '|';
          text += *k.value<std::string>();
          first = false;
        }
      }
      return text;
    }
    case kind::amounts: {
      const auto* table = node.as_table();
      if (table == nullptr) throw wrong("a table of name = amount");
      std::string text;
      for (const auto& [name, amount] : *table) {
        if (!amount.is_number()) throw config_error(where + ": " + std::string(name.str()) + ": expected a number");
        if (!text.empty()) text += ',';
        text += std::string(name.str()) + '=' + detail::amount_text(*amount.value<double>());
      }
      return text;
    }
    case kind::list: {
      const auto* array = node.as_array();
      if (array == nullptr) throw wrong("an array of strings");
      std::vector<std::string> items;
      for (const auto& item : *array) {
        if (!item.is_string()) throw wrong("an array of strings");
        items.push_back(*item.value<std::string>());
      }
      return join(items);
    }
  }
  return {};
}

// "plugins.NAME.KEY": a plugin's setting (framex's own `deploy` and
// `max_ongoing_requests`, else the plugin's key, as JSON text).
void apply_plugin_key(config& c, std::string_view name, std::string_view key, std::string json, const std::string& origin) {
  const std::string where = origin + ": plugins." + std::string(name) + "." + std::string(key);
  if (name.empty() || key.empty()) throw config_error(where + ": expected plugins.NAME.KEY");
  auto& settings = c.plugins.each[std::string(name)];
  const bool is_text = json.size() >= 2 && json.front() == '"';
  if (key == "deploy") {
    if (json == "\"workers\"") {
      settings.on_workers = true;
    } else if (json == "\"local\"") {
      settings.on_workers = false;
    } else {
      throw config_error(where + " = " + json + ": expected \"workers\" or \"local\"");
    }
  } else if (key == "max_ongoing_requests") {
    try {
      settings.max_ongoing_requests = to_size(is_text ? std::string_view(json).substr(1, json.size() - 2) : json);
    } catch (const std::invalid_argument& e) {
      throw config_error(where + " = " + json + ": " + e.what());
    }
  } else {
    settings.keys[std::string(key)] = std::move(json);
  }
  c.sources["plugins." + std::string(name) + "." + std::string(key)] = origin;
}

}  // namespace

std::pair<std::string, std::uint16_t> parse_endpoint(std::string_view text) {
  try {
    return net::parse_endpoint(text);
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
}

void config::apply(std::string_view key, std::string_view value, const std::string& origin) {
  if (key.starts_with("plugins.") && key.find('.', 8) != std::string_view::npos) {
    const std::string_view rest = key.substr(8);
    const std::size_t dot = rest.find('.');
    apply_plugin_key(*this, rest.substr(0, dot), rest.substr(dot + 1),
                     looks_like_json(value) ? std::string(value) : quoted_json(value), origin);
    return;
  }
  const key_info* k = find_key(key);
  if (k == nullptr) throw config_error(origin + ": unknown key \"" + std::string(key) + "\"");
  try {
    k->set(*this, value);
  } catch (const std::invalid_argument& e) {
    throw config_error(origin + ": " + std::string(key) + " = \"" + std::string(value) + "\": " + e.what());
  }
  sources[k->name] = origin;
}

void config::apply_toml(std::string_view text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << origin << ": not valid TOML: " << e.description() << " (line " << e.source().begin.line << ")";
    throw config_error(s.str());
  }
  for (const auto& [section, node] : table) {
    const auto* inner = node.as_table();
    if (inner == nullptr) {  // a top-level key (load_plugins, ...)
      const std::string key(section.str());
      const key_info* k = find_key(key);
      if (k == nullptr || key.find('.') != std::string::npos) throw config_error(origin + ": unknown key \"" + key + "\"");
      apply(key, toml_text(node, k->type, origin + ": " + key), origin);
      continue;
    }
    for (const auto& [name, value] : *inner) {
      const std::string key = std::string(section.str()) + "." + std::string(name.str());
      if (section.str() == "plugins" && value.is_table()) {  // [plugins.NAME]
        for (const auto& [plugin_key, plugin_value] : *value.as_table()) {
          apply_plugin_key(*this, name.str(), plugin_key.str(), json_text(plugin_value), origin);
        }
        continue;
      }
      const key_info* k = find_key(key);
      if (k == nullptr) throw config_error(origin + ": unknown key \"" + key + "\"");
      apply(key, toml_text(value, k->type, origin + ": " + key), origin);
    }
  }
}

void config::apply_environment() {
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry = *e;
    if (!entry.starts_with("FRAMEX_")) continue;
    const std::size_t eq = entry.find('=');
    const std::string_view name = entry.substr(0, eq);
    if (name == "FRAMEX_CONFIG") continue;
    // FRAMEX_SECTION__KEY, FRAMEX_PLUGINS__NAME__KEY, or a top-level key.
    std::string key;
    for (std::size_t i = 7; i < name.size(); ++i) {
      if (name.substr(i, 2) == "__") {
        key += '.';
        ++i;
      } else {
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
    }
    if (key.find('.') == std::string::npos && find_key(key) == nullptr) continue;  // not ours
    const std::string origin = "environment " + std::string(name);
    apply(key, eq == std::string_view::npos ? std::string_view{} : entry.substr(eq + 1), origin);
  }
}

config config::load(std::optional<std::filesystem::path> file) {
  config c;
  if (!file) {
    if (const char* from_env = std::getenv("FRAMEX_CONFIG")) {
      file = from_env;
    } else if (std::filesystem::exists("framex.toml")) {
      file = "framex.toml";
    }
  }
  if (file) {
    std::ifstream in(*file);
    if (!in) throw config_error("file " + file->string() + ": cannot be read");
    std::ostringstream text;
    text << in.rdbuf();
    c.apply_toml(text.str(), "file " + file->string());
  }
  c.apply_environment();
  return c;
}

namespace detail {

config load_command_line(int argc, const char* const* argv, bool worker) {
  // A worker's command line is all framex's, and has two short forms.
  constexpr std::pair<std::string_view, std::string_view> worker_aliases[] = {{"listen", "worker.listen"}, {"threads", "worker.threads"}};
  std::optional<std::filesystem::path> file;
  std::vector<std::pair<std::string, std::string>> flags;
  bool print = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--framex-worker") continue;
    if (!a.starts_with("--")) {
      if (worker) throw config_error("command line: unknown worker argument " + std::string(a));
      continue;
    }
    std::string_view name = a.substr(2), value;
    const std::size_t eq = name.find('=');
    const bool inline_value = eq != std::string_view::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "print-config") {
      print = true;
      continue;
    }
    if (worker) {
      for (const auto& [alias, key] : worker_aliases) {
        if (name == alias) name = key;
      }
    }
    // Ours: --config and --section.key, where section is one of framex's, and --key for a top-level key.
    const std::size_t dot = name.find('.');
    const bool top_level = dot == std::string_view::npos && find_key(name) != nullptr;
    if (name != "config" && !top_level && (dot == std::string_view::npos || !is_section(name.substr(0, dot)))) {
      if (worker) throw config_error("command line: unknown worker flag " + std::string(a));
      continue;  // the program's own flag
    }
    if (!inline_value) {
      if (i + 1 == argc) throw config_error("command line: --" + std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "config") {
      file = std::string(value);
    } else {
      flags.emplace_back(std::string(name), std::string(value));
    }
  }
  config c = config::load(file);
  for (const auto& [key, value] : flags) c.apply(key, value, "command line --" + key);
  c.print_only = print;
  return c;
}

}  // namespace detail

config config::load(int argc, const char* const* argv) { return detail::load_command_line(argc, argv, false); }

std::string config::describe() const {
  std::string out;
  for (const auto& k : keys) {
    const auto source = sources.find(k.name);
    out += std::string(k.name) + " = " + k.get(*this) + "  # " +
           (source == sources.end() ? std::string("default") : source->second) + "\n";
  }
  for (const auto& entry : plugins.each) {
    const auto& settings = entry.second;
    std::vector<std::pair<std::string, std::string>> lines{{"deploy", settings.on_workers ? "workers" : "local"}};
    if (settings.max_ongoing_requests) lines.emplace_back("max_ongoing_requests", std::to_string(*settings.max_ongoing_requests));
    lines.insert(lines.end(), settings.keys.begin(), settings.keys.end());
    for (const auto& [key, value] : lines) {
      const std::string name = "plugins." + entry.first + "." + key;
      const auto source = sources.find(name);
      out += name + " = " + value + "  # " + (source == sources.end() ? std::string("default") : source->second) + "\n";
    }
  }
  return out;
}

}  // namespace framex
