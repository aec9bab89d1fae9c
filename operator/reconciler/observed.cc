#include "operator/reconciler/observed.h"

#include "fmt/format.h"
#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/reconciler.h"
#include "runtime/base/encoding.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;

namespace {

const json& Field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string Str(const json& object, const char* key) {
  const json& v = Field(object, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

// An integer, or a string holding one (annotations are strings); `fallback` otherwise.
int64_t Int(const json& object, const char* key, int64_t fallback) {
  const json& v = Field(object, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (...) {
    }
  }
  return fallback;
}

const json* ContainerStatus(const json& pod, const std::string& container) {
  const json& statuses = Field(Field(pod, "status"), "containerStatuses");
  if (!statuses.is_array()) return nullptr;
  for (const json& s : statuses) {
    if (Str(s, "name") == container) return &s;
  }
  return statuses.empty() ? nullptr : &statuses[0];
}

std::optional<Termination> FinishedWithoutState(const json& pod) {
  if (!PodFinished(pod)) return std::nullopt;
  return Termination{PodPhase(pod) == "Succeeded" ? 0 : -1, "", ""};
}

}  // namespace

std::string ObjectName(const json& object) { return Str(Field(object, "metadata"), "name"); }
std::string ObjectUid(const json& object) { return Str(Field(object, "metadata"), "uid"); }
std::string PodPhase(const json& pod) { return Str(Field(pod, "status"), "phase"); }
std::string PodIp(const json& pod) { return Str(Field(pod, "status"), "podIP"); }

std::string PodRole(const json& pod) {
  return Str(Field(Field(pod, "metadata"), "labels"), api::kRoleLabel);
}

bool PodOnNode(const json& pod) { return !Str(Field(pod, "spec"), "nodeName").empty(); }

bool PodTerminating(const json& pod) {
  return !Str(Field(pod, "metadata"), "deletionTimestamp").empty();
}

bool PodFinished(const json& pod) {
  const std::string phase = PodPhase(pod);
  return phase == "Succeeded" || phase == "Failed";
}

std::optional<Termination> TerminationOf(const json& pod, const std::string& container) {
  const json* cs = ContainerStatus(pod, container);
  if (cs == nullptr) return FinishedWithoutState(pod);
  const json& terminated = Field(Field(*cs, "state"), "terminated");
  if (!terminated.is_object()) return FinishedWithoutState(pod);
  return Termination{static_cast<int>(Int(terminated, "exitCode", -1)), Str(terminated, "message"),
                     Str(terminated, "reason")};
}

std::optional<WaitingReason> WhyWaiting(const json& pod) {
  const std::string name = ObjectName(pod);
  const json& status = Field(pod, "status");
  const json& conditions = Field(status, "conditions");
  if (conditions.is_array()) {
    for (const json& c : conditions) {
      if (Str(c, "type") == "PodScheduled" && Str(c, "status") == "False") {
        return WaitingReason{
            api::kReasonUnschedulable,
            fmt::format("pod {}: {}", name,
                        Str(c, "message").empty() ? Str(c, "reason") : Str(c, "message"))};
      }
    }
  }
  const json& statuses = Field(status, "containerStatuses");
  if (statuses.is_array()) {
    for (const json& cs : statuses) {
      const json& waiting = Field(Field(cs, "state"), "waiting");
      const std::string reason = Str(waiting, "reason");
      const std::string message = Str(waiting, "message");
      if (reason == "ImagePullBackOff" || reason == "ErrImagePull" ||
          reason == "InvalidImageName") {
        return WaitingReason{api::kReasonImagePullBackOff,
                             fmt::format("pod {}: {}: {}", name, reason, message)};
      }
      if (message.find("MountVolume") != std::string::npos ||
          reason == "CreateContainerConfigError") {
        return WaitingReason{api::kReasonFailedMount, fmt::format("pod {}: {}", name, message)};
      }
    }
  }
  return std::nullopt;
}

int64_t SecretCounter(const json& secret, const char* annotation) {
  return Int(Field(Field(secret, "metadata"), "annotations"), annotation, 0);
}

std::string SecretData(const json& secret, const char* key) {
  auto decoded = rt::Base64Decode(Str(Field(secret, "data"), key));
  return decoded.ok() ? *std::move(decoded) : std::string();
}

// ----- cache transforms (declared in reconciler.h) ----------------------------------------------

json TrimMetadataOnly(json object) {
  json out = {{"apiVersion", object.value("apiVersion", "")}, {"kind", object.value("kind", "")}};
  json meta = json::object();
  const json& m = Field(object, "metadata");
  for (const char* key : {"name", "namespace", "uid", "resourceVersion", "deletionTimestamp"}) {
    if (m.contains(key)) meta[key] = m[key];
  }
  // The job label routes events to the job; the Secret's annotations may hold the restart
  // counts of an operator from before status.restarts (read as a floor).
  const json& job = Field(Field(m, "labels"), api::kJobLabel);
  if (!job.is_null()) meta["labels"] = {{api::kJobLabel, job}};
  const json& annotations = Field(m, "annotations");
  for (const char* key : {kCoordinatorCrashesAnnotation, kWorkerReplacementsAnnotation}) {
    if (annotations.contains(key)) meta["annotations"][key] = annotations[key];
  }
  out["metadata"] = std::move(meta);
  return out;
}

json TrimSecretForCache(json secret) {
  json out = TrimMetadataOnly(secret);
  const json& data = Field(secret, "data");
  json kept = json::object();
  for (const char* key : {"token", "ca.crt"}) {
    if (data.contains(key)) kept[key] = data[key];
  }
  out["data"] = std::move(kept);
  return out;
}

}  // namespace parallelrun::op::reconciler
