// framex/worker.hpp — run this program as a worker that serves its functions.
//
// A worker is the user's own executable started in worker role: it links the
// same functions, so only names and arguments travel and it never runs code it
// was sent. It answers msgpack-RPC requests for every registered function
// (every function the binary calls with `.remote()`, plus any `expose<&f>()`),
// blocking ones on a bounded pool, async ones on its I/O threads.
//
// @code
// int main(int argc, char** argv) {
//   if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;  // --framex-worker ...
//   ...                                                                       // the normal program
// }
// @endcode
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "framex/config.hpp"

namespace framex {

/// A worker serving in this process, on its own threads.
///
/// Thread safety: all members may be called from any thread.
class worker {
 public:
  /// Listens on `cfg.worker.listen` (port 0 picks a free port) and starts
  /// serving. Throws `std::system_error` if it cannot listen.
  explicit worker(const config& cfg);
  /// Stops, as `stop()`.
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// The port it listens on.
  [[nodiscard]] std::uint16_t port() const noexcept;

  /// Stops accepting, answers queued calls with `cancelled`, lets running
  /// bodies finish, closes connections and joins its threads. Idempotent.
  void stop() noexcept;

  /// Leaves gracefully, as a rolling restart wants: stops accepting, tells
  /// every caller (a `framex.draining` notification) so that it sends nothing
  /// new here, refuses calls that still come with `overloaded` (a caller's
  /// retry moves them to another worker), lets the calls it holds finish
  /// within `timeout` (default: `worker.drain_timeout_ms`), then stops as
  /// `stop()` does. `serve_worker` drains on SIGTERM and SIGINT.
  void drain(std::optional<std::chrono::milliseconds> timeout = std::nullopt) noexcept;

  class impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// Serves as a worker until SIGINT or SIGTERM, then drains (see
/// `worker::drain`). Prints "framex worker listening on HOST:PORT" once it
/// accepts connections. Returns the process exit code: 0 after a drain.
int serve_worker(const config& cfg);

/// If `argv` contains `--framex-worker`, runs `serve_worker` and returns its
/// exit code; otherwise returns nothing and the program goes on. Recognised
/// flags: `--listen HOST:PORT`, `--threads N`, `--config FILE`, and any
/// setting as `--section.key value` or `--section.key=value` (over the file
/// and the environment, as in config.hpp); any other flag is an error.
std::optional<int> worker_main(int argc, char** argv);

}  // namespace framex
