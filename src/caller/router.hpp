// Which connection a call goes to. A plain class with no sockets: the
// caller's runtime describes each of its connections as a `route_candidate`
// (under its lock) and asks `pick`, so every routing rule has a unit test
// (tests/unit/router_test.cpp).
//
// The rules, in order:
//   1. never a retired connection (its worker left discovery), a draining one
//      (its worker said so), or a stalled one (unsent output above the mark);
//   2. a ready connection whose worker has the call's resources free: one
//      that is not suspect (gone quiet: see `route_candidate::suspect`) before
//      one that is, then the one with the fewest calls in flight; among
//      equals, the next worker after the one chosen last, so sequential calls
//      alternate between workers;
//   3. else a connection being made whose worker may have the resources
//      (unknown counts as may), the one with the fewest calls waiting for it;
//   4. else none: the call waits unrouted.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "framex/resources.hpp"

namespace framex::detail {

/// One connection, as the router sees it.
struct route_candidate {
  enum class state { down, connecting, ready };
  std::string_view worker;  // its worker's address (a worker may have several connections)
  state status = state::down;
  bool retired = false;
  bool draining = false;
  bool stalled = false;
  // Calls outstanding and nothing heard since a probe went out several round
  // trips ago: perhaps cut off. New calls go elsewhere while anything else fits.
  bool suspect = false;
  std::size_t load = 0;                // ready: calls in flight; connecting: calls waiting for it
  const resource_map* has = nullptr;   // what its worker has; null: not known yet
  const resource_map* held = nullptr;  // what calls in flight hold on its worker; null: nothing
};

/// Thread safety: not thread safe; the caller's runtime uses it under its lock.
class router {
 public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  /// The index in `candidates` of the connection a call that needs `needs`
  /// (empty: nothing) should go to, or `none`.
  [[nodiscard]] std::size_t pick(std::span<const route_candidate> candidates, const resource_map& needs);

 private:
  std::size_t rotation_ = 0;  // where the scan starts: ties among one worker's connections go round them
  std::string last_worker_;   // the worker chosen last: ties among workers go to another
};

}  // namespace framex::detail
