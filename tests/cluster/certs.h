#pragma once
// Self-signed CA and serving certificate of the test cluster (ECDSA P-256, 10 years), made with
// OpenSSL at the first `testcluster up` and reused afterwards.

#include <string>

namespace parallelrun::rt::cluster {

// Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key unless they exist. The serving
// certificate has SANs IP 127.0.0.1 and DNS localhost, kubernetes, kubernetes.default,
// kubernetes.default.svc. False with a message on failure.
bool EnsureCertificates(const std::string& dir, std::string* error);

}  // namespace parallelrun::rt::cluster
