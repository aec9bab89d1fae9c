#pragma once
// The HTTP side of the API server: routing of /version, discovery, OpenAPI and resource paths,
// bearer-token authentication, impersonation, RBAC, Table output, watch streams, pods/log and
// the review kinds (SelfSubjectAccessReview, SubjectAccessReview, TokenRequest, ...).
//
// Handle authenticates, then dispatches through two route tables: non-resource paths (health,
// version, discovery, OpenAPI) and, for resource paths, special kinds and subresources (reviews,
// serviceaccounts/token, pods/log) before one handler per RBAC verb (get, list, watch, create,
// update, patch, delete, deletecollection). The handlers live in frontend_routes.cc.

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

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
  struct Call;  // one request (frontend_call.h)
  using Handler = void (Frontend::*)(Call&);

  // Bearer token and impersonation headers: false (and the reply sent) when refused.
  bool Authenticate(Call& c);
  // RBAC for a non-resource path: false (and 403 sent) when refused.
  bool NonResourceAllowed(Call& c);
  // The handler of a non-resource path (discovery, OpenAPI), or nullptr.
  Handler NonResourceRoute(const Call& c) const;
  // Resolves the route and type, the verb, RBAC, the body and the write options: false (and the
  // reply sent) when the request cannot go on.
  bool PrepareResource(Call& c);
  // The body (protobuf decoded, CBOR refused) and the write options from the query.
  bool DecodeBody(Call& c);
  // The handler of a resource request: a special kind or subresource, else the verb's.
  Handler ResourceRoute(const Call& c) const;

  // Non-resource routes.
  void HandleRootDiscovery(Call& c);     // /api, /apis
  void HandleVersionDiscovery(Call& c);  // /api/<v>, /apis/<g>, /apis/<g>/<v>
  void HandleOpenApi(Call& c);           // /openapi/v3[/...]
  // Resource routes (frontend_routes.cc).
  void HandleAccessReview(Call& c);  // authorization.k8s.io: POST only, never stored
  void HandleTokenReview(Call& c);   // authentication.k8s.io: POST only, never stored
  void HandleTokenRequest(Call& c);  // serviceaccounts/token
  void HandlePodLog(Call& c);        // pods/log (follow streams until the container ends)
  // Streams what is appended to file from offset until the container ends, the pod is replaced
  // (uid) or the client leaves; false when a write failed (the stream is gone).
  bool FollowLog(Call& c, const std::string& file, const std::string& container,
                 const std::string& uid, size_t offset);
  void HandleList(Call& c);
  void HandleWatch(Call& c);
  void HandleGet(Call& c);
  void HandleCreate(Call& c);
  void HandleUpdate(Call& c);
  void HandlePatch(Call& c);
  void HandleDelete(Call& c);  // delete and deletecollection
  // Runs the validating webhooks, then the write; sends the result either way.
  void AdmitAndWrite(Call& c, const std::string& operation,
                     const std::function<ApiResult(const WriteOptions&)>& write);

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
