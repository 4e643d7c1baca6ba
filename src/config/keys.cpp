#include "config/keys.hpp"

#include <charconv>
#include <stdexcept>
#include <utility>

#include "core/resources.hpp"
#include "membership/discovery.hpp"
#include "net/address.hpp"

namespace framex::detail {

std::size_t to_size(std::string_view text) {
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) throw std::invalid_argument("expected a non-negative integer");
  return v;
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ",") + i;
  return s;
}

namespace {

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
constexpr key_info tls_flag(const char* name, const char* doc) {
  return {name, kind::boolean, [](config& c, std::string_view v) { (c.*Section).tls.*Flag = to_bool(v); },
          [](const config& c) -> std::string { return (c.*Section).tls.*Flag ? "true" : "false"; }, doc};
}

template <auto Section, std::string tls_settings::*File>
constexpr key_info tls_file(const char* name, const char* doc) {
  return {name, kind::text, [](config& c, std::string_view v) { (c.*Section).tls.*File = std::string(v); },
          [](const config& c) { return (c.*Section).tls.*File; }, doc};
}

const key_info keys[] = {
    {"server.host", kind::text, [](config& c, std::string_view v) { c.server.host = std::string(v); },
     [](const config& c) { return c.server.host; }, "address the HTTP ingress listens on", false},
    {"server.port", kind::integer, [](config& c, std::string_view v) { c.server.port = to_port(v); },
     [](const config& c) { return std::to_string(c.server.port); }, "port of the HTTP ingress", false},
    {"server.dashboard_host", kind::text, [](config& c, std::string_view v) { c.server.dashboard_host = std::string(v); },
     [](const config& c) { return c.server.dashboard_host; }, "address the dashboard listens on", false},
    {"server.dashboard_port", kind::integer, [](config& c, std::string_view v) { c.server.dashboard_port = to_port(v); },
     [](const config& c) { return std::to_string(c.server.dashboard_port); }, "port of the dashboard", false},
    {"server.body_limit", kind::integer, [](config& c, std::string_view v) { c.server.body_limit = to_size(v); },
     [](const config& c) { return std::to_string(c.server.body_limit); }, "largest HTTP request body, in bytes", false},
    {"server.read_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.server.read_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.server.read_timeout.count()); },
     "time a request may take to arrive, once begun", false},
    {"server.threads", kind::integer,
     [](config& c, std::string_view v) { c.server.threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.server.threads); }, "I/O threads of the HTTP ingress (at least 1)", false},
    {"server.max_connections", kind::integer, [](config& c, std::string_view v) { c.server.max_connections = to_size(v); },
     [](const config& c) { return std::to_string(c.server.max_connections); }, "HTTP connections held at once", false},
    {"server.header_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.server.header_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.server.header_timeout.count()); },
     "time a request's headers may take to arrive", false},
    tls_flag<&config::server, &tls_settings::enabled>("server.tls", "serve HTTPS"),
    tls_file<&config::server, &tls_settings::ca_file>("server.ca_file", "CA that client certificates must chain to"),
    tls_file<&config::server, &tls_settings::cert_file>("server.cert_file", "the ingress's certificate (PEM)"),
    tls_file<&config::server, &tls_settings::key_file>("server.key_file", "the ingress's private key (PEM)"),
    tls_flag<&config::server, &tls_settings::require_client_cert>("server.require_client_cert",
                                                                  "refuse HTTPS clients without a certificate from ca_file"),
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
     [](const config& c) -> std::string { return c.runtime.mode == mode::local ? "local" : "distributed"; },
     "where calls run: local or distributed", false},
    {"runtime.threads", kind::integer, [](config& c, std::string_view v) { c.runtime.threads = to_size(v); },
     [](const config& c) { return std::to_string(c.runtime.threads); }, "threads of the local pool (0: one per hardware thread)",
     false},
    {"runtime.spin_us", kind::integer, [](config& c, std::string_view v) { c.runtime.spin = to_us(v); },
     [](const config& c) { return std::to_string(c.runtime.spin.count()); },
     "microseconds an idle pool thread spins before sleeping (at most 10000)", false},
    {"distributed.workers", kind::list,
     [](config& c, std::string_view v) {
       auto list = to_list(v);
       for (const auto& w : list) (void)net::parse_address(w);
       c.distributed.workers = std::move(list);
     },
     [](const config& c) { return join(c.distributed.workers); },
     "workers to call: host:port or unix:PATH, at least one unless discovered", false},
    {"distributed.discovery", kind::text,
     [](config& c, std::string_view v) {
       (void)detail::parse_discovery(v);
       c.distributed.discovery = std::string(v);
     },
     [](const config& c) { return c.distributed.discovery; },
     "static, dns://NAME:PORT[?refresh_ms=N] or etcd://HOST:PORT[,HOST:PORT]/PREFIX", false},
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
         case hello_mode::automatic:
           return "auto";
         case hello_mode::required:
           return "required";
         case hello_mode::off:
           return "off";
       }
       return "auto";
     },
     "auto, required or off: whether a server must be a framex worker", false},
    {"distributed.connections_per_worker", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.connections_per_worker = to_size(v);
       if (c.distributed.connections_per_worker == 0) throw std::invalid_argument("expected at least 1");
     },
     [](const config& c) { return std::to_string(c.distributed.connections_per_worker); }, "connections to each worker", false},
    {"distributed.call_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.call_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.call_timeout.count()); }, "default deadline of a call (0: none)",
     false},
    {"distributed.connect_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.connect_timeout = std::chrono::milliseconds(to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.connect_timeout.count()); }, "time to connect and greet a worker",
     false},
    {"distributed.max_message_size", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.max_message_size = to_size(v);
       if (c.distributed.max_message_size < 1024) throw std::invalid_argument("expected at least 1024");
     },
     [](const config& c) { return std::to_string(c.distributed.max_message_size); },
     "largest message either side sends or accepts, in bytes", false},
    {"distributed.max_message_elements", kind::integer,
     [](config& c, std::string_view v) {
       c.distributed.max_message_elements = to_size(v);
       if (c.distributed.max_message_elements < 1024) throw std::invalid_argument("expected at least 1024");
     },
     [](const config& c) { return std::to_string(c.distributed.max_message_elements); }, "most elements a message may declare",
     false},
    {"distributed.message_timeout_ms", kind::integer,
     [](config& c, std::string_view v) { c.distributed.message_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.distributed.message_timeout.count()); },
     "time a begun message may take to arrive", false},
    {"distributed.io_threads", kind::integer,
     [](config& c, std::string_view v) { c.distributed.io_threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.distributed.io_threads); }, "I/O threads of the caller's connections", false},
    {"distributed.heartbeat_ms", kind::integer, [](config& c, std::string_view v) { c.distributed.heartbeat = to_ms(v); },
     [](const config& c) { return std::to_string(c.distributed.heartbeat.count()); },
     "silence after which a worker is pinged, then dropped (0: none)", false},
    {"distributed.token_file", kind::text, [](config& c, std::string_view v) { c.distributed.token_file = std::string(v); },
     [](const config& c) { return c.distributed.token_file; },
     "file holding the shared token (its contents, white space trimmed)", false},
    tls_flag<&config::distributed, &tls_settings::enabled>("distributed.tls", "speak TLS to workers"),
    tls_file<&config::distributed, &tls_settings::ca_file>("distributed.ca_file",
                                                           "CA that workers' certificates must chain to (empty: the system's)"),
    tls_file<&config::distributed, &tls_settings::cert_file>("distributed.cert_file",
                                                             "the caller's certificate, for workers that require one"),
    tls_file<&config::distributed, &tls_settings::key_file>("distributed.key_file", "the caller's private key"),
    {"worker.listen", kind::text,
     [](config& c, std::string_view v) {
       (void)net::parse_address(v);
       c.worker.listen = std::string(v);
     },
     [](const config& c) { return c.worker.listen; }, "address a worker listens on: host:port or unix:PATH", false},
    {"worker.threads", kind::integer, [](config& c, std::string_view v) { c.worker.threads = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.threads); }, "threads of a worker's pool (0: one per hardware thread)",
     false},
    {"worker.spin_us", kind::integer, [](config& c, std::string_view v) { c.worker.spin = to_us(v); },
     [](const config& c) { return std::to_string(c.worker.spin.count()); },
     "microseconds an idle worker pool thread spins (at most 10000)", false},
    {"worker.io_threads", kind::integer,
     [](config& c, std::string_view v) { c.worker.io_threads = std::max<std::size_t>(1, to_size(v)); },
     [](const config& c) { return std::to_string(c.worker.io_threads); }, "I/O threads of a worker", false},
    {"worker.max_queued", kind::integer, [](config& c, std::string_view v) { c.worker.max_queued = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_queued); }, "calls a worker holds at once (0: no limit)", false},
    {"worker.max_calls_per_connection", kind::integer,
     [](config& c, std::string_view v) { c.worker.max_calls_per_connection = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_calls_per_connection); },
     "calls one connection may hold in a worker (0: no limit)", false},
    {"worker.max_held_bytes", kind::integer, [](config& c, std::string_view v) { c.worker.max_held_bytes = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_held_bytes); },
     "bytes of requests a worker holds at once (0: no limit)", false},
    {"worker.max_connections", kind::integer, [](config& c, std::string_view v) { c.worker.max_connections = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_connections); }, "connections a worker accepts at once", false},
    {"worker.idle_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.idle_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.idle_timeout.count()); },
     "silence after which a worker closes a connection", false},
    {"worker.max_output_bytes", kind::integer,
     [](config& c, std::string_view v) { c.worker.max_output_bytes = std::max<std::size_t>(1024, to_size(v)); },
     [](const config& c) { return std::to_string(c.worker.max_output_bytes); },
     "unsent output a connection may hold before it closes", false},
    {"worker.max_output_total_bytes", kind::integer,
     [](config& c, std::string_view v) { c.worker.max_output_total_bytes = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_output_total_bytes); },
     "unsent output all connections may hold together (0: no limit)", false},
    {"worker.expose_errors", kind::boolean, [](config& c, std::string_view v) { c.worker.expose_errors = to_bool(v); },
     [](const config& c) -> std::string { return c.worker.expose_errors ? "true" : "false"; },
     "send a function's exception text to callers (else logged with an id)", false},
    {"worker.token_file", kind::text, [](config& c, std::string_view v) { c.worker.token_file = std::string(v); },
     [](const config& c) { return c.worker.token_file; }, "file holding the shared token callers must prove", false},
    {"worker.auth_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.auth_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.auth_timeout.count()); },
     "time a connection has to complete TLS and the hello", false},
    {"worker.drain_timeout_ms", kind::integer, [](config& c, std::string_view v) { c.worker.drain_timeout = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.drain_timeout.count()); },
     "time the calls held have to finish when draining", false},
    {"worker.actor_grace_ms", kind::integer, [](config& c, std::string_view v) { c.worker.actor_grace = to_ms(v); },
     [](const config& c) { return std::to_string(c.worker.actor_grace.count()); },
     "time a lost caller's actors are kept for it to return", false},
    {"worker.max_actors", kind::integer, [](config& c, std::string_view v) { c.worker.max_actors = to_size(v); },
     [](const config& c) { return std::to_string(c.worker.max_actors); }, "actors a worker hosts at once", false},
    {"storage.path", kind::text, [](config& c, std::string_view v) { c.storage.path = std::string(v); },
     [](const config& c) { return c.storage.path; }, "directory of spilled objects, shared by callers and workers (none: framex-objects in the temporary directory)", false},
    {"storage.inline_threshold", kind::integer, [](config& c, std::string_view v) { c.storage.inline_threshold = to_size(v); },
     [](const config& c) { return std::to_string(c.storage.inline_threshold); },
     "size from which a value travels as a reference, in bytes", false},
    {"storage.orphan_ttl_ms", kind::integer,
     [](config& c, std::string_view v) { c.storage.orphan_ttl = std::max(to_ms(v), std::chrono::milliseconds(1000)); },
     [](const config& c) { return std::to_string(c.storage.orphan_ttl.count()); },
     "age after which an object of a gone process is removed (at least 1000)", false},
    {"storage.cache_bytes", kind::integer, [](config& c, std::string_view v) { c.storage.cache_bytes = to_size(v); },
     [](const config& c) { return std::to_string(c.storage.cache_bytes); }, "bytes of objects a process keeps in memory", false},
    {"worker.serve", kind::list, [](config& c, std::string_view v) { c.worker.serve = to_list(v); },
     [](const config& c) { return join(c.worker.serve); }, "functions a worker serves: names or prefix* patterns (empty: all)",
     false},
    {"worker.insecure", kind::boolean, [](config& c, std::string_view v) { c.worker.insecure = to_bool(v); },
     [](const config& c) -> std::string { return c.worker.insecure ? "true" : "false"; },
     "let a worker reachable from other hosts serve without a token or client certificates", false},
    tls_flag<&config::worker, &tls_settings::enabled>("worker.tls", "serve callers over TLS"),
    tls_file<&config::worker, &tls_settings::ca_file>("worker.ca_file", "CA that callers' certificates must chain to"),
    tls_file<&config::worker, &tls_settings::cert_file>("worker.cert_file", "the worker's certificate (PEM)"),
    tls_file<&config::worker, &tls_settings::key_file>("worker.key_file", "the worker's private key (PEM)"),
    tls_flag<&config::worker, &tls_settings::require_client_cert>("worker.require_client_cert",
                                                                  "refuse callers without a certificate from ca_file"),
    {"worker.resources", kind::amounts, [](config& c, std::string_view v) { c.worker.resources = to_amounts(v); },
     [](const config& c) {
       std::string s;
       for (const auto& [name, amount] : c.worker.resources) {
         if (!s.empty()) s += ',';
         s += name + '=' + detail::amount_text(amount);
       }
       return s;
     },
     "what a worker has for calls that need resources, as cpu=8,gpu=1", false},
    {"worker.advertise", kind::text,
     [](config& c, std::string_view v) {
       if (!v.empty()) (void)net::parse_address(v);
       c.worker.advertise = std::string(v);
     },
     [](const config& c) { return c.worker.advertise; }, "address callers dial, registered in etcd (empty: listen's)", false},
    {"etcd.lease_ttl_ms", kind::integer,
     [](config& c, std::string_view v) {
       const auto ms = to_ms(v);
       if (ms < std::chrono::seconds(2) || ms.count() % 1000 != 0)
         throw std::invalid_argument("expected whole seconds, at least 2000");
       c.etcd.lease_ttl = ms;
     },
     [](const config& c) { return std::to_string(c.etcd.lease_ttl.count()); },
     "lease of a worker's registration (whole seconds, at least 2 s)", false},
    {"etcd.timeout_ms", kind::integer, [](config& c, std::string_view v) { c.etcd.timeout = positive_ms(v); },
     [](const config& c) { return std::to_string(c.etcd.timeout.count()); }, "deadline of a request to etcd", false},
    {"etcd.watch_idle_ms", kind::integer, [](config& c, std::string_view v) { c.etcd.watch_idle = positive_ms(v); },
     [](const config& c) { return std::to_string(c.etcd.watch_idle.count()); }, "silence after which a watch is made anew",
     false},
    {"etcd.user", kind::text, [](config& c, std::string_view v) { c.etcd.user = std::string(v); },
     [](const config& c) { return c.etcd.user; }, "etcd user", false},
    {"etcd.password_file", kind::text, [](config& c, std::string_view v) { c.etcd.password_file = std::string(v); },
     [](const config& c) { return c.etcd.password_file; }, "file holding the etcd user's password", false},
    tls_flag<&config::etcd, &tls_settings::enabled>("etcd.tls", "speak TLS to etcd"),
    tls_file<&config::etcd, &tls_settings::ca_file>("etcd.ca_file",
                                                    "CA that etcd's certificate must chain to (empty: the system's)"),
    tls_file<&config::etcd, &tls_settings::cert_file>("etcd.cert_file", "client certificate for etcd"),
    tls_file<&config::etcd, &tls_settings::key_file>("etcd.key_file", "client private key for etcd"),
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
     },
     "API keys per path: PATH=KEY|KEY;PATH=KEY (a key, file:PATH or env:NAME)", true},
    {"auth.dashboard_key", kind::text, [](config& c, std::string_view v) { c.auth.dashboard_key = std::string(v); },
     [](const config& c) { return key_source(c.auth.dashboard_key); }, "key of the dashboard (a key, file:PATH or env:NAME)",
     true},
    {"load_plugins", kind::list, [](config& c, std::string_view v) { c.plugins.load = to_list(v); },
     [](const config& c) { return join(c.plugins.load); }, "plugins to load: linked-in names or .so paths", false},
    {"load_builtin_plugins", kind::list,
     [](config& c, std::string_view v) {
       auto list = to_list(v);
       for (const auto& name : list) {
         if (name != "echo" && name != "proxy")
           throw std::invalid_argument("no built-in plugin \"" + name + "\" (there are echo and proxy)");
       }
       c.plugins.load_builtin = std::move(list);
     },
     [](const config& c) { return join(c.plugins.load_builtin); }, "built-in plugins to load: echo, proxy", false},
    {"plugins_strict", kind::boolean, [](config& c, std::string_view v) { c.plugins.strict = to_bool(v); },
     [](const config& c) -> std::string { return c.plugins.strict ? "true" : "false"; },
     "a plugin that fails to load stops the start", false},
    {"plugins.max_ongoing_requests", kind::integer,
     [](config& c, std::string_view v) { c.plugins.max_ongoing_requests = to_size(v); },
     [](const config& c) { return std::to_string(c.plugins.max_ongoing_requests); },
     "requests a plugin serves at once (0: no limit)", false},
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
     [](const config& c) { return c.log.level; }, "trace, debug, info, warn, error, critical or off", false},
};

}  // namespace

std::span<const key_info> config_keys() noexcept { return keys; }

bool is_section(std::string_view s) noexcept {
  for (const auto& k : keys) {
    if (std::string_view(k.name).starts_with(s) && k.name[s.size()] == '.') return true;
  }
  return false;
}

const key_info* find_key(std::string_view name) noexcept {
  for (const auto& k : keys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

std::string reference_table() {
  const auto cell = [](std::string_view text) {  // a table cell: its bars escaped
    std::string out;
    for (const char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  const config defaults;
  std::string out = "| key | default | meaning |\n|---|---|---|\n";
  for (const auto& k : keys) {
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict, its bug 105329) about "`" + std::string.
    const std::string shown = k.get(defaults);
    out.append("| `").append(k.name).append("` | ");
    if (shown.empty()) {
      out.append("(none)");
    } else {
      out.append(1, '`').append(cell(shown)).append(1, '`');
    }
    out.append(" | ").append(cell(k.doc)).append(" |\n");
  }
  return out;
}

}  // namespace framex::detail
