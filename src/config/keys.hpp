// The table of configuration keys: one row per key with its name, its type,
// how it is set from text and shown, one line of documentation, and whether
// it is secret. Parsing (TOML, FRAMEX_* variables, flags), --print-config and
// the README's configuration table all come from it.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "framex/config.hpp"

namespace framex::detail {

enum class kind { text, integer, list, boolean, rules, amounts };

struct key_info {
  const char* name;
  kind type;
  // Applies text already known to be of `type`; throws std::invalid_argument with a reason.
  void (*set)(config&, std::string_view);
  // The value as --print-config shows it (a secret: its source only).
  std::string (*get)(const config&);
  const char* doc;      // one line, for the README's table
  bool secret = false;  // shown by its source only (file:, env:), never its value
};

/// "123" as a size; throws std::invalid_argument.
[[nodiscard]] std::size_t to_size(std::string_view text);
/// "a,b,c" from a list.
[[nodiscard]] std::string join(const std::vector<std::string>& items);

/// Every key, in the order --print-config shows them.
[[nodiscard]] std::span<const key_info> config_keys() noexcept;
/// The key named `name`, or null.
[[nodiscard]] const key_info* find_key(std::string_view name) noexcept;
/// True when `s` is the section of some key ("worker" of "worker.listen").
[[nodiscard]] bool is_section(std::string_view s) noexcept;
/// The README's configuration table, as Markdown: one row per key with its
/// default (as `--print-config` shows it) and its documentation.
[[nodiscard]] std::string reference_table();

}  // namespace framex::detail
