// framex/resources.hpp — what workers have and calls need, for placement.
//
// A worker advertises amounts (`[worker.resources] cpu = 8, gpu = 1,
// "zone:eu" = 1`); a function declares what it needs (`framex::require`), a
// call may ask more (`.with({.resources = {{"zone:eu", 1}}})`). A caller sends
// such a call only to a worker that has every amount free, and fails it at
// once with `errc::no_worker` when no worker has them at all.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace framex {

/// Named amounts: "cpu", "gpu", "memory_gb", or any name ("zone:eu").
using resource_map = std::map<std::string, double>;

/// What a function needs of a worker (see `framex::require`).
struct resources {
  double cpu = 0;
  double gpu = 0;
  double memory_gb = 0;
  resource_map custom{};

  /// The amounts by name; zero amounts left out.
  [[nodiscard]] resource_map to_map() const {
    resource_map m = custom;
    if (cpu > 0) m["cpu"] = cpu;
    if (gpu > 0) m["gpu"] = gpu;
    if (memory_gb > 0) m["memory_gb"] = memory_gb;
    return m;
  }
};

/// What one call needs besides its function's needs (`call_options::resources`),
/// merged with them name by name, the larger amount winning:
/// up to 8 named amounts, `{{"zone:eu", 1}, {"gpu", 1}}`. A literal type, so
/// call options stay constexpr; the names must outlive the call's start
/// (string literals do).
class resource_needs {
 public:
  struct item {
    std::string_view name;
    double amount = 0;
  };
  static constexpr std::size_t capacity = 8;

  constexpr resource_needs() = default;
  constexpr resource_needs(std::initializer_list<item> items) {
    if (items.size() > capacity) throw std::length_error("framex: a call names at most 8 resources");
    for (const auto& i : items) items_[size_++] = i;
  }
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] constexpr const item* begin() const noexcept { return items_.data(); }
  [[nodiscard]] constexpr const item* end() const noexcept { return items_.data() + size_; }

 private:
  std::array<item, capacity> items_{};
  std::size_t size_ = 0;
};

}  // namespace framex
