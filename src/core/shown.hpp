// A name a peer sent, as an error message or a log line shows it: whole when
// short, else its first bytes and its length, so a 1 MiB method name costs a
// reply of a few dozen bytes and not another megabyte.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace framex::detail {

inline constexpr std::size_t shown_bytes = 64;

/// `name`, or its first `shown_bytes` bytes (cut at a UTF-8 character's
/// start), then "... (N bytes)".
inline std::string shown(std::string_view name) {
  if (name.size() <= shown_bytes) return std::string(name);
  std::size_t cut = shown_bytes;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;  // not inside a character
  std::string out(name.substr(0, cut));
  out += "... (";
  out += std::to_string(name.size());
  out += " bytes)";
  return out;
}

}  // namespace framex::detail
