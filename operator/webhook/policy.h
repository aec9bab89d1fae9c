// Who may ask for what in a ParallelRunJob (issue 12, "no privilege through the operator").
//
// The operator creates a job's pods with its own rights, so without a gate a user allowed only to
// create ParallelRunJobs would get, through it, everything a pod can do. The admission policy:
//
// - Within the restricted defaults anyone who may create the job may run it: persistentVolumeClaim
//   and emptyDir volumes, configMap and secret volumes of objects the user may `get`, the
//   operator's non-root security context (a spec.securityContext may only narrow it: non-zero
//   runAsUser/runAsGroup, runAsNonRoot true, fsGroup, supplementalGroups, fsGroupChangePolicy,
//   seccompProfile RuntimeDefault or Localhost), the namespace's `default` ServiceAccount with no
//   token mounted, labels and annotations outside the kubernetes.io / k8s.io domains.
// - Anything beyond (every other volume kind, any other securityContext field or value,
//   serviceAccountName, nodeSelector, tolerations, affinity, priorityClassName, env with
//   secretKeyRef / configMapKeyRef, kubernetes.io / k8s.io annotations) needs the right to
//   `create pods` in the namespace; env references also need `get` on the Secret or ConfigMap.
// - An UPDATE that leaves the spec as it was (finalizers, labels) or changes only when the job
//   runs (suspend, activeDeadlineSeconds, ttlSecondsAfterFinished) needs no rights. Any other
//   spec change is checked in full as the updating user: a new image or entry script would run
//   with every volume and right the spec holds, so who changes it must hold them too.
// - The spec must be valid for the one job-spec model (rt::ParseJobSpec): `kubectl apply` refuses
//   a semantically invalid job naming the field instead of the job failing later with InvalidSpec.
//
// Guarantees: pure (the only effect is through the RightChecker); every right is asked once per
// review; a checker error denies (fail closed) with the error in the message; every refusal names
// the field, the user and the missing right.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::op::webhook {

// One core/v1 right of the requesting user in the job's namespace.
struct Right {
  std::string verb;      // "create", "get"
  std::string resource;  // "pods", "secrets", "configmaps"
  std::string name;      // "" = any
  std::string ns;

  // `create pods in namespace "team-a"`, `get secret "db" in namespace "team-a"`.
  std::string Describe() const;
  bool operator<(const Right& o) const;
};

// Whether the requesting user holds `right` (a SubjectAccessReview); an error when it cannot tell.
using RightChecker = std::function<rt::StatusOr<bool>(const Right&)>;

// Something in a spec beyond the restricted defaults.
struct Need {
  std::string field;  // spec.volumes[0].hostPath
  std::string what;   // hostPath volumes
  std::vector<Right> rights;
};

// Everything in `spec` that needs rights beyond creating the job, in field order.
std::vector<Need> FindNeeds(const rt::JobSpec& spec, const std::string& ns);

struct AdmissionInput {
  std::string operation;  // CREATE, UPDATE, DELETE, CONNECT
  std::string ns;
  std::string name;
  std::string username;
  nlohmann::json object;      // the ParallelRunJob as it would be stored
  nlohmann::json old_object;  // UPDATE only
};

struct Decision {
  bool allowed = true;
  int code = 200;      // 403 missing rights, 422 invalid spec, 400 unreadable object, 500 no answer
  std::string reason;  // Forbidden, Invalid, BadRequest, InternalError
  std::string message;
};

Decision Review(const AdmissionInput& input, const RightChecker& check);

// The spec a review judges; nullopt when there is nothing to judge (not a CREATE or UPDATE, an
// UPDATE of metadata or run controls only); InvalidArgument naming the field when the spec is not
// valid for the job-spec model.
rt::StatusOr<std::optional<rt::JobSpec>> SpecToJudge(const AdmissionInput& input);

// The name the job has or will have (a stand-in "<generateName>x" before the server makes one).
std::string JobNameOf(const AdmissionInput& input);

}  // namespace parallelrun::op::webhook
