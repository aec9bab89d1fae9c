// Per-job credentials for the coordinator API (SPEC.md §6): a bearer token and a TLS server
// certificate for the coordinator, issued by a CA made for this job alone.
//
// Guarantees: every call makes fresh keys and a fresh token (OpenSSL's RAND_bytes). The CA is a
// self-signed EC P-256 certificate (CA:TRUE, pathlen 0, keyCertSign) valid for 10 years; its
// private key is thrown away, so nobody can issue further certificates under it. The server
// certificate (EC P-256, signed by that CA, serverAuth, digitalSignature) names
// <job>-coordinator, <job>-coordinator.<ns>, <job>-coordinator.<ns>.svc and
// <job>-coordinator.<ns>.svc.cluster.local, so agents that dial the Service name and the operator
// that dials the pod IP (checking the .svc name, like curl --connect-to) both verify it.
// Caveats: OpenSSL failures come back as Internal with OpenSSL's error string.
#pragma once

#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::reconciler {

struct JobCredentials {
  std::string token;    // 64 lower-case hex digits (32 random bytes)
  std::string ca_crt;   // PEM
  std::string tls_crt;  // PEM, the coordinator's certificate
  std::string tls_key;  // PEM (PKCS#8), the coordinator's private key
};

// The DNS names the coordinator's certificate carries, most specific last.
std::vector<std::string> CoordinatorDnsNames(const std::string& job_name, const std::string& ns);

// `now` sets notBefore (less five minutes of clock skew); certificates end 10 years later.
rt::StatusOr<JobCredentials> GenerateJobCredentials(const std::string& job_name,
                                                    const std::string& ns, rt::SystemTime now);

}  // namespace parallelrun::op::reconciler
