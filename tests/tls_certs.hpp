// Certificates for the TLS tests and the benchmark, made with OpenSSL in a
// temporary directory that goes away with the object: a CA, and certificates
// it (or another CA) issues, valid now or expired, for the names asked.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace framex::test {

class pki {
 public:
  enum class key_type { ec_p256, rsa_2048 };
  struct files {
    std::string cert;
    std::string key;
  };

  /// A CA named `name`, its certificate in `ca_file()`.
  explicit pki(const std::string& name = "framex test CA", key_type type = key_type::ec_p256) : type_(type) {
    char pattern[] = "/tmp/framex-pki-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    ca_key_ = make_key();
    ca_ = make_cert(name, "", ca_key_.get(), nullptr, nullptr, -3600, 30 * 86400, true);
    ca_file_ = write_cert(ca_.get(), "ca.pem");
  }
  ~pki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  pki(const pki&) = delete;
  pki& operator=(const pki&) = delete;

  [[nodiscard]] const std::string& ca_file() const noexcept { return ca_file_; }

  /// A certificate for `alt_names` ("IP:127.0.0.1,DNS:localhost"), for a
  /// server and a client alike, valid from `from` to `to` seconds from now.
  files issue(const std::string& name, const std::string& alt_names, long from = -3600, long to = 86400) {
    auto key = make_key();
    auto cert = make_cert(name, alt_names, key.get(), ca_.get(), ca_key_.get(), from, to, false);
    return {write_cert(cert.get(), name + ".pem"), write_key(key.get(), name + ".key")};
  }

  /// One that expired an hour ago.
  files issue_expired(const std::string& name, const std::string& alt_names) { return issue(name, alt_names, -86400, -3600); }

 private:
  using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
  using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

  key_ptr make_key() const {
    EVP_PKEY* k = type_ == key_type::rsa_2048 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    if (k == nullptr) throw std::runtime_error("key generation failed");
    return {k, EVP_PKEY_free};
  }

  cert_ptr make_cert(const std::string& name, const std::string& alt_names, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
                     long from, long to, bool ca) {
    cert_ptr x(X509_new(), X509_free);
    X509_set_version(x.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(x.get()), from);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), to);
    X509_set_pubkey(x.get(), key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), X509_get_subject_name(issuer != nullptr ? issuer : x.get()));
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
    const auto add = [&](int nid, const std::string& value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      if (e == nullptr) throw std::runtime_error("bad certificate extension " + value);
      X509_add_ext(x.get(), e, -1);
      X509_EXTENSION_free(e);
    };
    add(NID_subject_key_identifier, "hash");
    if (ca) {
      add(NID_basic_constraints, "critical,CA:TRUE");
      add(NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add(NID_basic_constraints, "CA:FALSE");
      add(NID_authority_key_identifier, "keyid");
      add(NID_ext_key_usage, "serverAuth,clientAuth");
      if (!alt_names.empty()) add(NID_subject_alt_name, alt_names);
    }
    if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
      throw std::runtime_error("signing failed");
    }
    return x;
  }

  std::string write_cert(X509* x, const std::string& name) const {
    const auto path = (dir_ / name).string();
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr || PEM_write_X509(f, x) != 1) throw std::runtime_error("cannot write " + path);
    std::fclose(f);
    return path;
  }

  std::string write_key(EVP_PKEY* k, const std::string& name) const {
    const auto path = (dir_ / name).string();
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr || PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
      throw std::runtime_error("cannot write " + path);
    }
    std::fclose(f);
    return path;
  }

  key_type type_;
  std::filesystem::path dir_;
  key_ptr ca_key_{nullptr, EVP_PKEY_free};
  cert_ptr ca_{nullptr, X509_free};
  std::string ca_file_;
  long serial_ = 0;
};

}  // namespace framex::test
