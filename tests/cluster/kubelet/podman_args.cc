#include "tests/cluster/kubelet/podman_args.h"

#include <cmath>

#include "tests/cluster/kubelet/container_env.h"

namespace parallelrun::rt::cluster {
namespace {

std::vector<std::string> StringList(const Json& obj, const char* field) {
  std::vector<std::string> out;
  auto it = obj.find(field);
  if (it == obj.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// A securityContext field: the container's wins over the pod's (for the fields both have).
const Json* SecurityField(const Json& pod, const Json& container, const std::string& field) {
  const Json* own = JsonAt(container, "securityContext." + field);
  if (own != nullptr && !own->is_null()) return own;
  const Json* pod_level = JsonAt(pod, "spec.securityContext." + field);
  return pod_level != nullptr && !pod_level->is_null() ? pod_level : nullptr;
}

std::optional<int64_t> IntField(const Json* j) {
  if (j == nullptr || !j->is_number_integer()) return std::nullopt;
  return j->get<int64_t>();
}

bool BoolField(const Json& obj, const std::string& path) {
  const Json* j = JsonAt(obj, path);
  return j != nullptr && j->is_boolean() && j->get<bool>();
}

// "p_ns(uid)": how the kubelet names a pod in its messages (format.Pod).
std::string PodDescription(const Json& pod) {
  return StringAt(pod, "metadata.name") + "_" + StringAt(pod, "metadata.namespace", "default") +
         "(" + StringAt(pod, "metadata.uid") + ")";
}

bool AllDigits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// The user part of an image's USER ("1000:1000" -> "1000", "" stays "").
std::string ImageUserName(const ImageConfig& image) {
  return image.user.substr(0, image.user.find(':'));
}

bool AddUserArgs(const Json& pod, const Json& container, const ImageConfig& image,
                 std::vector<std::string>* args) {
  std::optional<int64_t> uid = IntField(SecurityField(pod, container, "runAsUser"));
  std::optional<int64_t> gid = IntField(SecurityField(pod, container, "runAsGroup"));
  if (uid) {
    std::string user = std::to_string(*uid);
    if (gid) user += ":" + std::to_string(*gid);
    args->push_back("--user=" + user);
  } else if (gid) {
    std::string name = ImageUserName(image);
    args->push_back("--user=" + (name.empty() ? std::string("0") : name) + ":" +
                    std::to_string(*gid));
  }
  // fsGroup and supplementalGroups become supplementary groups, as on a real node.
  if (auto fs_group = PodFsGroup(pod)) args->push_back("--group-add=" + std::to_string(*fs_group));
  if (const Json* groups = JsonAt(pod, "spec.securityContext.supplementalGroups");
      groups != nullptr && groups->is_array()) {
    for (const auto& g : *groups) {
      if (g.is_number_integer()) args->push_back("--group-add=" + std::to_string(g.get<int64_t>()));
    }
  }
  return true;
}

bool AddSecurityArgs(const Json& pod, const Json& container, std::vector<std::string>* args,
                     std::string* error) {
  if (BoolField(container, "securityContext.privileged")) args->push_back("--privileged");
  if (BoolField(container, "securityContext.readOnlyRootFilesystem")) {
    // A real container runtime adds no tmpfs of its own to a read-only root file system.
    args->push_back("--read-only");
    args->push_back("--read-only-tmpfs=false");
  }
  if (const Json* caps = JsonAt(container, "securityContext.capabilities")) {
    for (const auto& cap : StringList(*caps, "drop")) args->push_back("--cap-drop=" + cap);
    for (const auto& cap : StringList(*caps, "add")) args->push_back("--cap-add=" + cap);
  }
  const Json* escalation = JsonAt(container, "securityContext.allowPrivilegeEscalation");
  if (escalation != nullptr && escalation->is_boolean() && !escalation->get<bool>()) {
    args->push_back("--security-opt=no-new-privileges");
  }
  const Json* seccomp = SecurityField(pod, container, "seccompProfile");
  std::string type = seccomp != nullptr ? StringAt(*seccomp, "type") : "";
  if (type.empty() || type == "Unconfined") {
    args->push_back("--security-opt=seccomp=unconfined");  // the kubelet's default
  } else if (type != "RuntimeDefault") {
    *error = "securityContext.seccompProfile.type: \"" + type +
             "\" is not supported by the test cluster (RuntimeDefault or Unconfined)";
    return false;
  }
  return true;
}

bool AddResourceArgs(const Json& container, const PodmanRunInputs& in,
                     std::vector<std::string>* args, std::string* error) {
  auto quantity = [&](const char* path, long double* value) -> bool {
    const Json* q = JsonAt(container, path);
    if (q == nullptr || q->is_null()) return false;
    std::string text = q->is_string() ? q->get<std::string>() : q->dump();
    std::optional<long double> parsed = ParseQuantity(text);
    if (!parsed || *parsed < 0) {
      *error = std::string(path) + ": \"" + text + "\" is not a quantity";
      return false;
    }
    *value = *parsed;
    return true;
  };
  long double v = 0;
  if (in.memory_controller && quantity("resources.limits.memory", &v)) {
    std::string bytes = std::to_string(static_cast<long long>(std::ceil(v)));
    args->push_back("--memory=" + bytes);
    args->push_back("--memory-swap=" + bytes);  // no swap beyond the limit, as on a real node
  }
  if (!error->empty()) return false;
  if (in.cpu_controller && quantity("resources.limits.cpu", &v)) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.3Lf", v);
    args->push_back(std::string("--cpus=") + buf);
  }
  if (!error->empty()) return false;
  if (in.cpu_controller && quantity("resources.requests.cpu", &v)) {
    long long shares = std::max<long long>(2, std::llround(v * 1024));
    args->push_back("--cpu-shares=" + std::to_string(shares));
  }
  return error->empty();
}

}  // namespace

bool ParseImageInspect(const std::string& json, ImageConfig* out, std::string* error) {
  Json parsed = Json::parse(json, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array() || parsed.empty() || !parsed[0].is_object()) {
    *error =
        "podman image inspect: expected a JSON array with one image, got: " + json.substr(0, 200);
    return false;
  }
  const Json& image = parsed[0];
  ImageConfig config;
  config.id = StringAt(image, "Id");
  if (config.id.empty()) {
    *error = "podman image inspect: the image has no Id";
    return false;
  }
  const Json* c = JsonAt(image, "Config");
  if (c != nullptr && c->is_object()) {
    config.user = StringAt(*c, "User");
    config.working_dir = StringAt(*c, "WorkingDir");
    config.entrypoint = StringList(*c, "Entrypoint");
    config.cmd = StringList(*c, "Cmd");
  }
  *out = std::move(config);
  return true;
}

std::string NormalizeImageRef(const std::string& image) {
  if (image.find('@') != std::string::npos) return image;
  auto slash = image.rfind('/');
  auto colon = image.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) return image;
  return image + ":latest";
}

std::string VerifyRunAsNonRoot(const Json& pod, const Json& container, const ImageConfig& image) {
  const Json* non_root = SecurityField(pod, container, "runAsNonRoot");
  if (non_root == nullptr || !non_root->is_boolean() || !non_root->get<bool>()) return "";
  const std::string where =
      "(pod: \"" + PodDescription(pod) + "\", container: " + StringAt(container, "name") + ")";
  if (std::optional<int64_t> uid = IntField(SecurityField(pod, container, "runAsUser"))) {
    return *uid == 0 ? "container's runAsUser breaks non-root policy " + where : "";
  }
  std::string user = ImageUserName(image);
  if (user.empty() || (AllDigits(user) && std::stoll(user) == 0)) {
    return "container has runAsNonRoot and image will run as root " + where;
  }
  if (!AllDigits(user)) {
    return "container has runAsNonRoot and image has non-numeric user (" + user +
           "), cannot verify user is non-root " + where;
  }
  return "";
}

std::vector<std::string> ContainerProcessArgv(const Json& container, const ImageConfig& image,
                                              const std::vector<std::string>& env) {
  std::vector<std::string> command, args;
  for (const auto& a : StringList(container, "command")) command.push_back(ExpandVars(a, env));
  for (const auto& a : StringList(container, "args")) args.push_back(ExpandVars(a, env));
  std::vector<std::string> argv;
  if (!command.empty()) {
    argv = command;  // replaces ENTRYPOINT, and the image's CMD is dropped
  } else {
    argv = image.entrypoint;
    if (args.empty()) args = image.cmd;
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::optional<int64_t> PodFsGroup(const Json& pod) {
  return IntField(JsonAt(pod, "spec.securityContext.fsGroup"));
}

bool PodmanRunArgs(const Json& pod, const Json& container, const ImageConfig& image,
                   const PodmanRunInputs& in, std::vector<std::string>* args, std::string* error) {
  error->clear();
  if (in.argv.empty()) {
    *error = "no command specified: the container has no command and image " + image.id +
             " has neither ENTRYPOINT nor CMD";
    return false;
  }
  std::vector<std::string> out = {"run", "--name=" + in.name, "--cidfile=" + in.cid_file,
                                  "--pull=never", "--network=host", "--no-hosts",
                                  "--log-driver=passthrough", "--rm=false", "--tty=false",
                                  "--interactive=false", "--sig-proxy=false",
                                  // A runtime adds no user to the image's /etc/passwd.
                                  "--passwd=false"};
  if (!in.hostname.empty()) out.push_back("--hostname=" + in.hostname);
  const std::pair<const char*, std::string> labels[] = {
      {kLabelPodUid, StringAt(pod, "metadata.uid")},
      {kLabelPodName, StringAt(pod, "metadata.name")},
      {kLabelPodNamespace, StringAt(pod, "metadata.namespace", "default")},
      {kLabelContainerName, StringAt(container, "name")},
      {kLabelClusterState, in.state_dir}};
  for (const auto& [k, v] : labels) out.push_back("--label=" + std::string(k) + "=" + v);
  AddUserArgs(pod, container, image, &out);
  if (!AddSecurityArgs(pod, container, &out, error)) return false;
  if (!AddResourceArgs(container, in, &out, error)) return false;
  for (const auto& m : in.mounts) {
    if (m.source.find(',') != std::string::npos || m.target.find(',') != std::string::npos) {
      *error = "volume mount " + m.target + " (from " + m.source +
               "): paths with a comma cannot be mounted by the test cluster";
      return false;
    }
    out.push_back("--mount=type=bind,source=" + m.source + ",destination=" + m.target +
                  (m.read_only ? ",ro=true" : ""));
  }
  std::string working_dir = StringAt(container, "workingDir");
  if (!working_dir.empty()) out.push_back("--workdir=" + working_dir);
  for (const auto& e : in.env) {
    if (e.find('=') != std::string::npos) out.push_back("--env=" + e);
  }
  out.push_back("--entrypoint=" + Json(in.argv).dump());
  out.push_back(image.id);
  *args = std::move(out);
  return true;
}

}  // namespace parallelrun::rt::cluster
