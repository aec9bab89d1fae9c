// The validating admission webhook of ParallelRunJobs over HTTPS (AdmissionReview
// admission.k8s.io/v1), served by every operator replica, leader or not.
//
//   POST /validate-parallelrunjob   AdmissionReview in, AdmissionReview with `response` out
//   GET  /healthz                   200 (the probe that makes the replica Ready)
//
// Rights are asked with LocalSubjectAccessReviews in the job's namespace (the namespaced
// SubjectAccessReview: the chart can grant it by a Role in watchNamespace), as the
// AdmissionReview's userInfo (username, uid, groups, extra). The job's pods are judged with a
// dry-run pod create as the operator (pods.h).
//
// Guarantees: a review that cannot be read gets HTTP 400 (the API server then applies the
// configuration's failurePolicy, Fail in the chart); every readable review gets HTTP 200 with
// `response.uid` echoed and, when denied, `status` {code, reason, message} whose message names the
// field and the missing right (policy.h). Handlers run concurrently on cpprestsdk's pool.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "operator/kube/client.h"
#include "operator/webhook/pods.h"
#include "operator/webhook/policy.h"
#include "runtime/base/status.h"
#include "runtime/protocol/http_server.h"

namespace parallelrun::op::webhook {

inline constexpr const char* kValidatePath = "/validate-parallelrunjob";

// AdmissionReview request.userInfo.
struct UserInfo {
  std::string username;
  std::string uid;
  std::vector<std::string> groups;
  nlohmann::json extra = nlohmann::json::object();
};

// Makes the RightChecker of one review (the requesting user).
using CheckerFactory = std::function<RightChecker(const UserInfo& user)>;

// One AdmissionReview v1 (the parsed request body) → the reply body; InvalidArgument when the
// review has no request.uid. The policy (rights, spec) first, then, when it allows, the job's pods
// judged by the API server (pods.h).
rt::StatusOr<nlohmann::json> HandleAdmissionReview(const nlohmann::json& review,
                                                   const CheckerFactory& checkers,
                                                   const PodReview& pods);

// Checkers that ask the API server with LocalSubjectAccessReviews through `client` (which must
// outlive them).
CheckerFactory KubeRightCheckers(kube::Client& client);

struct ServeOptions {
  std::string bind_address;  // ":9443", "127.0.0.1:0"
  std::string cert_dir;      // holds tls.crt and tls.key
};

// Starts the HTTPS server; errors name the flag's value or the certificate file.
rt::StatusOr<std::unique_ptr<rt::protocol::HttpServer>> Serve(const ServeOptions& options,
                                                              CheckerFactory checkers,
                                                              PodReview pods);

// One HTTPS GET /healthz to host:port (our own server: the certificate is not checked, it names
// the Service); Ok when it answers 200 within `timeout_ms`. host "" or "0.0.0.0" is 127.0.0.1.
rt::Status Probe(const std::string& host, int port, int timeout_ms = 2000);

}  // namespace parallelrun::op::webhook
