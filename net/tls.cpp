#include "tls.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

namespace framex::net {

namespace ssl = boost::asio::ssl;

// The last resumable session a client was given, per address.
struct tls_session_store {
  std::mutex mutex;
  std::map<std::string, SSL_SESSION*, std::less<>> kept;

  ~tls_session_store() { clear(); }
  void clear() {
    std::lock_guard lock(mutex);
    for (auto& [key, s] : kept) SSL_SESSION_free(s);
    kept.clear();
  }
};

namespace {

// What a client connection's SSL carries for the new-session callback.
struct session_tag {
  tls_session_store* store;
  std::string key;
};

int session_tag_index() {
  static const int index = SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr, [](void*, void* tag, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<session_tag*>(tag);
      });
  return index;
}

// The server issued a session (after the handshake, in TLS 1.3): keep it for
// the next connection to the same address.
int keep_session(SSL* ssl, SSL_SESSION* session) {
  auto* tag = static_cast<session_tag*>(SSL_get_ex_data(ssl, session_tag_index()));
  if (tag == nullptr || SSL_SESSION_is_resumable(session) == 0) return 0;
  // A copy: OpenSSL marks the connection's own session unusable when the
  // connection ends without a TLS shutdown, as framex's connections do.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return 0;
  std::lock_guard lock(tag->store->mutex);
  auto [it, fresh] = tag->store->kept.try_emplace(tag->key, copy);
  if (!fresh) {
    SSL_SESSION_free(it->second);
    it->second = copy;
  }
  return 0;  // the connection keeps its own reference
}

// OpenSSL's reasons for the last failures, oldest first; the queue is emptied.
std::string openssl_reasons() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown reason" : out;
}

bool is_ip_address(const std::string& host) {
  unsigned char bytes[16];
  return ::inet_pton(AF_INET, host.c_str(), bytes) == 1 || ::inet_pton(AF_INET6, host.c_str(), bytes) == 1;
}

constexpr int not_tls_code = -1;  // X509_V_ERR_* are not negative
constexpr int cut_code = -2;

class category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "framex.tls"; }
  [[nodiscard]] std::string message(int code) const override {
    if (code == not_tls_code) return "the peer does not speak TLS (its first bytes are not a TLS handshake)";
    if (code == cut_code) return "the peer closed the connection during the TLS handshake";
    return X509_verify_cert_error_string(code);
  }
};

}  // namespace

tls_context::tls_context(role side, const tls_files& files, std::string_view what)
    : side_(side),
      context_(std::make_unique<ssl::context>(side == role::client ? ssl::context::tls_client : ssl::context::tls_server)),
      sessions_(std::make_unique<tls_session_store>()) {
  const std::string section(what);
  const auto fail = [&](const std::string& key, const std::string& file) {
    throw std::runtime_error(section + "." + key + ": cannot use " + file + ": " + openssl_reasons());
  };
  SSL_CTX* ctx = context_->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2 with forward secrecy and AEAD only (TLS 1.3's suites are all AEAD).
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
  // An idle connection gives its record buffers back: a worker holds many.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

  if (side == role::server && (files.cert_file.empty() || files.key_file.empty())) {
    throw std::runtime_error(section + ".tls needs " + section + ".cert_file and " + section + ".key_file");
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    throw std::runtime_error(section + ".cert_file and " + section + ".key_file go together");
  }
  if (!files.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_file.c_str()) != 1) fail("cert_file", files.cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) fail("key_file", files.key_file);
    if (SSL_CTX_check_private_key(ctx) != 1) fail("key_file", files.key_file + " (it is not the certificate's key)");
  }
  if (!files.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, files.ca_file.c_str(), nullptr) != 1) fail("ca_file", files.ca_file);
  } else if (side == role::client) {
    SSL_CTX_set_default_verify_paths(ctx);
  }

  if (side == role::client) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, keep_session);
    return;
  }
  if (files.require_peer_cert) {
    if (files.ca_file.empty()) {
      throw std::runtime_error(section + ".require_client_cert needs " + section + ".ca_file, the CA client certificates chain to");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca_file.c_str())) SSL_CTX_set_client_CA_list(ctx, names);
  }
  // Resumed sessions must be recognised as this server's (required once
  // client certificates are verified), and the session cache is bounded.
  static constexpr unsigned char id_context[] = "framex";
  SSL_CTX_set_session_id_context(ctx, id_context, sizeof id_context - 1);
  SSL_CTX_sess_set_cache_size(ctx, 4096);
  SSL_CTX_set_num_tickets(ctx, 1);  // a caller keeps one session per address
}

tls_context::~tls_context() = default;

void tls_context::prepare_client(ssl_st* ssl, const std::string& host, const std::string& session_key) {
  if (is_ip_address(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set1_host(ssl, host.c_str());
    SSL_set_tlsext_host_name(ssl, host.c_str());
  }
  SSL_set_ex_data(ssl, session_tag_index(), new session_tag{sessions_.get(), session_key});
  std::lock_guard lock(sessions_->mutex);
  if (const auto it = sessions_->kept.find(session_key); it != sessions_->kept.end()) SSL_set_session(ssl, it->second);
}

void tls_context::forget_sessions() { sessions_->clear(); }

tls_engine::tls_engine(tls_context& context, const std::string& host, const std::string& session_key)
    : ssl_(SSL_new(context.native().native_handle())), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_mem_eof_return(in_, -1);  // empty: wait for more, not the end
  SSL_set_bio(ssl_, in_, out_);
  if (context.side() == tls_context::role::client) {
    context.prepare_client(ssl_, host, session_key);
    SSL_set_connect_state(ssl_);
  } else {
    SSL_set_accept_state(ssl_);
  }
}

tls_engine::~tls_engine() { SSL_free(ssl_); }

namespace {

// OpenSSL's reason for the failure of the last call on `ssl`, as Asio names
// TLS errors (so both read alike).
std::error_code failure_of(ssl_st* ssl, int result) {
  const int code = SSL_get_error(ssl, result);
  if (code == SSL_ERROR_SSL) {
    if (const unsigned long e = ERR_get_error()) {
      ERR_clear_error();
      return boost::system::error_code(static_cast<int>(e), boost::asio::error::get_ssl_category());
    }
  }
  ERR_clear_error();
  return handshake_cut();  // with memory BIOs, the only other way to fail: nothing more will come
}

}  // namespace

tls_engine::progress tls_engine::handshake(const char* in, std::size_t n, detail::message_buffer& out, std::error_code& why) {
  std::lock_guard lock(mutex_);
  if (n != 0) BIO_write(in_, in, static_cast<int>(n));
  ERR_clear_error();
  const int result = SSL_do_handshake(ssl_);
  drain(out);
  if (result == 1) return progress::done;
  if (SSL_get_error(ssl_, result) == SSL_ERROR_WANT_READ) return progress::wants_input;
  why = verify_failure(ssl_);  // a certificate this side refused says why
  if (!why) why = failure_of(ssl_, result);
  return progress::failed;
}

bool tls_engine::resumed() const {
  std::lock_guard lock(mutex_);
  return SSL_session_reused(ssl_) == 1;
}

void tls_engine::encrypt(const char* plain, std::size_t n, detail::message_buffer& out) {
  std::lock_guard lock(mutex_);
  constexpr std::size_t step = std::size_t{1} << 30;
  for (std::size_t done = 0; done < n;) {
    const int chunk = static_cast<int>(std::min(step, n - done));
    ERR_clear_error();
    if (SSL_write(ssl_, plain + done, chunk) <= 0) break;  // only after a failure, when nothing more is read either
    done += static_cast<std::size_t>(chunk);
  }
  drain(out);
}

void tls_engine::feed(const char* in, std::size_t n) {
  std::lock_guard lock(mutex_);
  BIO_write(in_, in, static_cast<int>(n));
}

long tls_engine::decrypt(char* room, std::size_t capacity, std::error_code& why) {
  std::lock_guard lock(mutex_);
  ERR_clear_error();
  const int result = SSL_read(ssl_, room, static_cast<int>(std::min<std::size_t>(capacity, INT_MAX)));
  if (result > 0) return result;
  switch (SSL_get_error(ssl_, result)) {
    case SSL_ERROR_WANT_READ: return 0;
    case SSL_ERROR_ZERO_RETURN: return -1;
    default: why = failure_of(ssl_, result); return -2;
  }
}

bool tls_engine::take_output(detail::message_buffer& out) {
  std::lock_guard lock(mutex_);
  if (BIO_ctrl_pending(out_) == 0) return false;
  drain(out);
  return true;
}

void tls_engine::drain(detail::message_buffer& out) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(out_, &data);
  if (n <= 0) return;
  out.write(data, static_cast<std::size_t>(n));
  (void)BIO_reset(out_);
}

std::error_code verify_failure(ssl_st* ssl) {
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  return {static_cast<int>(result), tls_category()};
}

std::error_code not_tls() { return {not_tls_code, tls_category()}; }
std::error_code handshake_cut() { return {cut_code, tls_category()}; }
bool is_certificate_refusal(const std::error_code& ec) noexcept { return ec.category() == tls_category() && ec.value() > 0; }

const std::error_category& tls_category() noexcept {
  static const category instance;
  return instance;
}

bool is_tls_error(const std::error_code& ec) noexcept {
  if (!ec) return false;
  const char* name = ec.category().name();
  return ec.category() == tls_category() || std::strcmp(name, "asio.ssl") == 0 ||
         std::strcmp(name, "asio.ssl.stream") == 0;
}

}  // namespace framex::net
