// Whether a worker takes one more call. A plain class with no sockets, used
// under the worker's lock (tests/unit/admission_test.cpp), holding the
// worker's budgets: calls held in total (`worker.max_queued`), calls held per
// connection (`worker.max_calls_per_connection`) and bytes of requests held
// (`worker.max_held_bytes`); and its phase (serving, draining, stopping).
//
// Fair between peers. A peer is a caller that said who it is in its hello, or
// else the host a connection comes from, over any number of connections. Once
// three quarters of a budget are taken, a peer that holds its share of it
// (the budget divided among the peers holding calls and one newcomer) is
// refused while others are admitted up to the whole budget, and a peer that
// holds nothing may always have one call that fits: one peer flooding from
// many connections leaves room for everyone else.
//
// A call is admitted, then `finished` once, whichever way it ends; what it
// held is given back then.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace framex::detail {

class admission {
 public:
  struct limits {
    std::size_t max_calls = 0;                 // 0: no limit
    std::size_t max_calls_per_connection = 0;  // 0: no limit
    std::size_t max_held_bytes = 0;            // 0: no limit
  };
  enum class verdict { admit, stopping, draining, worker_full, connection_full, bytes_full, peer_full, peer_bytes_full };
  /// Who a call comes from (see the top of this file).
  using peer_id = std::uint64_t;

  explicit admission(limits l) noexcept : limits_(l) {}

  /// Whether a request of `cost` bytes from `peer`, on a connection that
  /// holds `connection_calls` calls already, may be served now.
  [[nodiscard]] verdict check(peer_id peer, std::size_t connection_calls, std::size_t cost) const noexcept;
  /// Why `v` refused a call, as the error message the caller reads.
  [[nodiscard]] std::string why(verdict v) const;

  void admitted(peer_id peer, std::size_t cost);
  void finished(peer_id peer, std::size_t cost) noexcept;
  /// New calls are refused with `overloaded` from now on.
  void drain() noexcept { draining_ = true; }
  /// New calls are refused with `cancelled` from now on.
  void stop() noexcept { stopping_ = true; }

  [[nodiscard]] std::size_t held() const noexcept { return held_; }
  [[nodiscard]] std::size_t held_bytes() const noexcept { return held_bytes_; }
  /// Peers holding calls now.
  [[nodiscard]] std::size_t peers() const noexcept { return holding_; }

 private:
  struct held_by {
    std::size_t calls = 0;
    std::size_t bytes = 0;
  };
  limits limits_;
  std::size_t held_ = 0;        // calls and notifications being served
  std::size_t held_bytes_ = 0;  // what they hold in memory
  static constexpr std::size_t remembered_peers = 256;
  std::unordered_map<peer_id, held_by> peers_;
  std::size_t holding_ = 0;  // peers holding calls
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace framex::detail
