// etcd, spoken through its v3 JSON gateway (HTTP/1.1 + JSON over Beast, TLS
// optional): what workers need to register themselves under a lease and what
// callers need to follow the registrations (read a prefix, then watch it).
//
// Facts of the gateway this relies on (etcd 3.4 and 3.5): paths are `/v3/...`;
// keys and values are base64; numbers come back as JSON strings; a watch is a
// chunked body of one `{"result": ...}` per line, a PUT event carries no
// `type`; a lease keep-alive is one POST per refresh, and an expired lease's
// answer has no `TTL`; the gateway cannot cancel a watch, so closing its
// connection does. Every request names `Grpc-Metadata-hasleader: true`, so
// that a member cut off from its cluster fails it instead of hanging it.
//
// Every operation runs on the executor of the coroutine awaiting it, which
// must be one strand per client (`stop` too). Each request has its own
// connection (TLS resumes its session), tried on each endpoint in turn.
// Failures throw `etcd_error`, whose message names the endpoint and etcd's
// own reason.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "framex/config.hpp"
#include "membership/discovery.hpp"

namespace framex::detail::etcd {

/// Where `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` points (membership/discovery.hpp).
using target = etcd_target;

/// etcd could not be reached, refused a request or answered nonsense.
class etcd_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct key_value {
  std::string key;  // decoded
  std::string value;
};

/// One change under a watched prefix.
struct event {
  bool deleted = false;  // else a put
  key_value kv;
};

class client {
 public:
  /// Throws `config_error` for unreadable password or TLS files.
  client(target where, const config::etcd_section& settings);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  [[nodiscard]] const target& where() const noexcept;

  /// A lease of `ttl`: its id.
  boost::asio::awaitable<std::int64_t> grant(std::chrono::seconds ttl);
  /// Refreshes a lease: false when it is gone (expired, revoked, or etcd
  /// lost its data), so it must be granted again.
  boost::asio::awaitable<bool> keep_alive(std::int64_t lease);
  /// Ends a lease and deletes its keys; a lease already gone is no error.
  boost::asio::awaitable<void> revoke(std::int64_t lease);
  /// Writes `key` (under no lease when `lease` is 0).
  boost::asio::awaitable<void> put(const std::string& key, const std::string& value, std::int64_t lease);
  /// Every key under the prefix, and the store's revision when they were read.
  boost::asio::awaitable<std::pair<std::vector<key_value>, std::int64_t>> read_prefix();
  /// Watches the prefix from `revision`, handing each batch of events to
  /// `on_events` as it arrives. Returns when the watch must be made again
  /// from a fresh read: etcd compacted past `revision`, cancelled the watch,
  /// or it delivered nothing for `watch_idle`. Throws when it breaks.
  boost::asio::awaitable<void> watch(std::int64_t revision, std::function<void(const std::vector<event>&)> on_events);

  /// Closes every connection in use: the operations awaiting them throw.
  /// Later operations throw at once. On the client's strand.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A worker's registration as a caller reads it: the value of its key.
struct registered_worker {
  std::string address;  // "host:port" to dial
  bool draining = false;
  std::string functions;  // digest of the functions it serves
  std::map<std::string, double> resources;

  [[nodiscard]] std::string to_json() const;
  /// Throws `etcd_error` when `json` is not a registration.
  static registered_worker from_json(std::string_view json);
};

/// Keeps a worker registered: grants a lease, writes its key under it, and
/// keeps the lease alive (every third of its TTL); when the lease is lost
/// (etcd restarted, a long pause) it registers again. Runs on `strand`.
class registration : public std::enable_shared_from_this<registration> {
 public:
  registration(std::unique_ptr<client> etcd, std::string key, registered_worker value, std::chrono::seconds ttl,
               boost::asio::any_io_executor strand);
  void start();
  /// Writes `draining` into the key; returns once etcd has it, or after
  /// `limit`. Not on the strand.
  void drain(std::chrono::milliseconds limit);
  /// Revokes the lease (its key goes with it) and stops; returns once done,
  /// or after `limit`. Not on the strand.
  void stop(std::chrono::milliseconds limit);

 private:
  boost::asio::awaitable<void> keep();
  struct state;
  std::shared_ptr<state> state_;
};

/// Follows the registrations under a prefix (read, then watch; read again
/// after a compaction, a broken or a quiet watch) and hands every change to
/// `on_change` as the whole set, key -> worker; `on_error` gets why it
/// cannot, while it cannot (it retries with backoff). Runs on `strand`.
class watcher : public std::enable_shared_from_this<watcher> {
 public:
  using members = std::map<std::string, registered_worker>;
  watcher(std::unique_ptr<client> etcd, boost::asio::any_io_executor strand, std::function<void(const members&)> on_change,
          std::function<void(const std::string&)> on_error);
  void start();
  /// Ends the watch; returns at once. Any thread.
  void stop();

 private:
  boost::asio::awaitable<void> follow();
  struct state;
  std::shared_ptr<state> state_;
};

}  // namespace framex::detail::etcd
