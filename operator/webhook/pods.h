// The job's pods judged at apply time (issue 15): what the job passes through to its pods
// (spec.env, tolerations, affinity, volumes, securityContext, nodeSelector, resources,
// serviceAccountName, podAnnotations) is Kubernetes' own API, which the CRD schema does not
// re-state. Instead of the job failing later when the operator's pod create is refused, the webhook
// builds the pods the operator will create (operator/reconciler/children.h: the coordinator and
// worker 0, whose shape every worker shares) and asks the API server to judge them with a
// server-side dry run (POST .../pods?dryRun=All, as the operator: the same rights, admission
// plugins and Pod Security level the real create will meet). Nothing is stored.
//
// The dry-run pods differ from the real ones only where the job does not exist yet: the name is a
// generateName (a pod of a running job would otherwise collide on UPDATE) and there are no
// ownerReferences (the job has no UID before it is stored).
//
// Decisions:
// - 422 Invalid → deny 422, one "<job field>: <API server's reason>" per cause, the pod's path
//   mapped back to the job's field: containers[*].env[k] → spec.env[i] (the user's entries, found
//   past the operator's own), volumes[k] → spec.volumes[i] (the user's volumes come first),
//   tolerations, affinity, nodeSelector, serviceAccountName, priorityClassName → the same under
//   spec, securityContext and containers[*].securityContext → spec.securityContext,
//   containers[*].resources of a worker → spec.resources, metadata.annotations →
//   spec.podAnnotations. A path that maps to no job field (the operator's own part of the pod) is
//   kept and said to be the <role> pod's.
// - 403 Forbidden (Pod Security admission, a missing ServiceAccount) → deny 403 with the API
//   server's message, saying which pod. Except a full ResourceQuota ("exceeded quota: "): the
//   pods are valid and the operator creates them when the quota frees, so the job is allowed.
// - Anything else (API server unreachable, 5xx, timeouts, no rights to dry-run) → deny 500
//   "could not check the job's pods with the API server: ...": never allow unchecked (the chart's
//   failurePolicy is Fail for the same reason), never deny for the wrong reason. The user retries.
// - Not judged: DELETE/CONNECT, UPDATEs whose spec is unchanged or changes only run controls
//   (suspend, activeDeadlineSeconds, ttlSecondsAfterFinished; policy.h), specs the policy refuses.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "operator/kube/client.h"
#include "operator/reconciler/children.h"
#include "operator/webhook/policy.h"
#include "runtime/base/status.h"

namespace parallelrun::op::webhook {

// Judges one pod as the API server would create it: Ok, or the API server's refusal (kube::Client
// errors: kInvalidArgument for 422, kPermissionDenied for 403, ...).
using PodJudge = std::function<rt::Status(const std::string& ns, const nlohmann::json& pod)>;

// A server-side dry-run create through `client` (which must outlive the judge).
PodJudge KubePodJudge(kube::Client& client);

struct PodReview {
  PodJudge judge;
  reconciler::ChildrenOptions children;  // the operator's (the default image)
};

// The pods of the reviewed job judged (see above); allowed when there is nothing to judge.
Decision ReviewPods(const AdmissionInput& input, const PodReview& pods);

// "spec.containers[0].env[3].name" of a pod built from `spec` → "spec.env[2].name"; "" when the
// path is the operator's part of the pod. `pod` is the pod as built (before the API server).
std::string JobFieldOf(const std::string& pod_path, const nlohmann::json& pod,
                       const rt::JobSpec& spec);

}  // namespace parallelrun::op::webhook
