// TLS for the HTTPS client, parsed with OpenSSL from memory: the checks CheckRestConfig makes and
// the cpprestsdk configuration that trusts exactly the configured CA and presents the client
// certificate. Internal to op_kube (http_client.cc).
#pragma once

#include "operator/kube/client.h"
#include "operator/kube/config.h"

namespace web::http::client {
class http_client_config;
}  // namespace web::http::client

namespace parallelrun::op::kube {

// The CA bundle and the client certificate and key of `config` parse, and the key matches the
// certificate; InvalidArgument naming which one otherwise.
Status CheckTlsMaterial(const RestConfig& config);

// Certificate verification (the CA alone when set; none with insecure_skip_tls_verify) and the
// client certificate. Call after CheckTlsMaterial passed.
web::http::client::http_client_config TlsConfig(const RestConfig& config);

}  // namespace parallelrun::op::kube
