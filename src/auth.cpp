#include "auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <boost/asio/ip/address.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "framex/config.hpp"

namespace framex::detail {

std::string read_token_file(const std::string& path, std::string_view key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error(std::string(key) + ": cannot read the token file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  const auto first = token.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw config_error(std::string(key) + ": the token file " + path + " is empty");
  token.erase(token.find_last_not_of(" \t\r\n") + 1);
  token.erase(0, first);
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

}  // namespace framex::detail
