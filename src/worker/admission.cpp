#include "worker/admission.hpp"

namespace framex::detail {

namespace {
// Whether `total + more` takes a budget past three quarters, where fairness begins.
bool crowded(std::size_t budget, std::size_t total, std::size_t more) noexcept {
  return budget != 0 && total + more > budget - budget / 4;
}
}  // namespace

admission::verdict admission::check(peer_id peer, std::size_t connection_calls, std::size_t cost) const noexcept {
  if (stopping_) return verdict::stopping;
  if (draining_) return verdict::draining;
  if (limits_.max_calls != 0 && held_ >= limits_.max_calls) return verdict::worker_full;
  if (limits_.max_calls_per_connection != 0 && connection_calls >= limits_.max_calls_per_connection)
    return verdict::connection_full;
  if (limits_.max_held_bytes != 0 && held_bytes_ + cost > limits_.max_held_bytes) return verdict::bytes_full;
  const auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.calls == 0) return verdict::admit;  // a peer holding nothing may have one call
  const held_by& mine = it->second;
  const std::size_t sharing = holding_ + 1;  // the peers holding calls, and room for one more
  if (crowded(limits_.max_calls, held_, 1) && mine.calls + 1 > limits_.max_calls / sharing) return verdict::peer_full;
  if (crowded(limits_.max_held_bytes, held_bytes_, cost) && mine.bytes + cost > limits_.max_held_bytes / sharing)
    return verdict::peer_bytes_full;
  return verdict::admit;
}

void admission::admitted(peer_id peer, std::size_t cost) {
  auto& mine = peers_[peer];
  if (mine.calls++ == 0) ++holding_;
  mine.bytes += cost;
  ++held_;
  held_bytes_ += cost;
}

void admission::finished(peer_id peer, std::size_t cost) noexcept {
  --held_;
  held_bytes_ -= cost;
  const auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  it->second.bytes -= cost;
  if (--it->second.calls != 0) return;
  --holding_;
  // A peer that calls again soon finds its entry (no allocation per call);
  // many peers that have gone are forgotten.
  if (peers_.size() > remembered_peers) peers_.erase(it);
}

std::string admission::why(verdict v) const {
  switch (v) {
    case verdict::admit:
      return {};
    case verdict::stopping:
      return "the worker is shutting down";
    case verdict::draining:
      return "the worker is draining: call another";
    case verdict::worker_full:
      return "the worker holds " + std::to_string(limits_.max_calls) + " calls already";
    case verdict::connection_full:
      return "this connection has " + std::to_string(limits_.max_calls_per_connection) + " calls in the worker already";
    case verdict::bytes_full:
      return "the worker holds too many bytes of requests already";
    case verdict::peer_full:
      return "this caller holds its share of the worker's " + std::to_string(limits_.max_calls) +
             " calls while others call too";
    case verdict::peer_bytes_full:
      return "this caller's requests hold their share of the worker's " + std::to_string(limits_.max_held_bytes) +
             " bytes while others call too";
  }
  return {};
}

}  // namespace framex::detail
