// The coordinator as agents and the operator see it, in typed requests and replies
// (runtime/protocol/messages.h), and its HTTP adapter.
//
// CoordinatorService is what the coordinator implements (runtime/coordinator/coordinator.h);
// HandleCoordinatorRequest serves it over HTTP (`parallelrun coordinator`, behind HttpServer), and
// MakeInProcessCoordinatorClient (in_process_client.h) calls it directly, for tests that need no
// HTTP.
//
// Endpoints (the JSON bodies are the messages' to_json/from_json):
//   POST /v1/register  Register
//   POST /v1/lease     Lease
//   POST /v1/results   Report (and Lease, when the request carries `lease`: ReportAndLease)
//   GET  /v1/progress  GetProgress
#pragma once

#include <string>

#include "runtime/base/status.h"
#include "runtime/protocol/http_server.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt::protocol {

// Thread-safe: every method may be called from any thread, concurrently.
// Errors: InvalidArgument for a request that is malformed (a field missing or out of range; the
// message starts with the field's path, e.g. "results[2].attempt: got 0, expected ...", and
// nothing of the request is applied); anything else (e.g. the journal cannot be written) means
// the request may not have been recorded and should be sent again.
class CoordinatorService {
 public:
  virtual ~CoordinatorService() = default;
  virtual StatusOr<RegisterResponse> Register(const RegisterRequest& req) = 0;
  virtual StatusOr<LeaseResponse> Lease(const LeaseRequest& req) = 0;
  // Fencing: results of attempts `req.node` does not hold come back in `refused`.
  virtual StatusOr<ResultsResponse> Report(const ResultsRequest& req) = 0;
  virtual Progress GetProgress() const = 0;
};

// Report, then, when `req.lease` is set, Lease for the report's node: both in one round trip, the
// report recorded (durably) before the lease part is answered in `lease`. A lease part that is
// malformed fails the whole request before anything is applied; one that fails after the report
// was recorded leaves `lease` absent (the agent asks again), so the report's answer is never lost.
StatusOr<ResultsResponse> ReportAndLease(CoordinatorService& service, const ResultsRequest& req);

// Every result of `req` was refused: a conflict (HTTP 409), so that a client that does not read
// `refused` still sees it. Empty when at least one was accepted, or none was refused (no results,
// or a job that ended: the reply says stop), and for a request that carries `lease` (its sender
// reads `refused`, and a 409 would lose the lease answer).
std::string AllRefusedReason(const ResultsRequest& req, const ResultsResponse& resp);

// How many server threads serve a coordinator for `nodes` agents: one per node (an agent makes one
// call at a time, and a report's handler waits for the journal's group commit, holding up its
// thread's other connections) and one for progress readers, from 2 up to 16. Idle threads cost
// nothing: each waits on its own connections. bench/coordinator_scale --many-agents
// --server-threads, 1,000 agents x 8 workers, 300 ms of work, on a 2-core machine: 4 threads gave
// 16,852 and 18,963 completions/s (p99 260 and 199 ms); 16 threads 18,900-19,900 (p99 192-235
// ms); 32 and 64 no more, 64 with 5-20 % more coordinator CPU (p99 228-407 ms).
int CoordinatorServerThreads(int nodes);

// The HTTP adapter: routes the four endpoints (404 for an unknown path, 405 for a wrong method),
// decodes the body (400 with {"error": "body of POST /v1/lease: <what>"} for a body that is not a
// JSON object or has a field of the wrong type, and for the service's InvalidArgument), maps other
// service errors to 500, and answers 409 (the ResultsResponse plus a `reason`) when every result
// of a report was refused.
HttpResponse HandleCoordinatorRequest(CoordinatorService& service, const HttpRequest& request);

}  // namespace parallelrun::rt::protocol
