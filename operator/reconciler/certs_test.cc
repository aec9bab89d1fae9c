// The per-job credentials checked with OpenSSL's own verifier, as agents (cpprestsdk over
// OpenSSL, --ca-file) and the operator's progress reader check them.

#include "operator/reconciler/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace parallelrun::op::reconciler {
namespace {

using ::testing::ElementsAre;
using ::testing::MatchesRegex;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PKeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

X509Ptr Certificate(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PKeyPtr PrivateKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PKeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// X509_V_OK or the verifier's error, as `openssl verify -CAfile ca -purpose sslserver
// -verify_hostname host` would report it.
int Verify(const std::string& ca_pem, const std::string& cert_pem, const std::string& host,
           rt::SystemTime at = std::chrono::system_clock::now()) {
  X509Ptr ca = Certificate(ca_pem);
  X509Ptr cert = Certificate(cert_pem);
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ca || !cert || !store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return -1;
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  X509_VERIFY_PARAM_set_time(param, std::chrono::system_clock::to_time_t(at));
  X509_verify_cert(ctx.get());
  return X509_STORE_CTX_get_error(ctx.get());
}

std::vector<std::string> DnsNames(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* s = name->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       ASN1_STRING_length(s));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Days from `now` to the certificate's notAfter.
int DaysValid(X509* cert, rt::SystemTime now) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>> from(ASN1_TIME_set(nullptr, t));
  int days = 0, seconds = 0;
  ASN1_TIME_diff(&days, &seconds, from.get(), X509_get0_notAfter(cert));
  return days;
}

class CertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto creds = GenerateJobCredentials("score", "team-a", now_);
    ASSERT_TRUE(creds.ok()) << creds.status().ToString();
    creds_ = *creds;
  }
  const rt::SystemTime now_ = std::chrono::system_clock::now();
  JobCredentials creds_;
};

TEST_F(CertsTest, TokenIs32RandomBytesInHex) {
  EXPECT_THAT(creds_.token, MatchesRegex("[0-9a-f]{64}"));
  auto other = GenerateJobCredentials("score", "team-a", now_);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->token, creds_.token);
  EXPECT_NE(other->ca_crt, creds_.ca_crt);
  EXPECT_NE(other->tls_key, creds_.tls_key);
}

TEST_F(CertsTest, ServerCertificateNamesTheCoordinatorService) {
  X509Ptr cert = Certificate(creds_.tls_crt);
  ASSERT_TRUE(cert);
  EXPECT_THAT(DnsNames(cert.get()), ElementsAre("score-coordinator", "score-coordinator.team-a",
                                                "score-coordinator.team-a.svc",
                                                "score-coordinator.team-a.svc.cluster.local"));
  EXPECT_EQ(CoordinatorDnsNames("score", "team-a"), DnsNames(cert.get()));
}

TEST_F(CertsTest, ChainVerifiesForEveryServiceNameWithTheJobsCa) {
  for (const std::string& host : CoordinatorDnsNames("score", "team-a")) {
    EXPECT_EQ(Verify(creds_.ca_crt, creds_.tls_crt, host), X509_V_OK) << host;
  }
  // Also a year from now: the certificates outlive any job.
  EXPECT_EQ(Verify(creds_.ca_crt, creds_.tls_crt, "score-coordinator.team-a.svc",
                   now_ + std::chrono::hours(24 * 365)),
            X509_V_OK);
}

TEST_F(CertsTest, OtherNamesAndOtherJobsCaAreRejected) {
  EXPECT_EQ(Verify(creds_.ca_crt, creds_.tls_crt, "other-coordinator.team-a.svc"),
            X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(Verify(creds_.ca_crt, creds_.tls_crt, "score-coordinator.team-b.svc"),
            X509_V_ERR_HOSTNAME_MISMATCH);
  auto other = GenerateJobCredentials("score", "team-a", now_);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(Verify(other->ca_crt, creds_.tls_crt, "score-coordinator.team-a.svc"), X509_V_OK);
  // The CA is not a server certificate, and the server certificate cannot sign.
  X509Ptr ca = Certificate(creds_.ca_crt);
  X509Ptr cert = Certificate(creds_.tls_crt);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  EXPECT_TRUE(X509_get_extension_flags(cert.get()) & EXFLAG_XKUSAGE);
  EXPECT_TRUE(X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER);
  EXPECT_TRUE(X509_get_key_usage(cert.get()) & KU_DIGITAL_SIGNATURE);
  EXPECT_FALSE(X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN);
  EXPECT_TRUE(X509_get_key_usage(ca.get()) & KU_KEY_CERT_SIGN);
}

TEST_F(CertsTest, KeyIsP256AndMatchesTheCertificate) {
  X509Ptr cert = Certificate(creds_.tls_crt);
  PKeyPtr key = PrivateKey(creds_.tls_key);
  ASSERT_TRUE(cert);
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
  char group[64] = {};
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &len), 1);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_NE(creds_.tls_key.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
}

TEST_F(CertsTest, ValidForTenYearsFromNowWithClockSkew) {
  for (const std::string* pem : {&creds_.ca_crt, &creds_.tls_crt}) {
    X509Ptr cert = Certificate(*pem);
    ASSERT_TRUE(cert);
    EXPECT_NEAR(DaysValid(cert.get(), now_), 3650, 1);
    // Usable at once by a peer whose clock is a little behind.
    EXPECT_LT(X509_cmp_time(X509_get0_notBefore(cert.get()), nullptr), 0);
  }
  EXPECT_EQ(Verify(creds_.ca_crt, creds_.tls_crt, "score-coordinator.team-a.svc",
                   now_ - std::chrono::minutes(2)),
            X509_V_OK);
}

TEST_F(CertsTest, LongestJobAndNamespaceNamesFit) {
  const std::string job(32, 'j');
  const std::string ns(63, 'n');
  auto creds = GenerateJobCredentials(job, ns, now_);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(Verify(creds->ca_crt, creds->tls_crt, job + "-coordinator." + ns + ".svc"), X509_V_OK);
}

}  // namespace
}  // namespace parallelrun::op::reconciler
