#include "runtime/cmd/output_check.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "runtime/base/files.h"

namespace parallelrun::rt {
namespace {

// "" when a file can be created (and removed) in `dir`, else the error text.
std::string TryCreateFile(const std::string& dir) {
  std::string name = JoinPath(dir, ".parallelrun-write-test-XXXXXX");
  std::vector<char> buf(name.begin(), name.end());
  buf.push_back('\0');
  const int fd = mkstemp(buf.data());
  if (fd < 0) return std::strerror(errno);
  close(fd);
  unlink(buf.data());
  return "";
}

// The folder that will be written first: `dir`, or its deepest existing parent.
std::string ExistingFolder(std::string dir) {
  while (!dir.empty() && dir != "/" && !IsDirectory(dir)) dir = Dirname(dir);
  return dir.empty() ? "." : dir;
}

// The spec's Volume named `name` (an opaque Kubernetes object), or null.
const nlohmann::json* FindVolume(const JobSpec& spec, const std::string& name) {
  if (!spec.volumes.is_array()) return nullptr;
  for (const auto& v : spec.volumes) {
    if (v.is_object() && v.value("name", "") == name) return &v;
  }
  return nullptr;
}

std::string Field(const nlohmann::json* volume, const char* kind, const char* key) {
  if (volume == nullptr || !volume->contains(kind) || !(*volume)[kind].is_object()) return "";
  const auto& source = (*volume)[kind];
  return source.contains(key) && source[key].is_string() ? source[key].get<std::string>() : "";
}

// What the output is, as the user wrote it, and how to make it writable for `uid`.
void DescribeOutput(const JobSpec& spec, uid_t uid, std::string* what, std::string* fix) {
  const DataRef& out = spec.output;
  const std::string uid_text = std::to_string(uid);
  if (out.volume.empty()) {
    *what = "spec.output (path \"" + out.path + "\")";
    *fix = "give uid " + uid_text + " write access to that folder, or choose another output";
    return;
  }
  *what = "spec.output (volume \"" + out.volume + "\", path \"" + out.path + "\"";
  const nlohmann::json* volume = FindVolume(spec, out.volume);
  const std::string host = Field(volume, "hostPath", "path");
  const std::string claim = Field(volume, "persistentVolumeClaim", "claimName");
  if (!host.empty()) {
    const std::string host_dir = JoinPath(host, out.path);
    *what += "; hostPath " + host_dir + " on the node)";
    *fix = "fsGroup does not apply to hostPath volumes: on the node, `chown -R " + uid_text + " " +
           host_dir +
           "` (or make it group-writable for the pod's group), or put the "
           "output on a PersistentVolumeClaim";
  } else if (!claim.empty()) {
    *what += "; persistentVolumeClaim " + claim + ")";
    *fix =
        "set the pod's securityContext.fsGroup (the default security context sets 10001) so "
        "the kubelet gives the volume to that group, and check that the volume's driver "
        "supports fsGroup (some NFS and hostPath-backed provisioners do not); otherwise "
        "change the owner of the folder on the volume to uid " +
        uid_text;
  } else {
    *what += ")";
    *fix = "give uid " + uid_text +
           " write access to the volume (securityContext.fsGroup, or "
           "the folder's owner)";
  }
}

}  // namespace

Status CheckOutputWritable(const JobSpec& spec, const std::string& output_dir) {
  std::vector<std::string> folders = {ExistingFolder(output_dir)};
  const std::string state_dir = JoinPath(output_dir, ".parallelrun");
  if (IsDirectory(state_dir)) folders.push_back(state_dir);
  for (const std::string& folder : folders) {
    const std::string error = TryCreateFile(folder);
    if (error.empty()) continue;
    const uid_t uid = geteuid();
    std::string what, fix;
    DescribeOutput(spec, uid, &what, &fix);
    return FailedPreconditionError(
        what + " is not writable by uid " + std::to_string(uid) + " (gid " +
        std::to_string(getegid()) + "): cannot create a file in " + folder +
        (IsDirectory(output_dir) ? "" : " (the output folder " + output_dir + " is made there)") +
        ": " + error + ". To fix it: " + fix);
  }
  return Status::Ok();
}

}  // namespace parallelrun::rt
