#pragma once
// Authentication (bearer tokens) and RBAC authorization of the test cluster's HTTPS front end.

#include <string>
#include <vector>

#include "tests/cluster/apiserver.h"

namespace parallelrun::rt::cluster {

struct UserInfo {
  std::string name;
  std::vector<std::string> groups;
  bool IsMaster() const;
};

// What a request wants to do, in RBAC terms.
struct RequestAttributes {
  bool resource_request = true;
  std::string verb;  // get list watch create update patch delete deletecollection impersonate
  std::string group;
  std::string resource;
  std::string subresource;
  std::string ns;
  std::string name;
  std::string path;  // non-resource requests
};

class Authorizer {
 public:
  Authorizer(ApiServer* api, std::string admin_token);

  // The user of a bearer token; false if the token is unknown.
  bool Authenticate(const std::string& token, UserInfo* user) const;
  // RBAC decision: system:masters may do everything; everyone authenticated may read
  // discovery, OpenAPI, /version and create self-reviews; the rest needs a matching rule of a
  // (Cluster)Role bound to the user, one of its groups, or its service account.
  bool Allowed(const UserInfo& user, const RequestAttributes& attrs) const;
  // The real server's 403 message for a denied request.
  static std::string ForbiddenMessage(const UserInfo& user, const RequestAttributes& attrs);
  // SelfSubjectRulesReview's resourceRules for a namespace.
  Json RulesFor(const UserInfo& user, const std::string& ns) const;

 private:
  std::vector<Json> RulesForUser(const UserInfo& user, const std::string& ns) const;

  ApiServer* api_;
  std::string admin_token_;
};

}  // namespace parallelrun::rt::cluster
