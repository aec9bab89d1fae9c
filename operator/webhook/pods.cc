// The job's pods judged by the API server at apply time (see pods.h).
#include "operator/webhook/pods.h"

#include <regex>
#include <utility>
#include <vector>

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;

// Matches "spec.containers[0].env[3]..." etc.: group 1 the container list's tail after the index.
const std::regex kContainerPath(R"(^spec\.containers\[(\d+)\]\.([A-Za-z]+)(\[(\d+)\])?(.*)$)");
const std::regex kIndexedPath(R"(^spec\.(volumes)\[(\d+)\](.*)$)");

// Where the user's entries `user` sit inside `built` (the builder copies them in order, between
// the operator's own); -1 when they are not there.
int OffsetOf(const json& built, const json& user) {
  if (!built.is_array() || !user.is_array() || user.size() > built.size()) return -1;
  for (size_t start = 0; start + user.size() <= built.size(); ++start) {
    if (std::equal(user.begin(), user.end(), built.begin() + start)) return static_cast<int>(start);
  }
  return -1;
}

const json& PodValue(const rt::JobSpec& spec, const char* key) {
  static const json kNull;
  if (!spec.pod.is_object() || !spec.pod.contains(key)) return kNull;
  return spec.pod[key];
}

// The job field of an indexed entry the builder copied from the job's list `user`.
std::string ListEntry(const std::string& job_list, const json& built, const json& user, int index,
                      const std::string& rest) {
  const int offset = OffsetOf(built, user);
  if (offset < 0 || index < offset || index >= offset + static_cast<int>(user.size())) return "";
  return job_list + "[" + std::to_string(index - offset) + "]" + rest;
}

std::string ContainerField(const std::smatch& m, const json& pod, const rt::JobSpec& spec) {
  const json& containers = pod["spec"]["containers"];
  const size_t c = std::stoul(m[1]);
  if (!containers.is_array() || c >= containers.size()) return "";
  const std::string list = m[2];
  const std::string rest = m[5];
  if (list == "env" && m[4].matched) {
    return ListEntry("spec.env", containers[c].value("env", json::array()), PodValue(spec, "env"),
                     std::stoi(m[4]), rest);
  }
  if (list == "securityContext") return "spec.securityContext" + rest;
  const bool worker = containers[c].value("name", "") == reconciler::kWorkerRole;
  if (list == "resources" && worker && PodValue(spec, "resources").is_object()) {
    return "spec.resources" + rest;
  }
  if (list == "image" && !PodValue(spec, "image").is_null()) return "spec.image" + rest;
  if (list == "imagePullPolicy" && !PodValue(spec, "imagePullPolicy").is_null()) {
    return "spec.imagePullPolicy" + rest;
  }
  return "";
}

// The job's field behind one of the pod's fields: the prefix of `path` named by `pod_key`.
std::string SameField(const std::string& path, const char* pod_key, const char* job_key) {
  const std::string prefix = std::string("spec.") + pod_key;
  if (path.compare(0, prefix.size(), prefix) != 0) return "";
  if (path.size() > prefix.size() && path[prefix.size()] != '.' && path[prefix.size()] != '[') {
    return "";
  }
  return std::string("spec.") + job_key + path.substr(prefix.size());
}

// One cause "field: reason" of an Invalid message.
struct Cause {
  std::string field;
  std::string reason;
};

// `Pod "x" is invalid: [a: r1, b: r2]` or `... is invalid: a: r1` → its causes. A new cause starts
// at ", " followed by a field path (spec. or metadata.), as kube-apiserver joins them.
std::vector<Cause> CausesOf(const std::string& message) {
  std::vector<Cause> out;
  const std::string marker = " is invalid: ";
  const size_t at = message.find(marker);
  if (at == std::string::npos) return out;
  std::string list = message.substr(at + marker.size());
  if (list.size() >= 2 && list.front() == '[' && list.back() == ']') {
    list = list.substr(1, list.size() - 2);
  }
  static const std::regex kSplit(R"(, (?=(spec|metadata)[.\[]))");
  for (std::sregex_token_iterator it(list.begin(), list.end(), kSplit, -1), end; it != end; ++it) {
    const std::string cause = *it;
    const size_t colon = cause.find(": ");
    if (colon == std::string::npos) {
      out.push_back({"", cause});
    } else {
      out.push_back({cause.substr(0, colon), cause.substr(colon + 2)});
    }
  }
  return out;
}

// The API server's message inside a kube::Client error "<VERB> <path>: <code> <reason>: <msg>".
std::string ServerMessage(const std::string& error) {
  static const std::regex kHead(R"(^[A-Z]+ \S+: \d{3} [A-Za-z]+: )");
  std::smatch m;
  if (std::regex_search(error, m, kHead)) return error.substr(m.length(0));
  return error;
}

struct BuiltPod {
  std::string role;
  json pod;
};

rt::StatusOr<std::vector<BuiltPod>> BuildPods(const AdmissionInput& input, const rt::JobSpec& spec,
                                              const reconciler::ChildrenOptions& options) {
  const reconciler::JobMeta meta{JobNameOf(input), input.ns,
                                 "00000000-0000-0000-0000-000000000000"};
  std::vector<BuiltPod> pods;
  PR_ASSIGN_OR_RETURN(json coordinator, reconciler::BuildCoordinatorPod(meta, spec, options));
  pods.push_back({reconciler::kCoordinatorRole, std::move(coordinator)});
  if (spec.node_count > 0) {
    PR_ASSIGN_OR_RETURN(json worker, reconciler::BuildWorkerPod(meta, spec, 0, options));
    pods.push_back({reconciler::kWorkerRole, std::move(worker)});
  }
  return pods;
}

// The dry-run form of a built pod: a generateName, no owner.
json DryRunForm(json pod) {
  json& metadata = pod["metadata"];
  metadata["generateName"] = metadata.value("name", "") + "-";
  metadata.erase("name");
  metadata.erase("ownerReferences");
  return pod;
}

// A ResourceQuota that is full now: the pods are valid, the operator creates them once it frees.
bool ExceedsQuotaOnly(const rt::Status& error) {
  return error.code() == rt::StatusCode::kPermissionDenied &&
         error.message().find("exceeded quota: ") != std::string::npos;
}

Decision Deny(int code, std::string reason, std::string message) {
  return {false, code, std::move(reason), std::move(message)};
}

// One refused pod → the decision, naming the job's fields.
Decision Refusal(const BuiltPod& built, const rt::JobSpec& spec, const rt::Status& error) {
  const std::string server = ServerMessage(error.message());
  const std::string whose = "the job's " + built.role + " pod";
  if (error.code() == rt::StatusCode::kInvalidArgument) {
    std::vector<Cause> causes = CausesOf(server);
    if (causes.empty()) return Deny(422, "Invalid", whose + " is invalid: " + server);
    std::string message;
    for (const Cause& cause : causes) {
      const std::string field = JobFieldOf(cause.field, built.pod, spec);
      const std::string text = field.empty() ? whose + ": " + cause.field + ": " + cause.reason
                                             : field + ": " + cause.reason;
      message += (message.empty() ? "" : "; ") + text;
    }
    return Deny(422, "Invalid", message);
  }
  if (error.code() == rt::StatusCode::kPermissionDenied) {
    return Deny(403, "Forbidden", whose + " would be refused: " + server);
  }
  return Deny(500, "InternalError",
              "could not check the job's pods with the API server: " + error.message());
}

}  // namespace

std::string JobFieldOf(const std::string& pod_path, const json& pod, const rt::JobSpec& spec) {
  std::smatch m;
  if (std::regex_match(pod_path, m, kContainerPath)) return ContainerField(m, pod, spec);
  if (std::regex_match(pod_path, m, kIndexedPath)) {
    return ListEntry("spec.volumes", pod["spec"].value("volumes", json::array()), spec.volumes,
                     std::stoi(m[2]), m[3]);
  }
  for (const char* key : {"tolerations", "affinity", "nodeSelector", "serviceAccountName",
                          "priorityClassName", "securityContext"}) {
    if (std::string field = SameField(pod_path, key, key); !field.empty()) return field;
  }
  if (pod_path.rfind("metadata.annotations", 0) == 0) {
    return "spec.podAnnotations" + pod_path.substr(std::string("metadata.annotations").size());
  }
  return "";
}

PodJudge KubePodJudge(kube::Client& client) {
  return [&client](const std::string& ns, const json& pod) -> rt::Status {
    return client.CreateDryRun(kube::resources::kPods, ns, pod).status();
  };
}

Decision ReviewPods(const AdmissionInput& input, const PodReview& pods) {
  auto judged = SpecToJudge(input);
  if (!judged.ok()) return Deny(422, "Invalid", judged.status().message());
  if (!judged->has_value()) return {};
  const rt::JobSpec& spec = **judged;
  auto built = BuildPods(input, spec, pods.children);
  if (!built.ok()) return Deny(422, "Invalid", built.status().message());
  for (const BuiltPod& pod : *built) {
    const rt::Status answer = pods.judge(input.ns, DryRunForm(pod.pod));
    if (answer.ok() || ExceedsQuotaOnly(answer)) continue;
    return Refusal(pod, spec, answer);
  }
  return {};
}

}  // namespace parallelrun::op::webhook
