#pragma once
// The HTTP side of the API server: routing of /version, discovery, OpenAPI and resource paths,
// bearer-token authentication, impersonation, RBAC, Table output, watch streams, pods/log and
// the review kinds (SelfSubjectAccessReview, SubjectAccessReview, TokenRequest, ...).

#include <atomic>
#include <mutex>
#include <string>

#include "tests/cluster/admission.h"
#include "tests/cluster/apiserver.h"
#include "tests/cluster/auth.h"
#include "tests/cluster/https_server.h"

namespace parallelrun::rt::cluster {

class Frontend {
 public:
  Frontend(ApiServer* api, std::string admin_token, std::string state_dir);

  void Handle(const HttpRequest& req, HttpResponder& resp);
  void SetServerAddress(const std::string& address) { server_address_ = address; }
  // Ends open watch and log streams.
  void Stop() { stopping_ = true; }

 private:
  // Appends one JSON line per resource request of a service account to DIR/audit.log (who, verb,
  // group, resource, subresource, namespace, allowed), as an API server's audit log would, so
  // tests can compare what a client used with what its RBAC grants.
  void Audit(const UserInfo& user, const RequestAttributes& attrs, bool allowed);

  ApiServer* api_;
  Authorizer authorizer_;
  Admission admission_{api_};  // validating webhooks (admission.h)
  std::mutex audit_mu_;
  std::string state_dir_;
  std::string server_address_;
  std::atomic<bool> stopping_{false};
};

}  // namespace parallelrun::rt::cluster
