#include "caller/router.hpp"

#include "core/resources.hpp"

namespace framex::detail {

std::size_t router::pick(std::span<const route_candidate> candidates, const resource_map& needs) {
  const std::size_t n = candidates.size();
  if (n == 0) return none;
  const std::size_t first = rotation_++ % n;
  std::size_t best = none;
  const auto better = [&](const route_candidate& c) {
    if (best == none) return true;
    const route_candidate& b = candidates[best];
    if (c.suspect != b.suspect) return !c.suspect;
    if (c.load != b.load) return c.load < b.load;
    return b.worker == last_worker_ && c.worker != last_worker_;  // a tie: prefer another worker than last time
  };
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t at = (first + i) % n;
    const route_candidate& c = candidates[at];
    if (c.retired || c.status != route_candidate::state::ready || c.draining || c.stalled) continue;
    if (!needs.empty() && (c.has == nullptr || !fits(*c.has, c.held, needs))) continue;
    if (better(c)) best = at;
  }
  if (best != none) {
    last_worker_.assign(candidates[best].worker);
    return best;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t at = (first + i) % n;
    const route_candidate& c = candidates[at];
    if (c.retired || c.status != route_candidate::state::connecting) continue;
    if (!needs.empty() && c.has != nullptr && !missing(*c.has, needs).empty()) continue;
    if (best == none || c.load < candidates[best].load) best = at;
  }
  return best;
}

}  // namespace framex::detail
