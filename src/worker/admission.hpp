// Whether a worker takes one more call. A plain class with no sockets, used
// under the worker's lock (tests/unit/admission_test.cpp), holding the
// worker's budgets: calls held in total (`worker.max_queued`), calls held per
// connection (`worker.max_calls_per_connection`) and bytes of requests held
// (`worker.max_held_bytes`); and its phase (serving, draining, stopping).
//
// A call is admitted, then `finished` once, whichever way it ends; what it
// held is given back then.
#pragma once

#include <cstddef>
#include <string>

namespace framex::detail {

class admission {
 public:
  struct limits {
    std::size_t max_calls = 0;                 // 0: no limit
    std::size_t max_calls_per_connection = 0;  // 0: no limit
    std::size_t max_held_bytes = 0;            // 0: no limit
  };
  enum class verdict { admit, stopping, draining, worker_full, connection_full, bytes_full };

  explicit admission(limits l) noexcept : limits_(l) {}

  /// Whether a request of `cost` bytes, on a connection that holds
  /// `connection_calls` calls already, may be served now.
  [[nodiscard]] verdict check(std::size_t connection_calls, std::size_t cost) const noexcept;
  /// Why `v` refused a call, as the error message the caller reads.
  [[nodiscard]] std::string why(verdict v) const;

  void admitted(std::size_t cost) noexcept {
    ++held_;
    held_bytes_ += cost;
  }
  void finished(std::size_t cost) noexcept {
    --held_;
    held_bytes_ -= cost;
  }
  /// New calls are refused with `overloaded` from now on.
  void drain() noexcept { draining_ = true; }
  /// New calls are refused with `cancelled` from now on.
  void stop() noexcept { stopping_ = true; }

  [[nodiscard]] std::size_t held() const noexcept { return held_; }
  [[nodiscard]] std::size_t held_bytes() const noexcept { return held_bytes_; }

 private:
  limits limits_;
  std::size_t held_ = 0;        // calls and notifications being served
  std::size_t held_bytes_ = 0;  // what they hold in memory
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace framex::detail
