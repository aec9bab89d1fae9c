// The objects the operator creates for a ParallelRunJob (SPEC.md §4.1, §6), as pure functions of
// the job's identity, its validated spec and the operator's options. The reconciler creates what
// these return and compares what it finds with them; nothing here talks to the API server.
//
// For job J in namespace N (every object owned by the job, controller: true, and labelled
// parallelrun.io/job=J):
//   Secret     J-parallelrun    token, ca.crt, tls.crt, tls.key (certs.h)
//   ConfigMap  J-spec           spec.json = rt::ToJson(spec)
//   Service    J-coordinator    headless, selects the coordinator pod, port 8443 "https"
//   NetworkPolicy J-coordinator ingress to the coordinator's port 8443 only from the job's pods
//                               and the operator's pods (ChildrenOptions::operator_*)
//   Pod        J-coordinator    `parallelrun coordinator`, role=coordinator
//   Pod        J-worker-<i>     `parallelrun agent`, role=worker, worker-index=<i>
//
// Pods: restartPolicy Never (the operator restarts), enableServiceLinks false,
// automountServiceAccountToken false unless spec.serviceAccountName names an account, the
// restricted pod security context with spec.securityContext's fields over it, the restricted
// container security context, the spec's pod fields. The spec's pod fields are copied as they are:
// operator/webhook is the gate that decides who may set which (docs/security.md).
// Mounts follow rt::MountedPaths: the coordinator mounts the inputs (it plans) and the output;
// workers mount the code, inputs, side inputs (read-only) and the output (read-write). A DataRef
// without a volume is a path inside the image and gets no mount.
//
// Guarantees: deterministic (same arguments, same JSON), so the reconciler may compare. Errors:
// InvalidArgument naming the field (no image anywhere, a user volume with a reserved name) so the
// caller can report InvalidSpec.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "operator/reconciler/certs.h"
#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::op::reconciler {

// The job's identity, from the ParallelRunJob's metadata.
struct JobMeta {
  std::string name;
  std::string ns;
  std::string uid;
};

// Operator-wide settings that apply to every job's pods.
struct ChildrenOptions {
  std::string default_image;              // --default-image; used when spec.image is unset
  std::string default_image_pull_policy;  // used when spec.imagePullPolicy is unset; "" = k8s'
  // The coordinator's container resources (the spec's resources are for the workers' code).
  nlohmann::json coordinator_resources = {{"requests", {{"cpu", "100m"}, {"memory", "256Mi"}}}};
  // Where the operator's pods run and their labels: the NetworkPolicy lets them reach the
  // coordinator (progress reads). Empty: only the job's own pods may.
  std::string operator_namespace;
  nlohmann::json operator_pod_labels = nlohmann::json::object();
};

// Labels and other fixed names.
inline constexpr const char* kJobLabel = "parallelrun.io/job";
inline constexpr const char* kRoleLabel = "parallelrun.io/role";
inline constexpr const char* kWorkerIndexLabel = "parallelrun.io/worker-index";
inline constexpr const char* kCoordinatorRole = "coordinator";
inline constexpr const char* kWorkerRole = "worker";
inline constexpr int kCoordinatorPort = 8443;
inline constexpr const char* kSecretMountDir = "/etc/parallelrun/secret";
inline constexpr const char* kSpecFilePath = "/etc/parallelrun/spec.json";
inline constexpr const char* kSpecFileKey = "spec.json";
inline constexpr const char* kTerminationLogPath = "/dev/termination-log";
// Names of the pod volumes the operator adds (a user volume may not use them).
inline constexpr const char* kSecretVolumeName = "parallelrun-secret";
inline constexpr const char* kSpecVolumeName = "parallelrun-spec";

// Object names.
std::string SecretName(const std::string& job);                // J-parallelrun
std::string SpecConfigMapName(const std::string& job);         // J-spec
std::string ServiceName(const std::string& job);               // J-coordinator
std::string NetworkPolicyName(const std::string& job);         // J-coordinator
std::string CoordinatorPodName(const std::string& job);        // J-coordinator
std::string WorkerPodName(const std::string& job, int index);  // J-worker-<index>
// The name in the coordinator's certificate that clients check: J-coordinator.N.svc.
std::string CoordinatorServerName(const JobMeta& job);
// What agents dial: https://J-coordinator.N.svc:8443.
std::string CoordinatorUrl(const JobMeta& job);
// Label selector of the job's pods, optionally of one role: "parallelrun.io/job=J[,role=R]".
std::string PodSelector(const std::string& job, const std::string& role = "");

// ownerReferences entry that makes the job the controller of a child.
nlohmann::json OwnerReference(const JobMeta& job);

nlohmann::json BuildSecret(const JobMeta& job, const JobCredentials& credentials);
nlohmann::json BuildSpecConfigMap(const JobMeta& job, const rt::JobSpec& spec);
nlohmann::json BuildService(const JobMeta& job);
nlohmann::json BuildNetworkPolicy(const JobMeta& job, const ChildrenOptions& options);
rt::StatusOr<nlohmann::json> BuildCoordinatorPod(const JobMeta& job, const rt::JobSpec& spec,
                                                 const ChildrenOptions& options);
// index in [0, spec.node_count).
rt::StatusOr<nlohmann::json> BuildWorkerPod(const JobMeta& job, const rt::JobSpec& spec, int index,
                                            const ChildrenOptions& options);

}  // namespace parallelrun::op::reconciler
