// What the reconciler reads of the Kubernetes objects whose API is not the operator's: its job's
// pods and Secret, as its caches hold them (api::TrimPodForCache, TrimSecretForCache). Every read
// is lenient: a missing field, or one of the wrong type, reads as "" (or absent), never throws.
// Pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace parallelrun::op::reconciler {

std::string ObjectName(const nlohmann::json& object);  // metadata.name
std::string ObjectUid(const nlohmann::json& object);   // metadata.uid
std::string PodPhase(const nlohmann::json& pod);       // status.phase
std::string PodIp(const nlohmann::json& pod);          // status.podIP
std::string PodRole(const nlohmann::json& pod);        // the parallelrun.io/role label
bool PodOnNode(const nlohmann::json& pod);             // spec.nodeName is set
bool PodTerminating(const nlohmann::json& pod);        // metadata.deletionTimestamp is set
bool PodFinished(const nlohmann::json& pod);           // phase Succeeded or Failed

// How a pod's container ended: its terminated state, or for a finished pod without one exit code
// 0 (Succeeded) or -1 (Failed). nullopt while it has not ended. `container` is looked up by name;
// a pod without it is read from its first container status.
struct Termination {
  int exit_code = 0;
  std::string message;  // the termination message (the coordinator's final summary)
  std::string reason;   // e.g. OOMKilled
};
std::optional<Termination> TerminationOf(const nlohmann::json& pod, const std::string& container);

// Why a pod is not running yet, as a Scheduled condition's reason (Unschedulable,
// ImagePullBackOff, FailedMount) and message; nullopt when nothing is wrong.
struct WaitingReason {
  std::string reason;
  std::string message;
};
std::optional<WaitingReason> WhyWaiting(const nlohmann::json& pod);

// A counter annotation of the job's Secret (a decimal string); 0 when absent or not a number.
int64_t SecretCounter(const nlohmann::json& secret, const char* annotation);
// An entry of the Secret's data, base64-decoded; "" when absent or not base64.
std::string SecretData(const nlohmann::json& secret, const char* key);

}  // namespace parallelrun::op::reconciler
