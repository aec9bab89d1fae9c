// The admission policy of ParallelRunJobs (see policy.h).
#include "operator/webhook/policy.h"

#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/children.h"

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;

// Kinds of volume anyone may use (secret and configMap also need `get` on the object).
const std::set<std::string> kFreeVolumeKinds = {"persistentVolumeClaim", "emptyDir"};

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string Singular(const std::string& resource) {
  return resource.empty() || resource.back() != 's' ? resource
                                                    : resource.substr(0, resource.size() - 1);
}

Right CreatePods(const std::string& ns) { return {"create", "pods", "", ns}; }
Right GetObject(const std::string& resource, const std::string& name, const std::string& ns) {
  return {"get", resource, name, ns};
}

Need PodNeed(std::string field, std::string what, const std::string& ns) {
  return {std::move(field), std::move(what), {CreatePods(ns)}};
}

const json* PodField(const rt::JobSpec& spec, const char* key) {
  if (!spec.pod.is_object()) return nullptr;
  auto it = spec.pod.find(key);
  return it == spec.pod.end() || it->is_null() ? nullptr : &*it;
}

void VolumeNeeds(const rt::JobSpec& spec, const std::string& ns, std::vector<Need>* out) {
  if (!spec.volumes.is_array()) return;
  for (size_t i = 0; i < spec.volumes.size(); ++i) {
    const json& volume = spec.volumes[i];
    if (!volume.is_object()) continue;
    const std::string base = "spec.volumes[" + std::to_string(i) + "]";
    for (const auto& [kind, source] : volume.items()) {
      if (kind == "name" || kFreeVolumeKinds.count(kind)) continue;
      const std::string field = base + "." + kind;
      if (kind == "secret" || kind == "configMap") {
        const std::string name =
            source.is_object() ? source.value(kind == "secret" ? "secretName" : "name", "") : "";
        const std::string resource = kind == "secret" ? "secrets" : "configmaps";
        out->push_back({field, kind + " volumes", {GetObject(resource, name, ns)}});
        continue;
      }
      out->push_back({field, kind + " volumes", {CreatePods(ns)}});
    }
  }
}

// Whether a pod securityContext field keeps the pod within the restricted defaults.
bool RestrictedSecurityField(const std::string& name, const json& value) {
  if (name == "runAsUser" || name == "runAsGroup") {
    return value.is_number_integer() && value.get<int64_t>() != 0;
  }
  if (name == "runAsNonRoot") return value == true;
  if (name == "fsGroup" || name == "supplementalGroups" || name == "fsGroupChangePolicy") {
    return true;
  }
  if (name == "seccompProfile") {
    const std::string type = value.is_object() ? value.value("type", "") : "";
    return type == "RuntimeDefault" || type == "Localhost";
  }
  return false;  // seLinuxOptions, sysctls, windowsOptions, appArmorProfile, unknown fields
}

std::string SecurityWhat(const std::string& name, const json& value) {
  if (name == "runAsUser" && value == 0) return "running as root (runAsUser 0)";
  if (name == "runAsGroup" && value == 0) return "running as group root (runAsGroup 0)";
  if (name == "runAsNonRoot") return "runAsNonRoot " + value.dump();
  return "securityContext." + name + " " + value.dump();
}

void SecurityNeeds(const rt::JobSpec& spec, const std::string& ns, std::vector<Need>* out) {
  const json* context = PodField(spec, "securityContext");
  if (context == nullptr || !context->is_object()) return;
  for (const auto& [name, value] : context->items()) {
    if (value.is_null() || RestrictedSecurityField(name, value)) continue;
    out->push_back(PodNeed("spec.securityContext." + name, SecurityWhat(name, value), ns));
  }
}

void EnvNeeds(const rt::JobSpec& spec, const std::string& ns, std::vector<Need>* out) {
  const json* env = PodField(spec, "env");
  if (env == nullptr || !env->is_array()) return;
  for (size_t i = 0; i < env->size(); ++i) {
    const json& var = (*env)[i];
    if (!var.is_object() || !var.contains("valueFrom") || !var["valueFrom"].is_object()) continue;
    for (const auto& [kind, resource] :
         {std::pair<std::string, std::string>{"secretKeyRef", "secrets"},
          {"configMapKeyRef", "configmaps"}}) {
      auto ref = var["valueFrom"].find(kind);
      if (ref == var["valueFrom"].end() || !ref->is_object()) continue;
      const std::string field = "spec.env[" + std::to_string(i) + "].valueFrom." + kind;
      out->push_back({field,
                      kind + " env",
                      {CreatePods(ns), GetObject(resource, ref->value("name", ""), ns)}});
    }
  }
}

bool SystemDomain(const std::string& key) {
  const size_t slash = key.find('/');
  if (slash == std::string::npos) return false;
  const std::string domain = key.substr(0, slash);
  for (const std::string suffix : {"kubernetes.io", "k8s.io"}) {
    if (domain == suffix ||
        (domain.size() > suffix.size() &&
         domain.compare(domain.size() - suffix.size() - 1, std::string::npos, "." + suffix) == 0)) {
      return true;
    }
  }
  return false;
}

void SchedulingNeeds(const rt::JobSpec& spec, const std::string& ns, std::vector<Need>* out) {
  for (const char* key :
       {"serviceAccountName", "nodeSelector", "tolerations", "affinity", "priorityClassName"}) {
    const json* value = PodField(spec, key);
    if (value == nullptr || value->empty() || *value == "") continue;
    if (std::string(key) == "serviceAccountName" && *value == "default") continue;
    const std::string what = std::string(key) == "serviceAccountName"
                                 ? "another ServiceAccount than \"default\""
                                 : std::string(key);
    out->push_back(PodNeed(std::string("spec.") + key, what, ns));
  }
  const json* annotations = PodField(spec, "podAnnotations");
  if (annotations == nullptr || !annotations->is_object()) return;
  for (const auto& [key, value] : annotations->items()) {
    if (!SystemDomain(key)) continue;
    out->push_back(PodNeed("spec.podAnnotations." + key, "kubernetes.io / k8s.io annotations", ns));
  }
}

// The spec of `object` (metadata completed from the request), or a refusal.
rt::StatusOr<rt::JobSpec> ParseObject(json object, const AdmissionInput& input) {
  if (!object.is_object()) return rt::InvalidArgumentError("the object is not a JSON object");
  json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = json::object();
  if (!metadata.contains("namespace")) metadata["namespace"] = input.ns;
  if (metadata.value("name", "").empty()) metadata["name"] = JobNameOf(input);
  PR_ASSIGN_OR_RETURN(api::ParallelRunJob job, api::ParseParallelRunJob(object));
  PR_ASSIGN_OR_RETURN(rt::JobSpec spec, api::ParseSpec(job));
  if (spec.volumes.is_array()) {
    for (size_t i = 0; i < spec.volumes.size(); ++i) {
      if (!spec.volumes[i].is_object()) continue;
      const std::string name = spec.volumes[i].value("name", "");
      if (name == reconciler::kSecretVolumeName || name == reconciler::kSpecVolumeName) {
        return rt::InvalidArgumentError("spec.volumes[" + std::to_string(i) + "].name: \"" + name +
                                        "\" is reserved for the operator's own volume; rename it");
      }
    }
  }
  return spec;
}

// Spec fields that decide when a job runs, not what runs or with which rights.
constexpr const char* kRunControls[] = {"suspend", "activeDeadlineSeconds",
                                        "ttlSecondsAfterFinished"};

bool OnlyRunControlsChanged(const json& old_object, const json& object) {
  json before = old_object.value("spec", json::object());
  json after = object.value("spec", json::object());
  if (!before.is_object() || !after.is_object()) return false;
  for (const char* key : kRunControls) {
    before.erase(key);
    after.erase(key);
  }
  return before == after;
}

Decision Deny(int code, std::string reason, std::string message) {
  return {false, code, std::move(reason), std::move(message)};
}

}  // namespace

std::string Right::Describe() const {
  std::string out = verb + " " + (name.empty() ? resource : Singular(resource) + " " + Quote(name));
  return out + " in namespace " + Quote(ns);
}

bool Right::operator<(const Right& o) const {
  return std::tie(verb, resource, name, ns) < std::tie(o.verb, o.resource, o.name, o.ns);
}

std::vector<Need> FindNeeds(const rt::JobSpec& spec, const std::string& ns) {
  std::vector<Need> out;
  VolumeNeeds(spec, ns, &out);
  SecurityNeeds(spec, ns, &out);
  SchedulingNeeds(spec, ns, &out);
  EnvNeeds(spec, ns, &out);
  return out;
}

std::string JobNameOf(const AdmissionInput& input) {
  const json metadata =
      input.object.is_object() ? input.object.value("metadata", json::object()) : json::object();
  if (metadata.is_object() && !metadata.value("name", "").empty()) return metadata["name"];
  // generateName: the name is made after admission; check the rest with a stand-in.
  if (!input.name.empty()) return input.name;
  return (metadata.is_object() ? metadata.value("generateName", "") : "") + "x";
}

rt::StatusOr<std::optional<rt::JobSpec>> SpecToJudge(const AdmissionInput& input) {
  const std::optional<rt::JobSpec> nothing;
  if (input.operation != "CREATE" && input.operation != "UPDATE") return nothing;
  const bool update =
      input.operation == "UPDATE" && input.old_object.is_object() && input.object.is_object();
  // Metadata-only writes (the operator's finalizer, labels) never need more than they had.
  if (update && input.old_object.value("spec", json()) == input.object.value("spec", json())) {
    return nothing;
  }
  PR_ASSIGN_OR_RETURN(rt::JobSpec spec, ParseObject(input.object, input));
  if (update && OnlyRunControlsChanged(input.old_object, input.object)) return nothing;
  return std::optional<rt::JobSpec>(std::move(spec));
}

Decision Review(const AdmissionInput& input, const RightChecker& check) {
  auto judged = SpecToJudge(input);
  if (!judged.ok()) return Deny(422, "Invalid", judged.status().message());
  if (!judged->has_value()) return {};
  const rt::JobSpec& spec = **judged;
  std::map<Right, rt::StatusOr<bool>> answers;
  std::vector<std::string> refusals;
  for (const Need& need : FindNeeds(spec, input.ns)) {
    for (const Right& right : need.rights) {
      auto it = answers.find(right);
      if (it == answers.end()) it = answers.emplace(right, check(right)).first;
      if (!it->second.ok()) {
        return Deny(500, "InternalError",
                    need.field + ": cannot check whether user " + Quote(input.username) + " may " +
                        right.Describe() + ": " + it->second.status().message());
      }
      if (!*it->second) {
        refusals.push_back(need.field + ": user " + Quote(input.username) + " may not " +
                           right.Describe() + " (needed for " + need.what + ")");
      }
    }
  }
  if (refusals.empty()) return {};
  std::string message;
  for (const std::string& r : refusals) message += (message.empty() ? "" : "; ") + r;
  return Deny(403, "Forbidden", message);
}

}  // namespace parallelrun::op::webhook
