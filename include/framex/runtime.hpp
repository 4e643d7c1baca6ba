// framex/runtime.hpp — where `.remote()` calls run.
//
// A `framex::runtime` owns the thread pool that blocking functions run on. The
// wrapper templates in remote.hpp never see the pool: they hand it a
// type-erased `detail::pool_task` through `detail::submit`, which is compiled
// into the library, so a user's translation units carry no pool machinery.
//
// Every call picks a runtime: the one given in `call_options::runtime`, else the
// current one (`runtime::current()`), which is the runtime installed by the
// innermost live `runtime_scope`, else a default runtime built on first use with
// one thread per hardware thread. Quickstart code therefore needs no set-up;
// tests and services build their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "framex/config.hpp"
#include "framex/detail/wire.hpp"
#include "framex/stats.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace framex {

/// How a runtime is built.
struct runtime_options {
  /// Threads in the blocking-call pool; 0 means `std::thread::hardware_concurrency()`
  /// (at least 1).
  std::size_t threads = 0;
  /// How long an idle pool thread watches for a new call before it sleeps
  /// (see `config::runtime_section::spin`); 0: never.
  std::chrono::microseconds spin{50};
};

class runtime;

namespace detail {
class pool_task;
class runtime_impl;
/// Queues `task` on `rt`'s pool; after shutdown, runs `task.run(true)` inline.
void submit(runtime& rt, pool_task& task) noexcept;
/// What `rt` owns, for the library's compiled parts.
runtime_impl& impl_of(runtime& rt) noexcept;
}  // namespace detail

/// Owns the resources calls run on. Not copyable or movable: calls hold a
/// reference to it until they complete.
///
/// Shutdown (`shutdown()` or the destructor): calls not yet started complete with
/// `framex::errc::cancelled`; bodies already running finish and deliver their
/// results; calls made afterwards complete with `cancelled` at once; then every
/// pool thread is joined. It must not be called from inside a blocking body.
///
/// Thread safety: all members are safe to call concurrently.
class runtime {
 public:
  runtime();
  explicit runtime(runtime_options options);
  /// A runtime as `cfg` describes: local, or distributed over `cfg.distributed.workers`
  /// (connections are made on first use). Throws `config_error` on a bad worker address.
  explicit runtime(const config& cfg);
  /// The same, with the connections to the workers served by `io` instead of
  /// threads of the runtime's own (`distributed.io_threads` is then unused).
  /// A reply is read on a thread running `io`, and a call made from a
  /// coroutine on `io` itself (its executor, not a strand of it) resumes right
  /// there, with no hop between threads; replies that arrive together let
  /// their callers' next calls leave together in one write.
  ///
  /// `io` must outlive the runtime. Open connections keep `io.run()` from
  /// returning: shut the runtime down (or destroy it) when the calls are done,
  /// which closes them without waiting for `io`. In local mode `io` is unused.
  runtime(const config& cfg, boost::asio::io_context& io);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Threads in the blocking-call pool.
  [[nodiscard]] std::size_t thread_count() const noexcept;

  /// Stops the runtime as described above and waits for its threads. Idempotent.
  void shutdown() noexcept;

  /// True once shutdown has begun: calls made from then on complete with
  /// `framex::errc::cancelled`.
  [[nodiscard]] bool stopping() const noexcept;

  /// Where this runtime's calls run.
  [[nodiscard]] mode current_mode() const noexcept;

  /// The runtime calls use when none is named: the innermost live
  /// `runtime_scope`'s, else the process-wide default, built on first use from
  /// `config::load()` (so `FRAMEX_RUNTIME__MODE=distributed` switches a program
  /// without code changes). Throws `config_error` if that configuration is bad.
  [[nodiscard]] static runtime& current();

  /// `*chosen` when a call names a runtime (non-null), else `current()`.
  [[nodiscard]] static runtime& or_current(runtime* chosen) { return chosen != nullptr ? *chosen : current(); }

 private:
  friend void detail::submit(runtime&, detail::pool_task&) noexcept;
  friend bool detail::is_distributed(const runtime&) noexcept;
  friend detail::runtime_impl& detail::impl_of(runtime&) noexcept;
  friend stats_snapshot stats(const runtime& rt);
  friend void detail::start_remote(runtime&, const detail::function_entry&, detail::message_buffer,
                                   std::chrono::steady_clock::duration, const resource_needs&,
                                   const boost::asio::any_io_executor&, detail::reply_handler);
  std::unique_ptr<detail::runtime_impl> impl_;
};

/// Makes a runtime the current one for the whole process while the scope lives.
/// The current runtime is always the one of the newest scope still alive, so
/// scopes that end out of order (not last-in-first-out) never leave a runtime
/// of an ended scope installed.
///
/// @code
/// framex::runtime rt{{.threads = 4}};
/// framex::runtime_scope scope{rt};
/// co_await heavy.remote(21);   // runs on rt's pool
/// @endcode
class [[nodiscard]] runtime_scope {
 public:
  explicit runtime_scope(runtime& rt) noexcept;
  ~runtime_scope();
  runtime_scope(const runtime_scope&) = delete;
  runtime_scope& operator=(const runtime_scope&) = delete;

 private:
  runtime& runtime_;
  runtime_scope* older_ = nullptr;  // in the list of live scopes, newest last
  runtime_scope* newer_ = nullptr;
};

namespace detail {

/// A unit of blocking work the pool runs. The task owns its own lifetime: the
/// pool calls `run` exactly once and never touches the task again.
class pool_task {
 public:
  /// @param stopping true when the runtime is shutting down: the task must not
  ///        run its body and completes its caller with `errc::cancelled`.
  virtual void run(bool stopping) noexcept = 0;

 protected:
  pool_task() = default;
  ~pool_task() = default;
  pool_task(const pool_task&) = delete;
  pool_task& operator=(const pool_task&) = delete;

 private:
  friend class thread_pool;
  pool_task* next_ = nullptr;
};
}  // namespace detail
}  // namespace framex
