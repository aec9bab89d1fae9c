// The Kubernetes client over HTTPS (cpprestsdk; its headers stay in http_client.cc).
//
// Guarantees:
// - Every call returns a Status; no exception leaves the client (cpprestsdk, pplx, OpenSSL and
//   JSON errors are mapped as client.h says, with the server's metav1.Status message).
// - The server is verified against RestConfig::ca_pem alone when it is set (the system's CAs
//   when it is empty, nothing with insecure_skip_tls_verify); client certificates and bearer
//   tokens are sent as configured. A token file is re-read whenever it changes (rotated
//   service-account tokens). Connections are kept alive and reused.
// - Plain requests time out after `request_timeout` (kDeadlineExceeded). A watch waits at most
//   `request_timeout` for the response headers; after that only silence longer than the watch's
//   own timeoutSeconds (plus a margin) counts as a broken connection, so an idle watch is not an
//   error: the server ends it and Next() returns nullopt.
// - Watch events are read as they arrive (one JSON object per line, in any chunking), never by
//   buffering the whole response. Cancel() from another thread makes a blocked Next() return
//   nullopt at once and closes the connection.
// - Thread-safe; with qps > 0 requests from all threads share one token bucket.
// Caveats: HTTP/1.1 only; no proxies; apply patches are sent as JSON (valid YAML) with
// fieldManager=parallelrun-operator and force=true.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "operator/kube/client.h"
#include "operator/kube/config.h"

namespace parallelrun::op::kube {

// The field manager of server-side apply patches.
inline constexpr char kFieldManager[] = "parallelrun-operator";

struct HttpClientOptions {
  std::string user_agent;  // "" = "parallelrun-operator/<version>"
  std::chrono::seconds request_timeout{30};
  // Client-side rate limit (token bucket): qps 0 = none; burst 0 = max(1, qps).
  double qps = 0;
  int burst = 0;
};

// Checks what MakeHttpClient needs from a config (server URL, PEM data that parses, a readable
// token file), so a command can refuse to start with a clear message.
Status CheckRestConfig(const RestConfig& config);

// Never null. When CheckRestConfig fails, every call of the returned client returns that error.
std::unique_ptr<Client> MakeHttpClient(const RestConfig& config,
                                       const HttpClientOptions& options = {});

}  // namespace parallelrun::op::kube
