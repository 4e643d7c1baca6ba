// A call's result or its exception, carried from where the function ran to the
// caller. Unlike `void(std::exception_ptr, T)`, it needs no default-constructible
// T, so move-only and non-default-constructible results work.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "framex/error.hpp"

namespace framex::detail {

template <class R>
class outcome {
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

 public:
  outcome() = default;

  template <class... A>
  void set_value(A&&... a) {
    state_.template emplace<1>(std::forward<A>(a)...);
  }
  void set_error(std::exception_ptr e) noexcept { state_.template emplace<2>(std::move(e)); }
  void set_error(errc e) noexcept { set_error(std::make_exception_ptr(std::system_error(make_error_code(e)))); }

  /// Runs `fn` and keeps what it returns or throws.
  template <class Fn>
  void capture(Fn& fn) noexcept {
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        set_value();
      } else {
        set_value(fn());
      }
    } catch (...) {
      set_error(std::current_exception());
    }
  }

  [[nodiscard]] bool has_error() const noexcept { return state_.index() == 2; }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return std::get<2>(state_); }

  /// The value, or the stored exception rethrown.
  R get() && {
    if (state_.index() == 2) std::rethrow_exception(std::get<2>(state_));
    if constexpr (!std::is_void_v<R>) return std::move(std::get<1>(state_));
  }

 private:
  std::variant<std::monostate, value_type, std::exception_ptr> state_;
};

class stats_cell;
void record(stats_cell& cell, std::int64_t nanoseconds, const std::string* error) noexcept;

/// Counts a finished call in `cell`: its time since `started`, and its error.
template <class R>
void record_outcome(stats_cell& cell, std::chrono::steady_clock::time_point started, const outcome<R>& out) noexcept {
  const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  if (!out.has_error()) return record(cell, elapsed.count(), nullptr);
  std::string message;
  try {
    std::rethrow_exception(out.error());
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "a non-standard exception";
  }
  record(cell, elapsed.count(), &message);
}

}  // namespace framex::detail
