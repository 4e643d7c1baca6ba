// Who may call a worker: the shared-token hello and the `serve` list.
//
// The hello, when both sides hold a token (see the README's "Wire" section):
//
//   caller → [0, id, framex.challenge, [caller_nonce]]            32 random bytes
//   worker → [1, id, nil, {"nonce": worker_nonce}]                32 random bytes
//   caller → [0, id, framex.hello, [protocol, functions, max_message_size,
//                                     {"proof": HMAC(token, "framex-hello-v1 caller" ‖ worker_nonce ‖ caller_nonce)}]]
//   worker → [1, id, nil, {..., "proof": HMAC(token, "framex-hello-v1 worker" ‖ caller_nonce ‖ worker_nonce)}]
//
// HMAC is HMAC-SHA256. The token never crosses the wire; each side proves it
// holds it over nonces the other chose for this connection, so a recorded
// hello proves nothing on another connection, and a caller knows its worker
// holds the token too. Proofs are compared in constant time.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "net/tls.hpp"
#include "framex/config.hpp"

namespace framex::detail {

using nonce = std::array<unsigned char, 32>;
using proof = std::array<unsigned char, 32>;

/// The token in `path` (surrounding white space removed). Throws
/// `config_error` naming `key` and the file, never the token.
std::string read_token_file(const std::string& path, std::string_view key);

/// 32 bytes from the operating system's generator.
nonce random_nonce();

/// What the caller proves with: HMAC(token, "framex-hello-v1 caller" ‖ worker ‖ caller).
proof caller_proof(std::string_view token, const nonce& worker, const nonce& caller);
/// What the worker proves with: HMAC(token, "framex-hello-v1 worker" ‖ caller ‖ worker).
proof worker_proof(std::string_view token, const nonce& caller, const nonce& worker);

/// True when `bytes` equals `expected`, in time independent of where they differ.
bool proof_matches(std::string_view bytes, const proof& expected) noexcept;

/// True when `name` matches one of `patterns` ("name", or "prefix*"); an empty
/// list serves everything.
bool serves(const std::vector<std::string>& patterns, std::string_view name) noexcept;

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(std::string_view host);

/// A key as configured: itself, `file:PATH` or `env:NAME`, resolved. Throws
/// `config_error` naming `where`, never the key.
std::string resolve_key(const std::string& spec, std::string_view where);

/// The TLS context of `side` from `section`'s settings (`section.tls`, ...),
/// or null when TLS is off. Throws `config_error` naming the key and the file.
std::shared_ptr<net::tls_context> tls_context_for(const tls_settings& settings, net::tls_context::role side,
                                                  std::string_view section);

/// The HTTP ingress's key rules (`[auth]`), keys resolved.
class http_guard {
 public:
  explicit http_guard(const std::map<std::string, std::vector<std::string>>& rules, const std::string& dashboard_key);

  /// The keys `path` needs (an exact rule, else the longest wildcard), or
  /// null when it is public.
  [[nodiscard]] const std::vector<std::string>* rule_for(std::string_view path) const;
  /// The dashboard's key, or null when it has none.
  [[nodiscard]] const std::vector<std::string>* dashboard() const { return dashboard_.empty() ? nullptr : &dashboard_; }

  /// True when `authorization` (`Bearer KEY`, `Basic base64(user:KEY)` or
  /// `KEY`) carries one of `keys`. Every key is compared, each in constant time.
  static bool admits(std::string_view authorization, const std::vector<std::string>& keys);

 private:
  std::map<std::string, std::vector<std::string>, std::less<>> exact_;
  std::vector<std::pair<std::string, std::vector<std::string>>> prefixes_;  // longest first
  std::vector<std::string> dashboard_;
};

}  // namespace framex::detail
