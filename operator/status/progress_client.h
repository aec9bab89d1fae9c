// How the operator reads a coordinator's progress (GET /v1/progress, SPEC.md §6). A seam: HTTPS
// in production (MakeTlsProgressReader), fakes in reconciler tests.
//
// The operator dials the coordinator pod's IP, which cannot be in the certificate (it is made
// before the pod exists). So the TLS reader connects to host:port but sends SNI and checks the
// certificate for `server_name` (J-coordinator.N.svc), trusting only the job's own CA, like
// `curl --connect-to`.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "runtime/base/status.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::op::status {

struct ProgressTarget {
  std::string host;  // the coordinator pod's IP (or a host name)
  int port = 8443;
  std::string server_name;  // the name the certificate must carry: J-coordinator.N.svc
  std::string ca_pem;       // the job's CA (Secret key ca.crt)
  std::string token;        // bearer token (Secret key token)
  std::chrono::milliseconds timeout{5000};  // for the whole exchange
};

// Thread-safe. Errors:
//   Unavailable      cannot connect, TLS or certificate failure ("certificate verification
//                    failed: ..."), timeout, a connection cut short, or a reply other than 200 or
//                    401/403 (with the server's `reason`)
//   Unauthenticated  401/403 (wrong token)
//   InvalidArgument  ca_pem holds no certificate
//   Internal         a 200 reply that is not a Progress object
class ProgressReader {
 public:
  virtual ~ProgressReader() = default;
  virtual rt::StatusOr<rt::protocol::Progress> Read(const ProgressTarget& target) = 0;
};

// One HTTP/1.1 request per Read (Connection: close), Boost.Asio over OpenSSL, TLS 1.2 or later.
// Caveat: a host name (not an IP) is resolved by getaddrinfo, which the deadline cannot cut short.
std::unique_ptr<ProgressReader> MakeTlsProgressReader();

// An HTTP/1.1 response taken apart (exposed for tests).
struct HttpReply {
  int status = 0;
  std::string body;
};
// Parses the bytes received so far: the reply once complete (Content-Length reached, or the last
// chunk of a chunked body), nullopt while more bytes are needed, Unavailable when malformed.
// `at_eof`: the peer closed; a reply without a length ends there, anything incomplete is an error.
rt::StatusOr<std::optional<HttpReply>> ParseHttpReply(const std::string& bytes, bool at_eof);

}  // namespace parallelrun::op::status
