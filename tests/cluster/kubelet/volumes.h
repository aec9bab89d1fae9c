#pragma once
// A pod's volumes as host folders, and a container's bind mounts over them.
//
// Volume kinds and where they live on the host:
//   hostPath               the path itself (created as a folder when missing and the type is
//                          "", DirectoryOrCreate or FileOrCreate)
//   persistentVolumeClaim  DIR/volumes/<ns>/<claimName>/ (the PVC object must exist)
//   configMap, secret,     files written into <pod dir>/volumes/<kind>/<volume>/ (keys or
//   downwardAPI, projected items/paths, modes)
//   emptyDir               <pod dir>/volumes/empty-dir/<volume>/
// plus the service-account folder (token, ca.crt, namespace) in
// <pod dir>/volumes/serviceaccount/, mounted read-only at
// /var/run/secrets/kubernetes.io/serviceaccount unless the pod or its ServiceAccount sets
// automountServiceAccountToken: false or a container mounts something there itself.
//
// Failures carry the message a real kubelet puts in its FailedMount event, e.g.
// `MountVolume.SetUp failed for volume "cfg" : configmap "settings" not found`.

#include <map>
#include <string>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"
#include "tests/cluster/kubelet/container_env.h"
#include "tests/cluster/kubelet/container_process.h"

namespace parallelrun::rt::cluster {

inline constexpr char kServiceAccountMountPath[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct PreparedVolumes {
  std::map<std::string, std::string> host_paths;  // volume name -> host path
  std::string service_account_dir;                // "" when not mounted automatically
};

// Writes or creates every volume of `pod` (whose status.podIP may be set for downward API
// items). False with `failed_volume` and `message` set on the first volume that cannot be set up.
bool PrepareVolumes(const Json& pod, const std::string& pod_dir, const std::string& state_dir,
                    const ClusterView& view, PreparedVolumes* out, std::string* failed_volume,
                    std::string* message);

// The bind mounts of `container` (an element of spec.containers or spec.initContainers):
// its volumeMounts (honouring subPath and readOnly), the service-account folder, then
// `hosts_file` at /etc/hosts and `termination_log` at the container's terminationMessagePath.
// `env` (KEY=VALUE) expands subPathExpr. False with `error` for an unknown volume or a bad
// subPath.
bool ContainerMounts(const Json& pod, const Json& container, const PreparedVolumes& volumes,
                     const std::vector<std::string>& env, const std::string& hosts_file,
                     const std::string& termination_log, std::vector<BindMount>* mounts,
                     std::string* error);

// fsGroup as a real kubelet applies it (SetVolumeOwnership): every file and folder of the pod's
// emptyDir, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes and of
// the service-account folder gets group `fs_group` and group read (and write, for the writable
// kinds); folders also get g+x and setgid, so new files inherit the group. hostPath volumes are
// never changed.
void ApplyFsGroup(const Json& pod, const PreparedVolumes& volumes, int64_t fs_group);

}  // namespace parallelrun::rt::cluster
