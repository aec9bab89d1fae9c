// Desired children of a ParallelRunJob as Kubernetes JSON objects.

#include "operator/reconciler/children.h"

#include <string_view>
#include <utility>
#include <vector>

#include "runtime/base/encoding.h"

namespace parallelrun::op::reconciler {
namespace {

using nlohmann::json;
using rt::InvalidArgumentError;
using rt::StatusOr;

constexpr const char* kSecretKeyToken = "token";
constexpr const char* kSecretKeyCa = "ca.crt";
constexpr const char* kSecretKeyTlsCrt = "tls.crt";
constexpr const char* kSecretKeyTlsKey = "tls.key";
constexpr int kNonRootId = 10001;

std::string SecretFile(const std::string& key) { return std::string(kSecretMountDir) + "/" + key; }

json JobLabels(const JobMeta& job) { return {{kJobLabel, job.name}}; }

json Metadata(const JobMeta& job, const std::string& name, json labels) {
  return {{"name", name},
          {"namespace", job.ns},
          {"labels", std::move(labels)},
          {"ownerReferences", json::array({OwnerReference(job)})}};
}

// A spec.<key> pod field when present and of the expected JSON type.
const json* PodField(const rt::JobSpec& spec, const char* key, json::value_t type) {
  if (!spec.pod.is_object()) return nullptr;
  auto it = spec.pod.find(key);
  if (it == spec.pod.end() || it->type() != type) return nullptr;
  return &*it;
}

std::string PodString(const rt::JobSpec& spec, const char* key) {
  const json* v = PodField(spec, key, json::value_t::string);
  return v != nullptr ? v->get<std::string>() : "";
}

// A DataRef path as a volume subPath: "./code//scorer/" -> "code/scorer"; "." -> "".
std::string SubPath(const std::string& path) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string_view part(path.data() + start, end - start);
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    start = end + 1;
  }
  return out;
}

// Adds the mount of a DataRef at `mount_path` (from rt::MountedPaths); none without a volume.
void AddDataMount(const rt::DataRef& ref, const std::string& mount_path, bool read_only,
                  json* mounts) {
  if (ref.volume.empty()) return;
  json mount = {{"name", ref.volume}, {"mountPath", mount_path}};
  const std::string sub_path = SubPath(ref.path);
  if (!sub_path.empty()) mount["subPath"] = sub_path;
  if (read_only) mount["readOnly"] = true;
  mounts->push_back(std::move(mount));
}

struct DataMounts {
  bool code = false;
  bool side_inputs = false;  // side inputs and models
};

json DataVolumeMounts(const rt::JobSpec& spec, DataMounts which) {
  const rt::ResolvedPaths paths = rt::MountedPaths(spec);
  json mounts = json::array();
  if (which.code) AddDataMount(spec.source_directory, paths.code_dir, true, &mounts);
  for (const rt::Input& in : spec.inputs) {
    AddDataMount(in.source, paths.inputs.at(in.name), true, &mounts);
  }
  if (which.side_inputs) {
    for (const rt::SideInput& side : spec.side_inputs) {
      AddDataMount(side.source, paths.side_inputs.at(side.name), true, &mounts);
    }
    for (const rt::Model& model : spec.models) {
      AddDataMount(model.source, paths.models.at(model.name), true, &mounts);
    }
  }
  AddDataMount(spec.output, paths.output_dir, false, &mounts);
  return mounts;
}

// The restricted default with the spec's securityContext fields over it (a field the spec sets
// replaces the default's; the admission webhook decides who may widen it).
json PodSecurityContext(const rt::JobSpec& spec) {
  json context = {{"runAsNonRoot", true},
                  {"runAsUser", kNonRootId},
                  {"runAsGroup", kNonRootId},
                  {"fsGroup", kNonRootId},
                  {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (const json* user = PodField(spec, "securityContext", json::value_t::object)) {
    for (const auto& [key, value] : user->items()) context[key] = value;
  }
  return context;
}

json ContainerSecurityContext() {
  return {{"allowPrivilegeEscalation", false},
          {"capabilities", {{"drop", {"ALL"}}}},
          {"readOnlyRootFilesystem", false}};
}

// Secret files are root-owned. With an fsGroup they belong to that group and 0440 suffices; a
// user security context without one may run as any uid, which then needs 0444 to read them.
// (Everything in the pod is the job's own code, which holds the token anyway.)
int SecretFileMode(const json& pod_security_context) {
  return pod_security_context.contains("fsGroup") ? 0440 : 0444;
}

// The secret volume; `keys` limits the files (workers get no TLS key).
json SecretVolume(const JobMeta& job, const std::vector<std::string>& keys, int mode) {
  json items = json::array();
  for (const std::string& key : keys) items.push_back({{"key", key}, {"path", key}});
  return {
      {"name", kSecretVolumeName},
      {"secret", {{"secretName", SecretName(job.name)}, {"defaultMode", mode}, {"items", items}}}};
}

rt::Status CheckReservedVolumeNames(const rt::JobSpec& spec) {
  if (!spec.volumes.is_array()) return rt::Status::Ok();
  for (size_t i = 0; i < spec.volumes.size(); ++i) {
    const json& v = spec.volumes[i];
    if (!v.is_object() || !v.contains("name") || !v["name"].is_string()) continue;
    const std::string name = v["name"].get<std::string>();
    if (name == kSecretVolumeName || name == kSpecVolumeName) {
      return InvalidArgumentError("spec.volumes[" + std::to_string(i) + "].name: \"" + name +
                                  "\" is reserved for the operator's own volume; rename it");
    }
  }
  return rt::Status::Ok();
}

StatusOr<std::string> Image(const rt::JobSpec& spec, const ChildrenOptions& options) {
  std::string image = PodString(spec, "image");
  if (image.empty()) image = options.default_image;
  if (image.empty()) {
    return InvalidArgumentError(
        "spec.image: not set, and the operator has no default image (--default-image)");
  }
  return image;
}

// What one pod differs in.
struct PodPlan {
  std::string name;
  std::string role;
  json extra_labels = json::object();
  std::string container_name;
  std::vector<std::string> command;
  json resources;  // null: none
  json mounts;     // data mounts
  std::vector<std::string> secret_keys;
  bool mount_spec = false;
};

StatusOr<json> BuildPod(const JobMeta& job, const rt::JobSpec& spec, const ChildrenOptions& options,
                        PodPlan plan) {
  PR_RETURN_IF_ERROR(CheckReservedVolumeNames(spec));
  PR_ASSIGN_OR_RETURN(std::string image, Image(spec, options));

  json labels = json::object();
  if (const json* user = PodField(spec, "podLabels", json::value_t::object)) labels = *user;
  labels[kJobLabel] = job.name;  // ours win
  labels[kRoleLabel] = plan.role;
  for (const auto& [key, value] : plan.extra_labels.items()) labels[key] = value;
  json metadata = Metadata(job, plan.name, std::move(labels));
  if (const json* user = PodField(spec, "podAnnotations", json::value_t::object)) {
    metadata["annotations"] = *user;
  }

  json env = json::array(
      {{{"name", "POD_IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}}});
  if (const json* user = PodField(spec, "env", json::value_t::array)) {
    env.insert(env.end(), user->begin(), user->end());
  }

  json container = {{"name", plan.container_name}, {"image", image}, {"command", plan.command}};
  std::string pull_policy = PodString(spec, "imagePullPolicy");
  if (pull_policy.empty()) pull_policy = options.default_image_pull_policy;
  if (!pull_policy.empty()) container["imagePullPolicy"] = pull_policy;
  container["env"] = std::move(env);
  if (plan.resources.is_object()) container["resources"] = plan.resources;
  json mounts = std::move(plan.mounts);
  mounts.push_back(
      {{"name", kSecretVolumeName}, {"mountPath", kSecretMountDir}, {"readOnly", true}});
  if (plan.mount_spec) {
    mounts.push_back({{"name", kSpecVolumeName},
                      {"mountPath", kSpecFilePath},
                      {"subPath", kSpecFileKey},
                      {"readOnly", true}});
  }
  container["volumeMounts"] = std::move(mounts);
  container["securityContext"] = ContainerSecurityContext();

  const json pod_security = PodSecurityContext(spec);
  json volumes = spec.volumes.is_array() ? spec.volumes : json::array();
  volumes.push_back(SecretVolume(job, plan.secret_keys, SecretFileMode(pod_security)));
  if (plan.mount_spec) {
    volumes.push_back(
        {{"name", kSpecVolumeName}, {"configMap", {{"name", SpecConfigMapName(job.name)}}}});
  }

  // No API token in job pods unless the spec names a ServiceAccount (its code then wants to talk
  // to the API server as that account; the webhook requires pod-creation rights for that).
  const bool own_account = !PodString(spec, "serviceAccountName").empty();
  json pod_spec = {{"restartPolicy", "Never"},
                   {"enableServiceLinks", false},
                   {"automountServiceAccountToken", own_account},
                   {"securityContext", pod_security},
                   {"containers", json::array({std::move(container)})},
                   {"volumes", std::move(volumes)}};
  for (const char* key : {"serviceAccountName", "priorityClassName"}) {
    if (const json* v = PodField(spec, key, json::value_t::string)) pod_spec[key] = *v;
  }
  if (const json* v = PodField(spec, "nodeSelector", json::value_t::object)) {
    pod_spec["nodeSelector"] = *v;
  }
  if (const json* v = PodField(spec, "tolerations", json::value_t::array)) {
    pod_spec["tolerations"] = *v;
  }
  if (const json* v = PodField(spec, "affinity", json::value_t::object)) pod_spec["affinity"] = *v;

  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", std::move(metadata)},
              {"spec", std::move(pod_spec)}};
}

}  // namespace

std::string SecretName(const std::string& job) { return job + "-parallelrun"; }
std::string SpecConfigMapName(const std::string& job) { return job + "-spec"; }
std::string ServiceName(const std::string& job) { return job + "-coordinator"; }
std::string NetworkPolicyName(const std::string& job) { return job + "-coordinator"; }
std::string CoordinatorPodName(const std::string& job) { return job + "-coordinator"; }
std::string WorkerPodName(const std::string& job, int index) {
  return job + "-worker-" + std::to_string(index);
}

std::string CoordinatorServerName(const JobMeta& job) {
  return ServiceName(job.name) + "." + job.ns + ".svc";
}

std::string CoordinatorUrl(const JobMeta& job) {
  return "https://" + CoordinatorServerName(job) + ":" + std::to_string(kCoordinatorPort);
}

std::string PodSelector(const std::string& job, const std::string& role) {
  std::string selector = std::string(kJobLabel) + "=" + job;
  if (!role.empty()) selector += std::string(",") + kRoleLabel + "=" + role;
  return selector;
}

json OwnerReference(const JobMeta& job) {
  return {{"apiVersion", rt::kApiVersion},
          {"kind", rt::kKind},
          {"name", job.name},
          {"uid", job.uid},
          {"controller", true},
          {"blockOwnerDeletion", true}};
}

json BuildSecret(const JobMeta& job, const JobCredentials& credentials) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", Metadata(job, SecretName(job.name), JobLabels(job))},
          {"type", "Opaque"},
          {"data",
           {{kSecretKeyToken, rt::Base64Encode(credentials.token)},
            {kSecretKeyCa, rt::Base64Encode(credentials.ca_crt)},
            {kSecretKeyTlsCrt, rt::Base64Encode(credentials.tls_crt)},
            {kSecretKeyTlsKey, rt::Base64Encode(credentials.tls_key)}}}};
}

json BuildSpecConfigMap(const JobMeta& job, const rt::JobSpec& spec) {
  // The coordinator takes the job's UID as the owner of the output folder (SPEC.md §4.3).
  rt::JobSpec owned = spec;
  owned.name = job.name;
  owned.namespace_ = job.ns;
  owned.uid = job.uid;
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", Metadata(job, SpecConfigMapName(job.name), JobLabels(job))},
          {"data", {{kSpecFileKey, rt::ToJson(owned).dump()}}}};
}

json BuildService(const JobMeta& job) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", Metadata(job, ServiceName(job.name), JobLabels(job))},
          {"spec",
           {{"clusterIP", "None"},
            {"selector", {{kJobLabel, job.name}, {kRoleLabel, kCoordinatorRole}}},
            {"ports", json::array({{{"name", "https"},
                                    {"port", kCoordinatorPort},
                                    {"targetPort", kCoordinatorPort},
                                    {"protocol", "TCP"}}})}}}};
}

json BuildNetworkPolicy(const JobMeta& job, const ChildrenOptions& options) {
  json from = json::array({{{"podSelector", {{"matchLabels", JobLabels(job)}}}}});
  if (!options.operator_namespace.empty() && options.operator_pod_labels.is_object() &&
      !options.operator_pod_labels.empty()) {
    from.push_back(
        {{"namespaceSelector",
          {{"matchLabels", {{"kubernetes.io/metadata.name", options.operator_namespace}}}}},
         {"podSelector", {{"matchLabels", options.operator_pod_labels}}}});
  }
  return {
      {"apiVersion", "networking.k8s.io/v1"},
      {"kind", "NetworkPolicy"},
      {"metadata", Metadata(job, NetworkPolicyName(job.name), JobLabels(job))},
      {"spec",
       {{"podSelector", {{"matchLabels", {{kJobLabel, job.name}, {kRoleLabel, kCoordinatorRole}}}}},
        {"policyTypes", {"Ingress"}},
        {"ingress", json::array({{{"from", std::move(from)},
                                  {"ports", json::array({{{"protocol", "TCP"},
                                                          {"port", kCoordinatorPort}}})}}})}}}};
}

StatusOr<json> BuildCoordinatorPod(const JobMeta& job, const rt::JobSpec& spec,
                                   const ChildrenOptions& options) {
  PodPlan plan;
  plan.name = CoordinatorPodName(job.name);
  plan.role = kCoordinatorRole;
  plan.container_name = kCoordinatorRole;
  plan.command = {"parallelrun",
                  "coordinator",
                  "--spec",
                  kSpecFilePath,
                  "--listen",
                  "$(POD_IP):" + std::to_string(kCoordinatorPort),
                  "--token-file",
                  SecretFile(kSecretKeyToken),
                  "--tls-cert",
                  SecretFile(kSecretKeyTlsCrt),
                  "--tls-key",
                  SecretFile(kSecretKeyTlsKey),
                  "--paths",
                  "mounted",
                  "--termination-log",
                  kTerminationLogPath};
  plan.resources = options.coordinator_resources;
  plan.mounts = DataVolumeMounts(spec, {.code = false, .side_inputs = false});
  plan.secret_keys = {kSecretKeyToken, kSecretKeyTlsCrt, kSecretKeyTlsKey};
  plan.mount_spec = true;
  PR_ASSIGN_OR_RETURN(json pod, BuildPod(job, spec, options, std::move(plan)));

  json& container = pod["spec"]["containers"][0];
  container["ports"] =
      json::array({{{"name", "https"}, {"containerPort", kCoordinatorPort}, {"protocol", "TCP"}}});
  // The final status fields, read by the operator after the pod is gone (SPEC.md §4.1).
  container["terminationMessagePath"] = kTerminationLogPath;
  container["terminationMessagePolicy"] = "FallbackToLogsOnError";
  // The pod's own DNS name under the headless Service: J-coordinator.J-coordinator.N.svc.
  pod["spec"]["subdomain"] = ServiceName(job.name);
  return pod;
}

StatusOr<json> BuildWorkerPod(const JobMeta& job, const rt::JobSpec& spec, int index,
                              const ChildrenOptions& options) {
  if (index < 0 || index >= spec.node_count) {
    return InvalidArgumentError("worker index " + std::to_string(index) + " outside [0, " +
                                std::to_string(spec.node_count) + ")");
  }
  PodPlan plan;
  plan.name = WorkerPodName(job.name, index);
  plan.role = kWorkerRole;
  plan.extra_labels = {{kWorkerIndexLabel, std::to_string(index)}};
  plan.container_name = kWorkerRole;
  plan.command = {"parallelrun",   "agent",
                  "--coordinator", CoordinatorUrl(job),
                  "--token-file",  SecretFile(kSecretKeyToken),
                  "--ca-file",     SecretFile(kSecretKeyCa),
                  "--node-name",   "$(POD_IP)"};
  // The pod log shows the node's user output and failed attempts (docs/why-did-my-job-fail.md).
  plan.command.push_back("--echo-user-logs");
  if (const json* r = PodField(spec, "resources", json::value_t::object)) plan.resources = *r;
  plan.mounts = DataVolumeMounts(spec, {.code = true, .side_inputs = true});
  plan.secret_keys = {kSecretKeyToken, kSecretKeyCa};
  PR_ASSIGN_OR_RETURN(json pod, BuildPod(job, spec, options, std::move(plan)));
  if (!spec.models.empty()) {
    // The models' root and where each one is, for entry scripts and the azureml.core.Model
    // stand-in (the job-spec model keeps these two names out of spec.env).
    json& env = pod["spec"]["containers"][0]["env"];
    env.push_back({{"name", "AZUREML_MODEL_DIR"}, {"value", rt::kMountedModelsDir}});
    env.push_back({{"name", "PARALLELRUN_MODELS"},
                   {"value", rt::ModelsEnvValue(spec, rt::MountedPaths(spec).models)}});
  }
  return pod;
}

}  // namespace parallelrun::op::reconciler
