#pragma once
// Validating admission webhooks of the test cluster, as kube-apiserver runs them: every
// ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1) is read per request; a webhook
// whose rules (operations, apiGroups, apiVersions, resources with "res/sub" and "*", scope),
// namespaceSelector (with the automatic kubernetes.io/metadata.name label) and objectSelector
// match is called with an AdmissionReview v1 over HTTPS (clientConfig.url, or clientConfig.service
// through the Service's Endpoints and the pod's containerPort for a named targetPort), verifying
// the server against the caBundle and the name <service>.<namespace>.svc, within timeoutSeconds
// (default 10). A denial becomes the error kube-apiserver returns: `admission webhook "NAME"
// denied the request: MESSAGE` with the response's code (400 when unset) and reason; a webhook that
// cannot be called fails the request (500 InternalError, `failed calling webhook "NAME": ...`)
// under failurePolicy Fail (the default) and is skipped under Ignore.
//
// Caveats: no mutating webhooks, no matchConditions, no reinvocation; DELETE and CONNECT are
// never sent; webhooks run one after the other; the frontend computes the object to review with
// a dry run of the same request, then repeats it for real, so the two are not one transaction.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/cluster/apiserver.h"
#include "tests/cluster/auth.h"

namespace parallelrun::rt::cluster {

struct AdmissionAttributes {
  std::string operation;  // CREATE or UPDATE
  ResourceType type;
  std::string version;  // the version the client used
  std::string ns;
  std::string name;
  std::string subresource;
  Json object;      // the object as it would be stored
  Json old_object;  // UPDATE only
  UserInfo user;
  bool dry_run = false;
};

class Admission {
 public:
  explicit Admission(ApiServer* api) : api_(api) {}

  // The webhooks (entries of `webhooks` in the configurations) that a request on this resource
  // could need, before the object is known (rules and scope only): empty means no dry run needed.
  std::vector<Json> Candidates(const std::string& operation, const ResourceType& type,
                               const std::string& version, const std::string& ns,
                               const std::string& subresource) const;
  // Runs the candidates that match `attrs`; nullopt when every one admits the request.
  std::optional<ApiError> Validate(const std::vector<Json>& webhooks,
                                   const AdmissionAttributes& attrs) const;
  // The frontend's hook for a write (operation CREATE or UPDATE): when a webhook may apply, runs
  // `write` as a dry run to get the object as it would be stored (its error is the request's) and
  // the webhooks on it. nullopt: go ahead with the real write.
  std::optional<ApiError> Admit(const std::string& operation, const ResourceType& type,
                                const std::string& version, const std::string& ns,
                                const std::string& name, const std::string& subresource,
                                const UserInfo& user, const WriteOptions& options,
                                const std::function<ApiResult(const WriteOptions&)>& write) const;

 private:
  ApiServer* api_;
};

}  // namespace parallelrun::rt::cluster
