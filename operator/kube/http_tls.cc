// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include "operator/kube/http_tls.h"

#include <cpprest/http_client.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl.hpp>
#include <memory>
#include <stdexcept>
#include <vector>

namespace parallelrun::op::kube {
namespace {

using web::http::client::http_client_config;

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Every certificate in a PEM bundle; an error when there is none or one does not parse.
StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& pem, const std::string& what) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  std::vector<X509Ptr> certs;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  unsigned long err = ERR_peek_last_error();
  // Reading past the last certificate ends with "no start line": the normal end of a bundle.
  if (err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE &&
                    !certs.empty())) {
    return rt::InvalidArgumentError(what + ": not a PEM certificate: " + OpenSslError());
  }
  ERR_clear_error();
  if (certs.empty()) return rt::InvalidArgumentError(what + ": no PEM certificate in it");
  return certs;
}

StatusOr<PkeyPtr> ParsePrivateKey(const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return rt::InvalidArgumentError("client key: not a PEM private key: " + OpenSslError());
  return key;
}

// Trust exactly the given CAs: a fresh store replaces the system paths cpprestsdk loaded.
void TrustOnly(boost::asio::ssl::context& ctx, const std::string& ca_pem) {
  auto certs = ParseCertificates(ca_pem, "CA");
  if (!certs.ok()) throw std::runtime_error(certs.status().message());
  X509_STORE* store = X509_STORE_new();
  for (const auto& cert : *certs) X509_STORE_add_cert(store, cert.get());
  SSL_CTX_set_cert_store(ctx.native_handle(), store);  // takes ownership
}

void UseClientCertificate(boost::asio::ssl::context& ctx, const std::string& cert_pem,
                          const std::string& key_pem) {
  ctx.use_certificate_chain(boost::asio::buffer(cert_pem));
  ctx.use_private_key(boost::asio::buffer(key_pem), boost::asio::ssl::context::pem);
}

}  // namespace

Status CheckTlsMaterial(const RestConfig& config) {
  if (!config.ca_pem.empty()) {
    PR_RETURN_IF_ERROR(ParseCertificates(config.ca_pem, "CA").status());
  }
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return rt::InvalidArgumentError("a client certificate needs both the certificate and the key");
  }
  if (!config.client_cert_pem.empty()) {
    PR_ASSIGN_OR_RETURN(auto certs,
                        ParseCertificates(config.client_cert_pem, "client certificate"));
    PR_ASSIGN_OR_RETURN(auto key, ParsePrivateKey(config.client_key_pem));
    if (X509_check_private_key(certs.front().get(), key.get()) != 1) {
      ERR_clear_error();
      return rt::InvalidArgumentError("client key does not match the client certificate");
    }
  }
  return Status::Ok();
}

http_client_config TlsConfig(const RestConfig& config) {
  http_client_config c;
  if (config.insecure_skip_tls_verify) c.set_validate_certificates(false);
  const bool custom_ca = !config.ca_pem.empty() && !config.insecure_skip_tls_verify;
  const bool client_cert = !config.client_cert_pem.empty();
  if (custom_ca || client_cert) {
    c.set_ssl_context_callback([custom_ca, client_cert, ca = config.ca_pem,
                                cert = config.client_cert_pem,
                                key = config.client_key_pem](boost::asio::ssl::context& ctx) {
      if (custom_ca) TrustOnly(ctx, ca);
      if (client_cert) UseClientCertificate(ctx, cert, key);
    });
  }
  return c;
}

}  // namespace parallelrun::op::kube
