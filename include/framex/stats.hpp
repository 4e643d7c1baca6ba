// framex/stats.hpp — what the runtime has been doing: per function, per worker.
//
// Counted: every distributed call, and every blocking call in local mode (an
// async function in local mode is a plain co_await and is not counted). The
// dashboard (`framex::app`) shows these live; `framex::stats()` returns them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framex/config.hpp"

namespace framex {

struct function_stats {
  std::string name;
  bool remote = false;  ///< shipped to workers (else run in-process)
  std::uint64_t calls = 0;
  std::uint64_t errors = 0;
  double p50_ms = 0;  ///< approximate: from a histogram with ~19% wide buckets
  double p99_ms = 0;
};

struct worker_stats {
  std::string address;
  /// How the caller found it: "static", "dns" or "etcd".
  std::string source;
  /// "ready", "draining" (it said so: it gets no new call), "connecting",
  /// "down", or "unhealthy" (its heartbeat went unanswered).
  std::string state;
  /// Milliseconds since bytes last came from it, on a live connection; -1 otherwise.
  double last_heard_ms = -1;
  std::uint64_t in_flight = 0;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  /// Bytes sent to it on its connection since that opened.
  std::uint64_t bytes_sent = 0;
};

struct error_record {
  std::string when;  ///< UTC, ISO 8601
  std::string function;
  std::string message;
};

struct stats_snapshot {
  framex::mode mode = framex::mode::local;
  std::vector<worker_stats> workers;      ///< the runtime's workers (distributed mode)
  std::vector<function_stats> functions;  ///< every function called so far, by name
  std::vector<error_record> recent_errors;  ///< newest first, at most 20
  /// Actors (framex/actor.hpp) this process made, on workers or locally.
  std::uint64_t actors_spawned = 0;
  /// Actors re-created after their worker was lost (`actor_options::max_restarts`).
  std::uint64_t actor_restarts = 0;
  /// Calls that found their actor gone (`errc::actor_lost`).
  std::uint64_t actors_lost = 0;
};

class runtime;

/// The counters of the process's functions and of `rt`'s workers.
/// Thread safety: any thread.
stats_snapshot stats(const runtime& rt);

namespace detail {

/// One function's counters; lives as long as the process. Lock-free to update.
class stats_cell;

/// The cell for `name`; `remote` tells which table it belongs to.
stats_cell& stats_for(const std::string& name, bool remote);

/// Records one finished call taking `nanoseconds`; `error` non-empty when it failed.
void record(stats_cell& cell, std::int64_t nanoseconds, const std::string* error) noexcept;

}  // namespace detail
}  // namespace framex
