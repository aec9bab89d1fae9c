#pragma once
// The HTTP side of the API server: routing of /version, discovery, OpenAPI and resource paths,
// bearer-token authentication, impersonation, RBAC, Table output, watch streams, pods/log and
// the review kinds (SelfSubjectAccessReview, SubjectAccessReview, TokenRequest, ...).

#include <atomic>
#include <string>

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
  ApiServer* api_;
  Authorizer authorizer_;
  std::string state_dir_;
  std::string server_address_;
  std::atomic<bool> stopping_{false};
};

}  // namespace parallelrun::rt::cluster
