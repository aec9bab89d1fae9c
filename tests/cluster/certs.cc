#include "tests/cluster/certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <memory>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Deleter>;

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string KeyPem(EVP_PKEY* key) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return BioString(bio.get());
}

std::string CertPem(X509* cert) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return BioString(bio.get());
}

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext != nullptr) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

Ptr<X509> MakeCert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca) {
  Ptr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  std::string serial = RandomHex(8);
  BIGNUM* bn = nullptr;
  BN_hex2bn(&bn, serial.c_str());
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509* iss = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(iss));
  if (ca) {
    AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    AddExt(cert.get(), iss, NID_subject_key_identifier, "hash");
  } else {
    AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    AddExt(cert.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    AddExt(cert.get(), iss, NID_ext_key_usage, "serverAuth");
    AddExt(cert.get(), iss, NID_subject_alt_name,
           "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
           "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local");
    AddExt(cert.get(), iss, NID_authority_key_identifier, "keyid:always");
  }
  X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256());
  return cert;
}

}  // namespace

bool EnsureCertificates(const std::string& dir, std::string* error) {
  namespace fs = std::filesystem;
  if (fs::exists(dir + "/ca.crt") && fs::exists(dir + "/server.crt") &&
      fs::exists(dir + "/server.key")) {
    return true;
  }
  Ptr<EVP_PKEY> ca_key(EVP_EC_gen("P-256"));
  Ptr<EVP_PKEY> server_key(EVP_EC_gen("P-256"));
  if (!ca_key || !server_key) {
    *error = "cannot generate EC keys with OpenSSL";
    return false;
  }
  Ptr<X509> ca = MakeCert(ca_key.get(), "testcluster-ca", nullptr, nullptr, true);
  Ptr<X509> server =
      MakeCert(server_key.get(), "testcluster-apiserver", ca.get(), ca_key.get(), false);
  if (!WriteFileAtomic(dir + "/ca.key", KeyPem(ca_key.get()), 0600) ||
      !WriteFileAtomic(dir + "/ca.crt", CertPem(ca.get())) ||
      !WriteFileAtomic(dir + "/server.key", KeyPem(server_key.get()), 0600) ||
      !WriteFileAtomic(dir + "/server.crt", CertPem(server.get()) + CertPem(ca.get()))) {
    *error = "cannot write certificates into " + dir;
    return false;
  }
  return true;
}

}  // namespace parallelrun::rt::cluster
