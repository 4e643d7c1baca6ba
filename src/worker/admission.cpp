#include "worker/admission.hpp"

namespace framex::detail {

admission::verdict admission::check(std::size_t connection_calls, std::size_t cost) const noexcept {
  if (stopping_) return verdict::stopping;
  if (draining_) return verdict::draining;
  if (limits_.max_calls != 0 && held_ >= limits_.max_calls) return verdict::worker_full;
  if (limits_.max_calls_per_connection != 0 && connection_calls >= limits_.max_calls_per_connection)
    return verdict::connection_full;
  if (limits_.max_held_bytes != 0 && held_bytes_ + cost > limits_.max_held_bytes) return verdict::bytes_full;
  return verdict::admit;
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
  }
  return {};
}

}  // namespace framex::detail
