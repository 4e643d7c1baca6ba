// The caller's side of distributed mode: connections to the configured
// workers, and the calls in flight on them.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framex/config.hpp"
#include "framex/detail/wire.hpp"
#include "framex/stats.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace framex::net {
class client;
struct incoming_request;
}  // namespace framex::net

namespace framex::detail {

class distributed_runtime {
 public:
  /// What to do with a request or notification a worker sends (see
  /// `net::client::on_incoming`); null: requests are refused.
  using incoming_fn = std::function<void(const std::shared_ptr<net::client>&, net::incoming_request)>;

  /// `io`: the io_context that serves the connections; null: threads of its own
  /// (`distributed.io_threads`) run one of its own.
  distributed_runtime(const config& cfg, boost::asio::io_context* io, incoming_fn incoming = {});
  ~distributed_runtime();
  distributed_runtime(const distributed_runtime&) = delete;
  distributed_runtime& operator=(const distributed_runtime&) = delete;

  /// Sends a call to the least-loaded reachable worker. See `detail::start_remote`.
  /// A `notification` is sent as one (`params` packed as for a request) and
  /// completes, with no result, once a connection has taken it.
  void start(const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
             const resource_needs& needs, const boost::asio::any_io_executor& caller, reply_handler handler,
             bool notification = false);

  /// Where a call goes: to a worker that has `needs` free, or, with `pin`
  /// non-empty, to the worker at that address and no other (failing with
  /// `worker_lost` at once when it is down).
  struct placement {
    resource_map needs;
    std::string pin;
  };
  void start(const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
             placement where, const boost::asio::any_io_executor& caller, reply_handler handler, bool notification = false);

  /// Sends a notification to the worker at `pin`, if it can be sent; nobody waits.
  void notify(const function_entry& fn, message_buffer params, std::string pin);

  /// The addresses of the workers calls may go to now.
  [[nodiscard]] std::vector<std::string> worker_addresses() const;

  /// Completes every pending call with `cancelled`, closes the connections and
  /// joins the I/O threads. Idempotent.
  void shutdown() noexcept;

  /// Adds each worker connection's counters to `out`.
  void fill(stats_snapshot& out) const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace framex::detail
