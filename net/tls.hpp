// TLS for msgpack-RPC connections and the HTTP ingress: one OpenSSL context
// per side, built from files, and what a failed verification says.
//
// Both sides speak TLS 1.2 or 1.3 only, without compression. A client always
// verifies the server's certificate against its CA file (or the system's
// store) and the host name or IP address it dialled; a server verifies client
// certificates only when it requires them. A client keeps the last session of
// each address it dialled, so a reconnect resumes it instead of repeating the
// full handshake; a server issues session tickets for that.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <system_error>

struct ssl_st;  // OpenSSL's SSL

namespace boost::asio::ssl {
class context;
}

namespace framex::net {

/// Where a side's certificates come from.
struct tls_files {
  /// CA certificates (PEM) that peers' certificates must chain to. Empty: a
  /// client uses the system's store; a server can verify no client.
  std::string ca_file;
  /// This side's certificate chain and private key (PEM). A server needs them;
  /// a client presents them when given (mutual TLS).
  std::string cert_file;
  std::string key_file;
  /// Server: a client must present a certificate that chains to `ca_file`.
  bool require_peer_cert = false;
};

class tls_context {
 public:
  enum class role : unsigned char { client, server };

  /// Loads the files; throws `std::runtime_error` naming `what` (the
  /// settings' section, e.g. "worker"), the file and OpenSSL's reason.
  tls_context(role side, const tls_files& files, std::string_view what);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  [[nodiscard]] role side() const noexcept { return side_; }
  [[nodiscard]] boost::asio::ssl::context& native() noexcept { return *context_; }

  /// Client, before the handshake: verify the certificate against `host` (a
  /// name, also sent as SNI, or an IP address), and resume the session last
  /// kept under `session_key` if there is one; sessions the server issues on
  /// this connection are kept under it.
  void prepare_client(ssl_st* ssl, const std::string& host, const std::string& session_key);

  /// Forgets every kept session (the next handshakes are full ones).
  void forget_sessions();

 private:
  role side_;
  std::unique_ptr<boost::asio::ssl::context> context_;
  std::unique_ptr<struct tls_session_store> sessions_;
};

/// Why certificate verification failed on `ssl`'s side (OpenSSL's
/// X509_V_ERR_* in `tls_category`), or no error.
std::error_code verify_failure(ssl_st* ssl);

/// A peer whose first bytes are not a TLS handshake (a plaintext client).
std::error_code not_tls();

/// What framex's TLS refuses: certificate verification failures, whose
/// message is OpenSSL's description ("certificate has expired", "IP address
/// mismatch", ...), and `not_tls()`.
const std::error_category& tls_category() noexcept;

/// True when `ec` comes from TLS (a handshake or record failure, an alert
/// from the peer, or a failed verification).
bool is_tls_error(const std::error_code& ec) noexcept;

}  // namespace framex::net
