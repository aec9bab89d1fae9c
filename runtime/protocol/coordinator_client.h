// The agent's view of the coordinator (a seam: HTTP in production, a fake in agent tests).
#pragma once

#include <memory>
#include <string>

#include "runtime/base/status.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt::protocol {

// Thread-safe. Transient failures (connection refused, timeout, TLS failure, 429, 5xx) come back
// as Unavailable; 401/403 as Unauthenticated; 400 as InvalidArgument with the server's reason; 404
// as NotFound; 409 (every result of a Report refused by fencing) as Aborted; a response that is
// not the expected JSON as Internal.
class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual StatusOr<RegisterResponse> Register(const RegisterRequest& req) = 0;
  virtual StatusOr<LeaseResponse> Lease(const LeaseRequest& req) = 0;
  virtual StatusOr<ResultsResponse> Report(const ResultsRequest& req) = 0;
  virtual StatusOr<Progress> GetProgress() = 0;
};

struct HttpClientOptions {
  std::string base_url;  // http://127.0.0.1:PORT or https://...
  std::string token;     // bearer token
  std::string ca_file;   // verify the server certificate with this CA (https)
  int timeout_seconds = 30;
};

// One keep-alive connection pool shared by all calls. A base_url that is not a URL or a ca_file
// that cannot be loaded gives a client whose every call fails with InvalidArgument saying so.
std::unique_ptr<CoordinatorClient> MakeHttpCoordinatorClient(const HttpClientOptions& options);

}  // namespace parallelrun::rt::protocol
