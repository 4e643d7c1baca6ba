#include "security/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "framex/config.hpp"

namespace framex::detail {

namespace {

// A file's whole contents, or nothing when it cannot be read.
std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Without the white space around it (a file's final newline).
std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r\n") + 1 - first);
}

}  // namespace

std::string read_token_file(const std::string& path, std::string_view key) {
  const auto text = read_file(path);
  if (!text) throw config_error(std::string(key) + ": cannot read the token file " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IRWXO) != 0) {
    throw config_error(std::string(key) + ": the token file " + path +
                       " may be read or written by any user: chmod o-rwx it (600, or 640 for a group)");
  }
  std::string token = trimmed(*text);
  if (token.empty()) throw config_error(std::string(key) + ": the token file " + path + " is empty");
  if (token.size() < 16) {
    throw config_error(std::string(key) + ": the token in " + path + " is shorter than 16 characters; use a long random one");
  }
  return token;
}

nonce random_nonce() {
  nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) throw std::runtime_error("framex: no random bytes for a nonce");
  return n;
}

namespace {
proof hmac(std::string_view token, std::string_view role, const nonce& first, const nonce& second) {
  std::string message(role);
  message.append(reinterpret_cast<const char*>(first.data()), first.size());
  message.append(reinterpret_cast<const char*>(second.data()), second.size());
  proof out{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), reinterpret_cast<const unsigned char*>(message.data()),
           message.size(), out.data(), &length) == nullptr ||
      length != out.size()) {
    throw std::runtime_error("framex: HMAC-SHA256 failed");
  }
  return out;
}
}  // namespace

proof caller_proof(std::string_view token, const nonce& worker, const nonce& caller) {
  return hmac(token, "framex-hello-v1 caller", worker, caller);
}

proof worker_proof(std::string_view token, const nonce& caller, const nonce& worker) {
  return hmac(token, "framex-hello-v1 worker", caller, worker);
}

bool proof_matches(std::string_view bytes, const proof& expected) noexcept {
  return bytes.size() == expected.size() && CRYPTO_memcmp(bytes.data(), expected.data(), expected.size()) == 0;
}

bool serves(const std::vector<std::string>& patterns, std::string_view name) noexcept {
  if (patterns.empty()) return true;
  for (const auto& p : patterns) {
    if (!p.empty() && p.back() == '*') {
      if (name.starts_with(std::string_view(p).substr(0, p.size() - 1))) return true;
    } else if (name == p) {
      return true;
    }
  }
  return false;
}

bool is_loopback(std::string_view host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

std::string resolve_key(const std::string& spec, std::string_view where) {
  std::string key = spec;
  if (spec.starts_with("file:")) {
    const auto text = read_file(spec.substr(5));
    if (!text) throw config_error(std::string(where) + ": cannot read the key file " + spec.substr(5));
    key = *text;
  } else if (spec.starts_with("env:")) {
    const char* value = std::getenv(spec.substr(4).c_str());
    if (value == nullptr) throw config_error(std::string(where) + ": the variable " + spec.substr(4) + " is not set");
    key = value;
  }
  key = trimmed(key);
  if (key.empty()) throw config_error(std::string(where) + ": an empty key");
  return key;
}

namespace {
// A key a client presents over HTTP: long enough not to be guessed.
std::string http_key(const std::string& spec, const std::string& where) {
  std::string key = resolve_key(spec, where);
  if (key.size() < 16) throw config_error(where + ": a key shorter than 16 characters; use a long random one");
  return key;
}
}  // namespace

http_guard::http_guard(const std::map<std::string, std::vector<std::string>>& rules, const std::string& dashboard_key) {
  for (const auto& [path, specs] : rules) {
    std::vector<std::string> keys;
    for (const auto& spec : specs) keys.push_back(http_key(spec, "auth.rules: " + path));
    if (!path.empty() && path.back() == '*') {
      prefixes_.emplace_back(path.substr(0, path.size() - 1), std::move(keys));
    } else {
      exact_.emplace(path, std::move(keys));
    }
  }
  std::sort(prefixes_.begin(), prefixes_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  if (!dashboard_key.empty()) dashboard_.push_back(http_key(dashboard_key, "auth.dashboard_key"));
}

const std::vector<std::string>* http_guard::rule_for(std::string_view path) const {
  if (const auto it = exact_.find(path); it != exact_.end()) return &it->second;
  for (const auto& [prefix, keys] : prefixes_) {
    if (path.starts_with(prefix)) return &keys;
  }
  return nullptr;
}

namespace {
using digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;
digest sha256(std::string_view s) {
  digest d{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

// Whether `header` begins with `scheme` (any case, RFC 9110) and a space;
// then `header` is what follows the spaces.
bool take_scheme(std::string_view& header, std::string_view scheme) {
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ') return false;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return false;
  }
  header.remove_prefix(scheme.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  return true;
}

// The key an Authorization header carries.
std::string presented_key(std::string_view header) {
  if (take_scheme(header, "bearer")) return std::string(header);
  if (take_scheme(header, "basic")) {
    const std::string_view encoded = header;
    std::string decoded(encoded.size() / 4 * 3 + 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                  reinterpret_cast<const unsigned char*>(encoded.data()), static_cast<int>(encoded.size()));
    if (n < 0) return {};
    decoded.resize(static_cast<std::size_t>(n));
    // EVP_DecodeBlock counts padding as zero bytes.
    for (auto it = encoded.rbegin(); it != encoded.rend() && *it == '=' && !decoded.empty(); ++it) decoded.pop_back();
    const auto colon = decoded.find(':');
    return colon == std::string::npos ? std::string() : decoded.substr(colon + 1);
  }
  return std::string(header);
}
}  // namespace

bool http_guard::admits(std::string_view authorization, const std::vector<std::string>& keys) {
  const std::string key = presented_key(authorization);
  if (key.empty()) return false;
  // Digests have one length whatever the keys', so comparing them tells
  // nothing of a key's length or content.
  const digest presented = sha256(key);
  bool found = false;
  for (const auto& k : keys) found = (CRYPTO_memcmp(sha256(k).data(), presented.data(), presented.size()) == 0) || found;
  return found;
}

std::shared_ptr<net::tls_context> tls_context_for(const tls_settings& settings, net::tls_context::role side,
                                                  std::string_view section) {
  if (!settings.enabled) return nullptr;
  try {
    return std::make_shared<net::tls_context>(
        side, net::tls_files{settings.ca_file, settings.cert_file, settings.key_file, settings.require_client_cert}, section);
  } catch (const std::runtime_error& e) {
    throw config_error(e.what());
  }
}

}  // namespace framex::detail
