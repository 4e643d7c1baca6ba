// The caller's side of distributed mode: connections to the configured
// workers, and the calls in flight on them.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>

#include "framex/config.hpp"
#include "framex/detail/wire.hpp"
#include "framex/stats.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace framex::detail {

class distributed_runtime {
 public:
  /// `io`: the io_context that serves the connections; null: threads of its own
  /// (`distributed.io_threads`) run one of its own.
  distributed_runtime(const config& cfg, boost::asio::io_context* io);
  ~distributed_runtime();
  distributed_runtime(const distributed_runtime&) = delete;
  distributed_runtime& operator=(const distributed_runtime&) = delete;

  /// Sends a call to the least-loaded reachable worker. See `detail::start_remote`.
  void start(const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
             const resource_needs& needs, const boost::asio::any_io_executor& caller, reply_handler handler);

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
