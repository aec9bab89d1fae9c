// Per-job CA, coordinator certificate and token with OpenSSL 3's EVP and X509 APIs.

#include "operator/reconciler/certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <ctime>
#include <memory>

#include "operator/reconciler/children.h"

namespace parallelrun::op::reconciler {
namespace {

using rt::InternalError;
using rt::Status;
using rt::StatusOr;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PKeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

constexpr int kValidityDays = 3650;
constexpr long kClockSkewSeconds = 5 * 60;  // NOLINT(runtime/int): OpenSSL's type

// Drains OpenSSL's error queue into one Status.
Status OpenSslError(const std::string& what) {
  std::string detail;
  while (unsigned long code = ERR_get_error()) {  // NOLINT(runtime/int): OpenSSL's type
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    detail += (detail.empty() ? "" : "; ") + std::string(buf);
  }
  return InternalError(what + ": " + (detail.empty() ? "unknown OpenSSL error" : detail));
}

StatusOr<std::string> RandomHex(int bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes) != 1) {
    return OpenSslError("RAND_bytes");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += kHex[c >> 4];
    hex += kHex[c & 0xf];
  }
  return hex;
}

StatusOr<PKeyPtr> NewP256Key() {
  PKeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("EC P-256 key generation");
  return key;
}

// A random positive 127-bit serial number (RFC 5280 allows up to 20 octets).
Status SetRandomSerial(X509* cert) {
  BnPtr serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslError("certificate serial number");
  }
  return Status::Ok();
}

Status SetValidity(X509* cert, rt::SystemTime now) {
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  if (X509_time_adj_ex(X509_getm_notBefore(cert), 0, -kClockSkewSeconds, &t) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert), kValidityDays, 0, &t) == nullptr) {
    return OpenSslError("certificate validity");
  }
  return Status::Ok();
}

StatusOr<NamePtr> CommonName(const std::string& cn) {
  NamePtr name(X509_NAME_new());
  if (!name || X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                          reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                          -1, 0) != 1) {
    return OpenSslError("certificate name " + cn);
  }
  return name;
}

// Adds one extension in openssl.cnf syntax ("critical,CA:TRUE"); `issuer` is the signing
// certificate (for authorityKeyIdentifier), `subject` the one being built.
Status AddExtension(X509* issuer, X509* subject, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, subject, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(subject, ext.get(), -1) != 1) {
    return OpenSslError(std::string("certificate extension ") + OBJ_nid2sn(nid) + "=" + value);
  }
  return Status::Ok();
}

// A certificate with everything but extensions and signature.
StatusOr<X509Ptr> NewCertificate(const std::string& subject_cn, const X509_NAME* issuer_name,
                                 EVP_PKEY* key, rt::SystemTime now) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return OpenSslError("new certificate");
  }
  PR_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  PR_RETURN_IF_ERROR(SetValidity(cert.get(), now));
  PR_ASSIGN_OR_RETURN(NamePtr subject, CommonName(subject_cn));
  if (X509_set_subject_name(cert.get(), subject.get()) != 1 ||
      X509_set_issuer_name(cert.get(), issuer_name != nullptr ? issuer_name : subject.get()) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return OpenSslError("certificate " + subject_cn);
  }
  return cert;
}

Status Sign(X509* cert, EVP_PKEY* issuer_key) {
  if (X509_sign(cert, issuer_key, EVP_sha256()) == 0) return OpenSslError("signing a certificate");
  return Status::Ok();
}

StatusOr<std::string> BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int): OpenSSL's type
  if (size < 0 || (size > 0 && data == nullptr)) return OpenSslError("reading a memory BIO");
  return std::string(data, static_cast<size_t>(size));
}

StatusOr<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("certificate PEM");
  return BioText(bio.get());
}

StatusOr<std::string> PrivateKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("private key PEM");
  }
  return BioText(bio.get());
}

struct CertificateAndKey {
  X509Ptr cert;
  PKeyPtr key;
};

StatusOr<CertificateAndKey> MakeCa(const std::string& job_name, rt::SystemTime now) {
  PR_ASSIGN_OR_RETURN(PKeyPtr key, NewP256Key());
  // A common name holds at most 64 characters: job names have at most 32.
  PR_ASSIGN_OR_RETURN(X509Ptr cert,
                      NewCertificate("parallelrun CA " + job_name, nullptr, key.get(), now));
  X509* c = cert.get();
  PR_RETURN_IF_ERROR(AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  PR_RETURN_IF_ERROR(AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign"));
  PR_RETURN_IF_ERROR(AddExtension(c, c, NID_subject_key_identifier, "hash"));
  PR_RETURN_IF_ERROR(Sign(c, key.get()));
  return CertificateAndKey{std::move(cert), std::move(key)};
}

StatusOr<CertificateAndKey> MakeServerCertificate(const std::vector<std::string>& dns_names,
                                                  const CertificateAndKey& ca, rt::SystemTime now) {
  PR_ASSIGN_OR_RETURN(PKeyPtr key, NewP256Key());
  // The shortest name as the common name, which holds at most 64 characters.
  const std::string& cn = dns_names.front();
  PR_ASSIGN_OR_RETURN(X509Ptr cert,
                      NewCertificate(cn, X509_get_subject_name(ca.cert.get()), key.get(), now));
  X509* c = cert.get();
  X509* issuer = ca.cert.get();
  std::string san;
  for (const std::string& name : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + name;
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_basic_constraints, "critical,CA:FALSE"));
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_key_usage, "critical,digitalSignature"));
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_ext_key_usage, "serverAuth"));
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_subject_alt_name, san));
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_subject_key_identifier, "hash"));
  PR_RETURN_IF_ERROR(AddExtension(issuer, c, NID_authority_key_identifier, "keyid:always"));
  PR_RETURN_IF_ERROR(Sign(c, ca.key.get()));
  return CertificateAndKey{std::move(cert), std::move(key)};
}

}  // namespace

std::vector<std::string> CoordinatorDnsNames(const std::string& job_name, const std::string& ns) {
  const std::string service = ServiceName(job_name);
  return {service, service + "." + ns, service + "." + ns + ".svc",
          service + "." + ns + ".svc.cluster.local"};
}

StatusOr<JobCredentials> GenerateJobCredentials(const std::string& job_name, const std::string& ns,
                                                rt::SystemTime now) {
  ERR_clear_error();  // errors reported below are ours, not a previous caller's
  JobCredentials out;
  PR_ASSIGN_OR_RETURN(out.token, RandomHex(32));
  PR_ASSIGN_OR_RETURN(CertificateAndKey ca, MakeCa(job_name, now));
  PR_ASSIGN_OR_RETURN(CertificateAndKey server,
                      MakeServerCertificate(CoordinatorDnsNames(job_name, ns), ca, now));
  PR_ASSIGN_OR_RETURN(out.ca_crt, CertificatePem(ca.cert.get()));
  PR_ASSIGN_OR_RETURN(out.tls_crt, CertificatePem(server.cert.get()));
  PR_ASSIGN_OR_RETURN(out.tls_key, PrivateKeyPem(server.key.get()));
  return out;
}

}  // namespace parallelrun::op::reconciler
