#include "runtime/protocol/coordinator_service.h"

#include <algorithm>

namespace parallelrun::rt::protocol {
namespace {

struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {{"/v1/register", "POST"},
                             {"/v1/lease", "POST"},
                             {"/v1/results", "POST"},
                             {"/v1/progress", "GET"}};

HttpResponse Error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}};
  return r;
}

// A service reply as HTTP: the body, or the error (`what` names the request's body).
template <typename T>
HttpResponse Reply(const StatusOr<T>& reply, const std::string& what) {
  if (!reply.ok()) {
    if (reply.status().code() == StatusCode::kInvalidArgument) {
      return Error(400, what + ": " + reply.status().message());
    }
    return Error(500, reply.status().message());
  }
  HttpResponse r;
  r.body = *reply;
  return r;
}

HttpResponse Results(CoordinatorService& service, const ResultsRequest& req,
                     const std::string& what) {
  auto reply = ReportAndLease(service, req);
  HttpResponse out = Reply(reply, what);
  if (!reply.ok()) return out;
  if (std::string reason = AllRefusedReason(req, *reply); !reason.empty()) {
    out.status = 409;
    out.body["reason"] = reason;
  }
  return out;
}

}  // namespace

StatusOr<ResultsResponse> ReportAndLease(CoordinatorService& service, const ResultsRequest& req) {
  if (req.lease && req.lease->max < 0) {
    return InvalidArgumentError("lease.max: got " + std::to_string(req.lease->max) +
                                ", expected an integer >= 0");
  }
  StatusOr<ResultsResponse> reply = service.Report(req);
  if (!reply.ok() || !req.lease) return reply;
  LeaseRequest lease = *req.lease;
  lease.node = req.node;
  StatusOr<LeaseResponse> leased = service.Lease(lease);
  if (leased.ok()) reply->lease = std::move(*leased);
  return reply;
}

int CoordinatorServerThreads(int nodes) { return std::clamp(nodes + 1, 2, 16); }

std::string AllRefusedReason(const ResultsRequest& req, const ResultsResponse& resp) {
  if (req.lease) return "";
  // After the end of the job nothing is accepted nor refused (the reply says stop): no conflict.
  if (resp.refused.empty() || !resp.accepted.empty()) return "";
  return "refused all " + std::to_string(req.results.size()) + " result(s): " + req.node +
         " does not hold the lease of those attempts (see refused)";
}

HttpResponse HandleCoordinatorRequest(CoordinatorService& service, const HttpRequest& request) {
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (request.path == r.path) route = &r;
  }
  if (!route) {
    return Error(404, "unknown path " + request.path +
                          "; expected /v1/register, /v1/lease, /v1/results or /v1/progress");
  }
  if (request.method != route->method) {
    return Error(405, request.method + " " + request.path + ": use " + route->method);
  }
  if (request.path == std::string("/v1/progress")) {
    HttpResponse r;
    r.body = service.GetProgress();
    return r;
  }
  const std::string what = "body of " + request.method + " " + request.path;
  if (!request.body.is_object()) return Error(400, what + ": expected a JSON object");
  try {
    if (request.path == std::string("/v1/register")) {
      return Reply(service.Register(request.body.get<RegisterRequest>()), what);
    }
    if (request.path == std::string("/v1/lease")) {
      return Reply(service.Lease(request.body.get<LeaseRequest>()), what);
    }
    return Results(service, request.body.get<ResultsRequest>(), what);
  } catch (const nlohmann::json::exception& e) {
    return Error(400, what + ": " + e.what());
  }
}

}  // namespace parallelrun::rt::protocol
