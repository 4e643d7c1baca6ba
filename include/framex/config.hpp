// framex/config.hpp — one place for every setting, and where each came from.
//
// A `framex::config` is a plain struct: fill it in code, or `load()` it from a
// TOML file and `FRAMEX_` environment variables. Precedence, highest first:
// environment (`FRAMEX_RUNTIME__MODE=distributed`: section, `__`, key) > TOML
// file > defaults. An unknown key or a wrongly typed value is a
// `framex::config_error` naming the key and where it came from.
//
// @code
// # framex.toml
// [runtime]
// mode = "distributed"
// [distributed]
// workers = ["127.0.0.1:7001", "127.0.0.1:7002"]
// call_timeout_ms = 5000
// @endcode
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace framex {

/// Where calls run: in this process, or shipped to worker processes.
enum class mode { local, distributed };

/// Whether a caller's connection begins with `framex.hello` (`distributed.hello`).
enum class hello_mode { automatic, required, off };

/// A setting that could not be applied: names the key and its source.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How one side speaks TLS (see the README's "Security"): `tls = true` with
/// PEM files. TLS 1.2 or 1.3, no compression; reconnects resume sessions.
struct tls_settings {
  bool enabled = false;
  /// The CA that the peer's certificate must chain to. A caller without one
  /// uses the system's store; a server needs one to verify client certificates.
  std::string ca_file;
  /// This side's certificate (chain) and private key. A worker and an HTTPS
  /// server need them; a caller presents them when given (mutual TLS).
  std::string cert_file;
  std::string key_file;
  /// Server side: every client must present a certificate from `ca_file`.
  bool require_client_cert = false;
};

/// Every framex setting. Defaults are usable as they are (local mode).
struct config {
  struct server_section {
    /// The HTTP ingress (`framex::app`).
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    /// The dashboard, `/api/v1/stats` and `/metrics`.
    std::string dashboard_host = "127.0.0.1";
    std::uint16_t dashboard_port = 8260;
    /// Largest request body accepted (larger: 413).
    std::size_t body_limit = std::size_t{1} << 20;
    /// How long a connection may take to send a request.
    std::chrono::milliseconds read_timeout{30000};
    /// Threads serving HTTP connections.
    std::size_t threads = 1;
    /// Connections served at once (ingress and dashboard each); more wait in
    /// the kernel's backlog. 0: no limit.
    std::size_t max_connections = 1024;
    /// How long a request's headers may take to arrive (its body then has
    /// `read_timeout`).
    std::chrono::milliseconds header_timeout{10000};
    /// HTTPS for the ingress and the dashboard (`server.tls`, `server.cert_file`, ...).
    tls_settings tls;
  } server;

  struct runtime_section {
    framex::mode mode = framex::mode::local;
    /// Blocking-call pool threads (local mode); 0: one per hardware thread.
    std::size_t threads = 0;
    /// How long an idle pool thread watches for a new call before it sleeps
    /// (one thread at a time; never on an oversubscribed machine); 0: never.
    std::chrono::microseconds spin{50};
  } runtime;

  struct distributed_section {
    /// "host:port" or "unix:PATH" of each worker (with `discovery = "static"`).
    std::vector<std::string> workers;
    /// Where the workers come from: "static" (`workers`);
    /// "dns://NAME:PORT?refresh_ms=5000": every address NAME resolves to (A and
    /// AAAA records, as a Kubernetes headless service has), looked up again
    /// every `refresh_ms`; or "etcd://HOST:PORT[,HOST:PORT...]/PREFIX": the
    /// workers registered under PREFIX (see `etcd`), watched. Workers that
    /// appear are added; those that vanish or drain get no new call and are
    /// closed once idle. A worker given an etcd:// discovery registers itself.
    std::string discovery = "static";
    /// The `framex.hello` a connection begins with, which checks signatures
    /// and learns the worker's limits and resources: `automatic` sends it and,
    /// when the peer does not know it (any msgpack-RPC server that is not
    /// framex), goes on without it; `required` fails the connection then (for
    /// version-skew checks); `off` never sends it. A token needs it.
    hello_mode hello = hello_mode::automatic;
    /// Multiplexed connections to each worker; calls use the least loaded.
    std::size_t connections_per_worker = 1;
    /// Deadline of a call that gives none itself; zero: none.
    std::chrono::milliseconds call_timeout{0};
    /// How long connecting to a worker (and its hello) may take.
    std::chrono::milliseconds connect_timeout{3000};
    /// Largest message sent or accepted, in bytes.
    std::size_t max_message_size = std::size_t{64} << 20;
    /// Most msgpack objects (containers and elements alike) in one message.
    std::size_t max_message_elements = std::size_t{1} << 22;
    /// How long the bytes of one message may take to arrive once its first
    /// byte has; zero: no limit.
    std::chrono::milliseconds message_timeout{30000};
    /// Threads running the caller's connections.
    std::size_t io_threads = 1;
    /// A connection silent this long gets a `framex.ping`; one that stays
    /// silent as long again is taken for dead (a hung or unreachable worker):
    /// it closes, its calls fail with `worker_lost` (or retry elsewhere), and
    /// the worker is retried with backoff. Zero: no heartbeat.
    std::chrono::milliseconds heartbeat{5000};
    /// A file holding the token shared with the workers (see the README's
    /// "Security"): the caller proves it holds it, and checks that each worker
    /// does too. Empty: no token.
    std::string token_file;
    /// TLS to the workers (`distributed.tls`, `distributed.ca_file`, ...): each
    /// worker's certificate must name the host or IP address dialled.
    tls_settings tls;
  } distributed;

  struct worker_section {
    /// "host:port" a worker listens on (port 0 picks a free one), or
    /// "unix:PATH": a unix domain socket, made (replacing one no process
    /// accepts on) and removed when the worker ends.
    std::string listen = "127.0.0.1:7001";
    /// Blocking-call pool threads; 0: one per hardware thread.
    std::size_t threads = 0;
    /// As `runtime.spin_us`, for the worker's pool.
    std::chrono::microseconds spin{50};
    /// Threads running connections and async functions.
    std::size_t io_threads = 1;
    /// Calls a worker holds at once (running or queued); more are refused
    /// with `overloaded`. 0: no limit.
    std::size_t max_queued = 10000;
    /// Calls one connection may have in the worker at once; more are refused
    /// with `overloaded`. Connections take turns on the pool. 0: no limit.
    std::size_t max_calls_per_connection = 1024;
    /// Memory all held requests may take (their bytes and decoded objects);
    /// more are refused with `overloaded`. Messages still arriving may take as
    /// much again, together: the connection whose message would go beyond
    /// closes. 0: no limit.
    std::size_t max_held_bytes = std::size_t{512} << 20;
    /// Open connections; at the limit the longest-silent idle one is closed to
    /// make room. 0: no limit.
    std::size_t max_connections = 1024;
    /// A connection with no call in flight closes after this long without
    /// traffic; zero: never.
    std::chrono::milliseconds idle_timeout{300000};
    /// Answers queued for a peer that does not read them: above this many
    /// bytes the connection closes (reading from it pauses at a quarter).
    std::size_t max_output_bytes = std::size_t{64} << 20;
    /// Answers queued for all peers together: above this many bytes, a
    /// connection closes that already had answers waiting, or that cannot take
    /// more than 64 KiB of an answer at once; above half of it, connections
    /// with answers waiting read no new work. 0: no limit.
    std::size_t max_output_total_bytes = std::size_t{64} << 20;
    /// Send a failed function's exception type and message to the caller
    /// (framex callers rethrow them as `remote_error`). When false, the caller
    /// gets a fixed message with an error id, and the text goes to the log.
    bool expose_errors = true;
    /// A file holding the token callers must prove they hold before any call
    /// (see the README's "Security"). Empty: no token.
    std::string token_file;
    /// How long a connection may take to prove the token; then it closes.
    std::chrono::milliseconds auth_timeout{5000};
    /// Draining (SIGTERM, `worker::drain`): how long the calls a worker holds
    /// may take to finish before what is left is answered `cancelled`.
    std::chrono::milliseconds drain_timeout{10000};
    /// Actors (framex/actor.hpp): how long a caller whose last connection
    /// closed may take to come back before its handles count as gone, and the
    /// actors only it held are dropped.
    std::chrono::milliseconds actor_grace{10000};
    /// Actors a worker hosts at once; more spawns are refused with `overloaded`.
    std::size_t max_actors = 10000;
    /// What callers may call: names, or prefixes ending in `*`
    /// (`["heavy_job", "Worker::*"]`). Empty: every registered function.
    std::vector<std::string> serve;
    /// TLS for callers (`worker.tls`, `worker.cert_file`, ...;
    /// `worker.require_client_cert` for mutual TLS).
    tls_settings tls;
    /// "host:port" callers should dial, registered in etcd, when it differs
    /// from `listen` (a wildcard or a translated address). Empty: `listen`'s
    /// host and the port listened on.
    std::string advertise;
    /// What this worker has for calls that need resources (`framex::require`,
    /// `call_options::resources`): `[worker.resources] cpu = 8, gpu = 1,
    /// "zone:eu" = 1`; as text `cpu=8,gpu=1,zone:eu=1`. A caller runs at most
    /// as many such calls here at once as the amounts allow.
    std::map<std::string, double> resources;
    /// Listen on a non-loopback address authenticating no caller (neither a
    /// token nor client certificates). A worker refuses to start that way
    /// unless this says the network is trusted.
    bool insecure = false;
  } worker;

  /// etcd, for `distributed.discovery = "etcd://..."`: how workers register
  /// and callers watch (see the README's "Running past one machine").
  struct etcd_section {
    /// A worker's registration lives this long after its last keep-alive
    /// (sent every third of it); a worker that dies leaves the membership
    /// within it. Whole seconds, at least 2.
    std::chrono::milliseconds lease_ttl{10000};
    /// How long one request to etcd may take, connecting included.
    std::chrono::milliseconds timeout{5000};
    /// A watch that delivers nothing this long is made again (read, then
    /// watched): a silently cut connection to etcd costs at most this much.
    std::chrono::milliseconds watch_idle{30000};
    /// etcd authentication: the user, and a file holding the password
    /// (exchanged for a token). Empty: none.
    std::string user;
    std::string password_file;
    /// TLS to etcd (`etcd.tls`, `etcd.ca_file`, `etcd.cert_file`, ...).
    tls_settings tls;
  } etcd;

  struct auth_section {
    /// Routes of the HTTP ingress that need an API key in the `Authorization`
    /// header (`Bearer KEY`, or the key alone): path → the keys it takes. A
    /// path is exact, or a prefix ending in `*`; an exact rule wins over a
    /// wildcard, the longest wildcard wins, and unmatched routes are public.
    /// A key is the key itself, `file:PATH` (the file's contents) or
    /// `env:NAME` (a variable's value). As text: `PATH=KEY|KEY;PATH=KEY`.
    std::map<std::string, std::vector<std::string>> rules;
    /// The key the dashboard, `/api/v1/stats` and `/metrics` need (same forms;
    /// a browser is asked for it as a password). Empty: none.
    std::string dashboard_key;
  } auth;

  /// Object references (framex/object_ref.hpp), distributed mode.
  struct storage_section {
    /// The directory spilled objects are written to and read from: every
    /// caller and worker of a cluster must see the same one (a network file
    /// system past one machine). Each process writes only under
    /// `PATH/<its id>/`. Empty: `framex-objects` in the system's temporary
    /// directory.
    std::string path;
    /// A value packed to fewer bytes than this travels inline, in each call
    /// that uses it; a larger one is written to `path` once.
    std::size_t inline_threshold = std::size_t{1} << 20;
    /// The objects of a process that stopped refreshing its `.alive` file
    /// this long ago (it died) are deleted by any other.
    std::chrono::milliseconds orphan_ttl{600000};
    /// Decoded objects a process keeps, by the size of their files; the
    /// least recently used ones not in use are dropped beyond it.
    std::size_t cache_bytes = std::size_t{1} << 30;
  } storage;

  struct log_section {
    std::string level = "info";
  } log;

  /// Plugins (framex/plugin.hpp): which to load, and each one's settings.
  struct plugins_section {
    /// Plugins linked into the program, by name, and shared libraries, by
    /// path (one with a `/` or ending in `.so`): `load_plugins` at the top of
    /// the TOML file, `FRAMEX_LOAD_PLUGINS`, `--load_plugins`.
    std::vector<std::string> load;
    /// framex's own plugins ("echo", "proxy"): `load_builtin_plugins`.
    std::vector<std::string> load_builtin;
    /// `plugins_strict`: a plugin that cannot be loaded, started or given
    /// the APIs it requires stops the start-up; otherwise it is reported and
    /// left out.
    bool strict = false;
    /// Requests each plugin serves at once, unless its own section says
    /// otherwise; more get 503 (HTTP) or `overloaded`. 0: no bound.
    std::size_t max_ongoing_requests = 0;
    /// One plugin's `[plugins.NAME]`.
    struct settings {
      /// `deploy = "workers"`: in distributed mode the plugin runs on the
      /// workers, and the ingress sends its calls there.
      bool on_workers = false;
      /// Overrides `plugins.max_ongoing_requests`.
      std::optional<std::size_t> max_ongoing_requests;
      /// The plugin's own keys, each as JSON text.
      std::map<std::string, std::string> keys;
    };
    std::map<std::string, settings> each;
  } plugins;

  /// Set by `load(argc, argv)` when `--print-config` was given: the program
  /// should print `describe()` and exit (`app::run` does).
  bool print_only = false;

  /// Where each key's value came from ("default", "file framex.toml",
  /// "environment FRAMEX_...", "code"), keyed "section.key".
  std::map<std::string, std::string> sources;

  /// Loads the defaults, then `file` (or `$FRAMEX_CONFIG`, else `./framex.toml`
  /// if it exists), then the environment. Throws `config_error`.
  static config load(std::optional<std::filesystem::path> file = std::nullopt);

  /// As `load(file)`, then command-line flags over everything:
  /// `--section.key=value` or `--section.key value`, `--config FILE` (the
  /// file to load), `--print-config`. Other arguments are left alone.
  static config load(int argc, const char* const* argv);

  /// Applies TOML text over this config; `origin` names it in errors.
  void apply_toml(std::string_view text, const std::string& origin);

  /// Applies one "section.key" = text setting (as from the environment or a
  /// command line); `origin` names it in errors.
  void apply(std::string_view key, std::string_view value, const std::string& origin);

  /// Applies every `FRAMEX_SECTION__KEY` variable of the environment.
  void apply_environment();

  /// The effective configuration, one "section.key = value  # source" per line.
  [[nodiscard]] std::string describe() const;
};

/// Splits "host:port"; throws `config_error` when it is not one.
std::pair<std::string, std::uint16_t> parse_endpoint(std::string_view text);

}  // namespace framex
