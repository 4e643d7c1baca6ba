// Amounts of named resources (framex/resources.hpp): how they print, and
// whether what a call needs fits in what a worker has free. Used by the
// configuration, the caller's router and the worker.
#pragma once

#include <charconv>
#include <string>

#include "framex/resources.hpp"

namespace framex::detail {

/// `v` in the shortest text that reads back as exactly `v` ("17179869184", "0.5").
inline std::string amount_text(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

/// The amounts of `needs` that `has` lacks, as "gpu = 1, mem = 2"; empty when none.
inline std::string missing(const resource_map& has, const resource_map& needs) {
  std::string out;
  for (const auto& [name, amount] : needs) {
    const auto it = has.find(name);
    if (it == has.end() || it->second + 1e-9 < amount) {
      if (!out.empty()) out += ", ";
      out += name + " = " + amount_text(amount);
    }
  }
  return out;
}

/// True when `needs` fit in what `has` leaves free after `held` (null: nothing held).
inline bool fits(const resource_map& has, const resource_map* held, const resource_map& needs) {
  for (const auto& [name, amount] : needs) {
    const auto it = has.find(name);
    double used = 0;
    if (held != nullptr) {
      if (const auto h = held->find(name); h != held->end()) used = h->second;
    }
    if (it == has.end() || it->second - used + 1e-9 < amount) return false;
  }
  return true;
}

}  // namespace framex::detail
