// TLS for msgpack-RPC connections and the HTTP ingress: one OpenSSL context
// per side, built from files, and what a failed verification says.
//
// Both sides speak TLS 1.2 or 1.3 only, without compression. A client always
// verifies the server's certificate against its CA file (or the system's
// store) and the host name or IP address it dialled; a server verifies client
// certificates only when it requires them. A client keeps the last session of
// each address it dialled, so a reconnect resumes it instead of repeating the
// full handshake; a server issues session tickets for that.
//
// A connection's TLS runs over memory (`tls_engine`): the connection moves the
// bytes, so a sender on any thread encrypts and writes at once, as over plain
// TCP, while the connection's strand reads and decrypts.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>

#include "framex/detail/message_buffer.hpp"

struct ssl_st;  // OpenSSL's SSL
struct bio_st;  // OpenSSL's BIO

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

/// One connection's TLS, over memory: what arrives is fed in, what must be
/// sent comes out appended to a buffer. Thread safety: every member locks, so
/// one thread may encrypt while another decrypts.
class tls_engine {
 public:
  /// A client's engine verifies the server against `host` and resumes the
  /// session kept under `session_key` (see `tls_context::prepare_client`).
  tls_engine(tls_context& context, const std::string& host, const std::string& session_key);
  ~tls_engine();
  tls_engine(const tls_engine&) = delete;
  tls_engine& operator=(const tls_engine&) = delete;

  enum class progress : unsigned char { done, wants_input, failed };
  /// Advances the handshake with `n` bytes received (none to begin); appends
  /// what must be sent to `out`, even on failure (an alert). On failure, `why`
  /// names a certificate this side refused, else OpenSSL's reason.
  progress handshake(const char* in, std::size_t n, detail::message_buffer& out, std::error_code& why);
  /// True once the handshake resumed an earlier session.
  [[nodiscard]] bool resumed() const;

  /// Encrypts `n` bytes as records appended to `out`.
  void encrypt(const char* plain, std::size_t n, detail::message_buffer& out);
  /// Takes `n` bytes received.
  void feed(const char* in, std::size_t n);
  /// Decrypts into `room` (at most `capacity` bytes): how many; 0 when more
  /// input is needed; -1 when the peer ended the session (close_notify); -2
  /// on an error, named in `why`.
  long decrypt(char* room, std::size_t capacity, std::error_code& why);
  /// What reading made TLS want to send (an answer to a key update), appended
  /// to `out`; false when there is nothing.
  bool take_output(detail::message_buffer& out);

 private:
  void drain(detail::message_buffer& out);  // under mutex_
  mutable std::mutex mutex_;
  ssl_st* ssl_;
  bio_st* in_;   // owned by ssl_
  bio_st* out_;  // owned by ssl_
};

/// Why certificate verification failed on `ssl`'s side (OpenSSL's
/// X509_V_ERR_* in `tls_category`), or no error.
std::error_code verify_failure(ssl_st* ssl);

/// A peer whose first bytes are not a TLS handshake (a plaintext client).
std::error_code not_tls();
/// A peer that closed the connection during the handshake.
std::error_code handshake_cut();
/// True when `ec` is a certificate this side refused (see `verify_failure`).
bool is_certificate_refusal(const std::error_code& ec) noexcept;

/// What framex's TLS refuses: certificate verification failures, whose
/// message is OpenSSL's description ("certificate has expired", "IP address
/// mismatch", ...), `not_tls()` and `handshake_cut()`.
const std::error_category& tls_category() noexcept;

/// True when `ec` comes from TLS (a handshake or record failure, an alert
/// from the peer, or a failed verification).
bool is_tls_error(const std::error_code& ec) noexcept;

}  // namespace framex::net
