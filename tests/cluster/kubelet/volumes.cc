#include "tests/cluster/kubelet/volumes.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;

struct FileToWrite {
  std::string path;  // relative to the volume folder
  std::string content;
  int mode = 0644;
};

// A path inside a volume: relative, no "..".
bool SafeRelativePath(const std::string& path) {
  if (path.empty() || path[0] == '/') return false;
  fs::path p(path);
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

bool WriteVolumeFiles(const std::string& dir, const std::vector<FileToWrite>& files,
                      std::string* message) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) {
    *message = "cannot create " + dir + ": " + ec.message();
    return false;
  }
  for (const auto& f : files) {
    if (!SafeRelativePath(f.path)) {
      *message = "invalid item path \"" + f.path + "\": must be relative without \"..\"";
      return false;
    }
    fs::path path = fs::path(dir) / f.path;
    fs::create_directories(path.parent_path(), ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << f.content;
    out.close();
    if (!out) {
      *message = "cannot write " + path.string();
      return false;
    }
    chmod(path.c_str(), static_cast<mode_t>(f.mode));
  }
  return true;
}

// Data of a ConfigMap (data + binaryData) or Secret (base64 data) as raw bytes.
std::map<std::string, std::string> KeyData(const Json& obj, bool secret) {
  std::map<std::string, std::string> out;
  for (const char* field : {"data", "binaryData"}) {
    auto it = obj.find(field);
    if (it == obj.end() || !it->is_object()) continue;
    bool base64 = secret || std::string(field) == "binaryData";
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) continue;
      out[k] = base64 ? Base64Decode(v.get<std::string>()).value_or("") : v.get<std::string>();
    }
  }
  return out;
}

int ModeOf(const Json& j, const char* field, int fallback) {
  auto it = j.find(field);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : fallback;
}

// Files of a configMap or secret source (volume or projected), honouring items and optional.
// False with `message` (the part after "volume \"x\" : ") when required data is missing.
bool KeyFiles(const Json& source, bool secret, const std::string& ns, const ClusterView& view,
              int default_mode, std::vector<FileToWrite>* files, std::string* message) {
  std::string name = StringAt(source, secret ? "secretName" : "name");
  if (secret && name.empty()) name = StringAt(source, "name");  // projected secret source
  bool optional = source.value("optional", false);
  std::optional<Json> obj =
      view.get ? view.get(secret ? "secrets" : "configmaps", ns, name) : std::nullopt;
  if (!obj) {
    // The cluster CA that real clusters publish in every namespace.
    if (!secret && name == "kube-root-ca.crt" && !view.ca_file.empty()) {
      std::ifstream in(view.ca_file, std::ios::binary);
      std::string ca((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      obj = Json{{"data", {{"ca.crt", ca}}}};
    } else if (optional) {
      return true;
    } else {
      *message = std::string(secret ? "secret" : "configmap") + " \"" + name + "\" not found";
      return false;
    }
  }
  auto data = KeyData(*obj, secret);
  auto items = source.find("items");
  if (items == source.end() || !items->is_array() || items->empty()) {
    for (const auto& [k, v] : data) files->push_back({k, v, default_mode});
    return true;
  }
  for (const auto& item : *items) {
    std::string key = StringAt(item, "key");
    auto found = data.find(key);
    if (found == data.end()) {
      if (optional) continue;
      *message = std::string(secret ? "secret" : "configmap") + " references non-existent " +
                 (secret ? "secret" : "config") + " key: " + key;
      return false;
    }
    files->push_back(
        {StringAt(item, "path", key), found->second, ModeOf(item, "mode", default_mode)});
  }
  return true;
}

bool DownwardFiles(const Json& pod, const Json& source, int default_mode,
                   std::vector<FileToWrite>* files, std::string* message) {
  auto items = source.find("items");
  if (items == source.end() || !items->is_array()) return true;
  for (const auto& item : *items) {
    std::string value;
    if (item.contains("fieldRef")) {
      std::string path = StringAt(item["fieldRef"], "fieldPath");
      if (!FieldPathValue(pod, path, &value)) {
        *message = "unsupported downward API fieldPath \"" + path + "\"";
        return false;
      }
    } else {
      *message = "downward API item " + StringAt(item, "path") + " needs a fieldRef";
      return false;
    }
    files->push_back({StringAt(item, "path"), value, ModeOf(item, "mode", default_mode)});
  }
  return true;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool ServiceAccountFiles(const std::string& ns, const std::string& account, const ClusterView& view,
                         std::vector<FileToWrite>* files) {
  files->push_back(
      {"token", view.service_account_token ? view.service_account_token(ns, account) : "", 0644});
  files->push_back({"ca.crt", ReadFileOrEmpty(view.ca_file), 0644});
  files->push_back({"namespace", ns, 0644});
  return true;
}

bool AutomountServiceAccount(const Json& pod, const ClusterView& view) {
  const Json* pod_flag = JsonAt(pod, "spec.automountServiceAccountToken");
  if (pod_flag != nullptr && pod_flag->is_boolean()) return pod_flag->get<bool>();
  std::string ns = StringAt(pod, "metadata.namespace", "default");
  std::string account = StringAt(pod, "spec.serviceAccountName", "default");
  if (view.get) {
    if (auto sa = view.get("serviceaccounts", ns, account)) {
      auto it = sa->find("automountServiceAccountToken");
      if (it != sa->end() && it->is_boolean()) return it->get<bool>();
    }
  }
  return true;
}

// Sets up one volume; false with the FailedMount detail in `message`.
bool PrepareVolume(const Json& pod, const Json& volume, const std::string& pod_dir,
                   const std::string& state_dir, const ClusterView& view, std::string* host_path,
                   std::string* message) {
  const std::string ns = StringAt(pod, "metadata.namespace", "default");
  const std::string name = StringAt(volume, "name");
  std::error_code ec;
  if (volume.contains("hostPath")) {
    std::string path = StringAt(volume["hostPath"], "path");
    std::string type = StringAt(volume["hostPath"], "type");
    bool is_dir = fs::is_directory(path, ec);
    bool exists = fs::exists(path, ec);
    if (type == "" || type == "DirectoryOrCreate") {
      if (!exists) fs::create_directories(path, ec);
    } else if (type == "FileOrCreate") {
      if (!exists) {
        fs::create_directories(fs::path(path).parent_path(), ec);
        std::ofstream touch(path, std::ios::app);
      }
    } else if (type == "Directory" && !is_dir) {
      *message = "hostPath type check failed: " + path + " is not a directory";
      return false;
    } else if (type == "File" && (!exists || is_dir)) {
      *message = "hostPath type check failed: " + path + " is not a file";
      return false;
    }
    if (ec) {
      *message = "cannot create hostPath " + path + ": " + ec.message();
      return false;
    }
    *host_path = path;
    return true;
  }
  if (volume.contains("persistentVolumeClaim")) {
    std::string claim = StringAt(volume["persistentVolumeClaim"], "claimName");
    if (!view.get || !view.get("persistentvolumeclaims", ns, claim)) {
      *message = "persistentvolumeclaim \"" + claim + "\" not found";
      return false;
    }
    std::string path = state_dir + "/volumes/" + ns + "/" + claim;
    fs::create_directories(path, ec);
    if (ec) {
      *message = "cannot create " + path + ": " + ec.message();
      return false;
    }
    *host_path = path;
    return true;
  }
  if (volume.contains("emptyDir")) {
    std::string path = pod_dir + "/volumes/empty-dir/" + name;
    fs::create_directories(path, ec);
    // World-writable, as a real emptyDir, so a container of any user can use it.
    if (!ec) fs::permissions(path, fs::perms::all, ec);
    *host_path = path;
    return !ec;
  }
  std::vector<FileToWrite> files;
  std::string kind;
  if (volume.contains("configMap") || volume.contains("secret")) {
    bool secret = volume.contains("secret");
    kind = secret ? "secret" : "configmap";
    const Json& source = volume[secret ? "secret" : "configMap"];
    if (!KeyFiles(source, secret, ns, view, ModeOf(source, "defaultMode", 0644), &files, message)) {
      return false;
    }
  } else if (volume.contains("downwardAPI")) {
    kind = "downward-api";
    const Json& source = volume["downwardAPI"];
    if (!DownwardFiles(pod, source, ModeOf(source, "defaultMode", 0644), &files, message)) {
      return false;
    }
  } else if (volume.contains("projected")) {
    kind = "projected";
    const Json& projected = volume["projected"];
    int mode = ModeOf(projected, "defaultMode", 0644);
    auto sources = projected.find("sources");
    if (sources != projected.end() && sources->is_array()) {
      for (const auto& source : *sources) {
        if (source.contains("configMap") || source.contains("secret")) {
          bool secret = source.contains("secret");
          if (!KeyFiles(source[secret ? "secret" : "configMap"], secret, ns, view, mode, &files,
                        message)) {
            return false;
          }
        } else if (source.contains("downwardAPI")) {
          if (!DownwardFiles(pod, source["downwardAPI"], mode, &files, message)) return false;
        } else if (source.contains("serviceAccountToken")) {
          std::string account = StringAt(pod, "spec.serviceAccountName", "default");
          std::string token =
              view.service_account_token ? view.service_account_token(ns, account) : "";
          files.push_back({StringAt(source["serviceAccountToken"], "path", "token"), token, mode});
        } else {
          *message = "unsupported projected volume source " + source.dump();
          return false;
        }
      }
    }
  } else {
    *message = "volume type not supported by the test cluster: " + volume.dump();
    return false;
  }
  std::string path = pod_dir + "/volumes/" + kind + "/" + name;
  if (!WriteVolumeFiles(path, files, message)) return false;
  *host_path = path;
  return true;
}

}  // namespace

bool PrepareVolumes(const Json& pod, const std::string& pod_dir, const std::string& state_dir,
                    const ClusterView& view, PreparedVolumes* out, std::string* failed_volume,
                    std::string* message) {
  PreparedVolumes result;
  const Json* volumes = JsonAt(pod, "spec.volumes");
  if (volumes != nullptr && volumes->is_array()) {
    for (const auto& volume : *volumes) {
      std::string name = StringAt(volume, "name");
      std::string detail;
      std::string host_path;
      if (!PrepareVolume(pod, volume, pod_dir, state_dir, view, &host_path, &detail)) {
        *failed_volume = name;
        *message = "MountVolume.SetUp failed for volume \"" + name + "\" : " + detail;
        return false;
      }
      result.host_paths[name] = host_path;
    }
  }
  if (AutomountServiceAccount(pod, view)) {
    std::vector<FileToWrite> files;
    std::string ns = StringAt(pod, "metadata.namespace", "default");
    ServiceAccountFiles(ns, StringAt(pod, "spec.serviceAccountName", "default"), view, &files);
    std::string path = pod_dir + "/volumes/serviceaccount";
    std::string detail;
    if (!WriteVolumeFiles(path, files, &detail)) {
      *failed_volume = "kube-api-access";
      *message = "MountVolume.SetUp failed for volume \"kube-api-access\" : " + detail;
      return false;
    }
    result.service_account_dir = path;
  }
  *out = std::move(result);
  return true;
}

bool ContainerMounts(const Json& pod, const Json& container, const PreparedVolumes& volumes,
                     const std::vector<std::string>& env, const std::string& hosts_file,
                     const std::string& termination_log, std::vector<BindMount>* mounts,
                     std::string* error) {
  std::vector<BindMount> out;
  std::set<std::string> targets;
  auto it = container.find("volumeMounts");
  if (it != container.end() && it->is_array()) {
    for (const auto& vm : *it) {
      std::string name = StringAt(vm, "name");
      std::string mount_path = StringAt(vm, "mountPath");
      auto found = volumes.host_paths.find(name);
      if (found == volumes.host_paths.end()) {
        *error = "volumeMounts " + name + ": no volume of that name in spec.volumes";
        return false;
      }
      if (mount_path.empty() || mount_path[0] != '/') {
        *error = "volumeMounts " + name + ": mountPath \"" + mount_path + "\" must be absolute";
        return false;
      }
      std::string sub_path = StringAt(vm, "subPath");
      if (sub_path.empty() && vm.contains("subPathExpr")) {
        sub_path = ExpandVars(StringAt(vm, "subPathExpr"), env);
      }
      std::string source = found->second;
      if (!sub_path.empty()) {
        if (!SafeRelativePath(sub_path)) {
          *error = "volumeMounts " + name + ": subPath \"" + sub_path +
                   "\" must be a relative path without \"..\"";
          return false;
        }
        source += "/" + sub_path;
        std::error_code ec;
        // As a real kubelet does, a missing subPath becomes a folder in the volume.
        if (!fs::exists(source, ec)) fs::create_directories(source, ec);
      }
      bool read_only = vm.value("readOnly", false);
      const Json* volumes_spec = JsonAt(pod, "spec.volumes");
      if (volumes_spec != nullptr && volumes_spec->is_array()) {
        for (const auto& v : *volumes_spec) {
          if (StringAt(v, "name") != name) continue;
          // Secrets, ConfigMaps and friends are always read-only in a real pod.
          if (v.contains("configMap") || v.contains("secret") || v.contains("projected") ||
              v.contains("downwardAPI")) {
            read_only = true;
          }
          if (v.contains("persistentVolumeClaim") &&
              v["persistentVolumeClaim"].value("readOnly", false)) {
            read_only = true;
          }
        }
      }
      out.push_back({source, mount_path, read_only});
      targets.insert(mount_path);
    }
  }
  if (!volumes.service_account_dir.empty() && !targets.count(kServiceAccountMountPath)) {
    out.push_back({volumes.service_account_dir, kServiceAccountMountPath, true});
  }
  if (!hosts_file.empty() && !targets.count("/etc/hosts")) {
    out.push_back({hosts_file, "/etc/hosts", false});
  }
  if (!termination_log.empty()) {
    std::string path = StringAt(container, "terminationMessagePath", "/dev/termination-log");
    if (!targets.count(path)) out.push_back({termination_log, path, false});
  }
  *mounts = std::move(out);
  return true;
}

namespace {

void ChangeOwnership(const std::string& path, gid_t group, bool read_only) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (lchown(path.c_str(), static_cast<uid_t>(-1), group) != 0) return;
  if (S_ISLNK(st.st_mode)) return;
  mode_t mask = read_only ? 0440 : 0660;
  if (S_ISDIR(st.st_mode)) mask |= S_ISGID | 0110;
  chmod(path.c_str(), (st.st_mode & 07777) | mask);
}

}  // namespace

void ApplyFsGroup(const Json& pod, const PreparedVolumes& volumes, int64_t fs_group) {
  std::vector<std::pair<std::string, bool>> roots;  // host path, read-only kind
  if (const Json* specs = JsonAt(pod, "spec.volumes"); specs != nullptr && specs->is_array()) {
    for (const auto& v : *specs) {
      auto found = volumes.host_paths.find(StringAt(v, "name"));
      if (found == volumes.host_paths.end() || v.contains("hostPath")) continue;
      bool read_only = v.contains("configMap") || v.contains("secret") ||
                       v.contains("downwardAPI") || v.contains("projected");
      roots.emplace_back(found->second, read_only);
    }
  }
  if (!volumes.service_account_dir.empty()) roots.emplace_back(volumes.service_account_dir, true);
  const gid_t group = static_cast<gid_t>(fs_group);
  for (const auto& [root, read_only] : roots) {
    ChangeOwnership(root, group, read_only);
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      ChangeOwnership(it->path().string(), group, read_only);
    }
  }
}

}  // namespace parallelrun::rt::cluster
