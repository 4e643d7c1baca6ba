// The registry's compiled-side view: every function, for a worker's hello.
#pragma once

#include <string_view>
#include <vector>

#include "framex/detail/wire.hpp"

namespace framex::detail {

/// The signature recorded for a name two different functions derived.
inline constexpr std::string_view ambiguous_signature = "ambiguous";

/// One entry per name (an ambiguous name's entry has no entry points).
std::vector<const function_entry*> registered_functions();

/// Throws `std::invalid_argument` naming every ambiguous name.
void check_unambiguous();

}  // namespace framex::detail
