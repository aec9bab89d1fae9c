// The operator's plain-HTTP endpoints: Prometheus /metrics and the /healthz and /readyz probes,
// on bind addresses in controller-runtime's notation (--metrics-bind-address,
// --health-probe-bind-address). cpprestsdk stays inside the .cc file.
//
// Guarantees: only GET and HEAD are answered (405 otherwise); a path whose handler is not set is
// 404; /metrics is `text/plain; version=0.0.4; charset=utf-8`; a probe answers 200 "ok" when its
// callback returns true and 500 otherwise (also when it throws). Handlers run on cpprestsdk's
// thread pool, concurrently. Port 0 picks a free port (cpprestsdk cannot report the port it bound,
// so one is picked first and the bind retried on a collision; SPEC §10) and port() tells which.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "operator/manager/metrics.h"
#include "runtime/base/status.h"

namespace parallelrun::op::manager {

struct BindAddress {
  std::string host;  // "0.0.0.0" for all interfaces
  int port = 0;
};

// ":8080" (all interfaces), "127.0.0.5:9000", "[::1]:9000", ":0" (a free port); "0" disables
// the server (nullopt). Anything else is InvalidArgument.
rt::StatusOr<std::optional<BindAddress>> ParseBindAddress(const std::string& address);

struct EndpointHandlers {
  const Registry* metrics = nullptr;  // GET /metrics
  std::function<bool()> healthz;      // GET /healthz
  std::function<bool()> readyz;       // GET /readyz
};

class EndpointServer {
 public:
  virtual ~EndpointServer() = default;
  virtual int port() const = 0;
  // http://host:port, with 127.0.0.1 for an all-interfaces bind (a URL a local client can use).
  virtual std::string url() const = 0;
  virtual void Stop() = 0;  // idempotent; the destructor stops too
};

// Starts serving; nullptr (and ok) when the address is "0". The registry and callbacks must
// outlive the server.
rt::StatusOr<std::unique_ptr<EndpointServer>> ServeEndpoints(const std::string& bind_address,
                                                             EndpointHandlers handlers);

}  // namespace parallelrun::op::manager
