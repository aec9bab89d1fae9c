#pragma once
// Container probes as a real kubelet runs them: startupProbe, livenessProbe and readinessProbe
// with httpGet (HTTP), tcpSocket or exec, honouring initialDelaySeconds, periodSeconds,
// timeoutSeconds, successThreshold and failureThreshold.
//
// A ProbeWorker holds one probe of one container run. Poll() never blocks: a due attempt runs on
// its own thread (std::async) and its outcome is collected by a later Poll(). The caller
// (PodRunner) decides what a result means: startup gates the others, liveness and startup
// failures kill the container, readiness drives the Ready condition.
//
// Not thread-safe: one caller (the kubelet's sync thread) per worker.

#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"

namespace parallelrun::rt::cluster {

struct ProbeSpec {
  enum class Kind { kHttpGet, kTcpSocket, kExec };
  Kind kind = Kind::kTcpSocket;
  std::string host;  // "" = the pod's IP
  int port = 0;
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> command;  // exec
  int initial_delay_seconds = 0;
  int period_seconds = 10;
  int timeout_seconds = 1;
  int success_threshold = 1;
  int failure_threshold = 3;
  std::optional<int64_t> termination_grace_period_seconds;
  std::string error;  // a probe the test cluster cannot run: every attempt fails with this
};

// Parses `probe` (a container's readinessProbe, livenessProbe or startupProbe); named ports are
// looked up in the container's ports. False with `error` naming the field otherwise (HTTPS and
// gRPC probes are not supported by the test cluster).
bool ParseProbe(const Json& probe, const Json& container, ProbeSpec* out, std::string* error);

struct ProbeOutcome {
  bool success = false;
  std::string message;  // why it failed (the kubelet's wording), or the exec output
};

// One attempt of an HTTP GET (200..399 succeeds) or a TCP connect against host:port, blocking up
// to `timeout`.
ProbeOutcome HttpGetOnce(const std::string& host, int port, const std::string& path,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         std::chrono::milliseconds timeout);
ProbeOutcome TcpConnectOnce(const std::string& host, int port, std::chrono::milliseconds timeout);

class ProbeWorker {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  using Attempt = std::function<ProbeOutcome()>;
  enum class Result { kUnknown, kSuccess, kFailure };

  explicit ProbeWorker(ProbeSpec spec) : spec_(std::move(spec)) {}
  // (An attempt in flight is waited for, at most its timeout: std::future of std::async.)

  const ProbeSpec& spec() const { return spec_; }

  // A new run of the container started at `started`: counters and result reset.
  void Reset(SteadyTime started);
  // Collects a finished attempt and starts a due one with `attempt`; returns when it wants the
  // next call. `changed` is set when the result changed.
  SteadyTime Poll(SteadyTime now, const Attempt& attempt, bool* changed);
  Result result() const { return result_; }
  bool Busy() const { return in_flight_.valid(); }  // an attempt is in flight
  // Messages of failed attempts since the last call.
  std::vector<std::string> TakeFailures();

 private:
  ProbeSpec spec_;
  Result result_ = Result::kUnknown;
  int successes_ = 0;
  int failures_ = 0;
  SteadyTime next_attempt_{};
  std::future<ProbeOutcome> in_flight_;
  std::vector<std::string> failures_messages_;
};

}  // namespace parallelrun::rt::cluster
