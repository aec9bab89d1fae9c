#pragma once
// The container runtime's pure half: from a pod spec, one of its containers and the image's
// configuration to the command line of `podman run` (no podman needed; unit-tested).
//
// What a real kubelet + containerd would do, mapped onto podman flags:
//   - command/args over the image's ENTRYPOINT/CMD (command replaces ENTRYPOINT and drops CMD;
//     args alone replace CMD), workingDir over WORKDIR, env on top of the image's ENV;
//   - securityContext (container fields win over the pod's): runAsUser/runAsGroup (`--user`),
//     supplementalGroups and fsGroup (`--group-add`), runAsNonRoot checked against the image's
//     USER with the kubelet's CreateContainerConfigError messages, readOnlyRootFilesystem
//     (`--read-only`, without podman's extra tmpfs mounts), privileged, capabilities add/drop,
//     allowPrivilegeEscalation=false (`no-new-privileges`), seccompProfile RuntimeDefault
//     (otherwise unconfined, the kubelet's default);
//   - resources: limits.memory (`--memory`, no extra swap), limits.cpu (`--cpus`), requests.cpu
//     (`--cpu-shares`), each only when its cgroup controller is available;
//   - the pod's volumes as bind mounts, host network (pod IPs are 127.x addresses on the host's
//     loopback), the pod's hostname, labels naming the pod and the cluster, never a pull.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"
#include "tests/cluster/kubelet/container_process.h"

namespace parallelrun::rt::cluster {

// Labels on every container of the container runtime.
inline constexpr char kLabelPodUid[] = "io.kubernetes.pod.uid";
inline constexpr char kLabelPodName[] = "io.kubernetes.pod.name";
inline constexpr char kLabelPodNamespace[] = "io.kubernetes.pod.namespace";
inline constexpr char kLabelContainerName[] = "io.kubernetes.container.name";
// The state folder of the cluster that made the container (`testcluster down` removes exactly
// the containers with its own folder here).
inline constexpr char kLabelClusterState[] = "io.testcluster.state";

// The parts of an image's configuration the kubelet needs (`podman image inspect`).
struct ImageConfig {
  std::string id;  // 64 hex digits
  std::string user;
  std::string working_dir;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
};

// Parses the JSON of `podman image inspect` (an array with one image). False with `error` when
// it is not that.
bool ParseImageInspect(const std::string& json, ImageConfig* out, std::string* error);

// An image reference as the kubelet looks it up locally: ":latest" added when it has neither a
// tag nor a digest ("busybox" -> "busybox:latest", "reg:5000/x" -> "reg:5000/x:latest"). Short
// names are resolved by podman's local lookup (`parallelrun:0.1.0` finds
// `localhost/parallelrun:0.1.0`).
std::string NormalizeImageRef(const std::string& image);

// The kubelet's runAsNonRoot verification: "" when the container may run, otherwise the
// CreateContainerConfigError message (e.g. `container has runAsNonRoot and image will run as
// root (pod: "p_ns(uid)", container: main)`).
std::string VerifyRunAsNonRoot(const Json& pod, const Json& container, const ImageConfig& image);

// The process of the container: command + args over the image's ENTRYPOINT and CMD, with $(VAR)
// expansion from `env` (KEY=VALUE). Empty when there is nothing to run.
std::vector<std::string> ContainerProcessArgv(const Json& container, const ImageConfig& image,
                                              const std::vector<std::string>& env);

// What the runner decided for one run of a container.
struct PodmanRunInputs {
  std::string name;       // podman container name (unique per run)
  std::string cid_file;   // --cidfile (must not exist yet)
  std::string state_dir;  // value of kLabelClusterState
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE
  std::vector<BindMount> mounts;
  std::string hostname;
  bool memory_controller = true;  // cgroup memory controller usable
  bool cpu_controller = true;     // cgroup cpu controller usable
};

// The arguments after `podman` for `podman run` of `container` (an element of spec.containers or
// spec.initContainers of `pod`). False with `error` naming the field for input it cannot honour
// (a bad quantity, a mount path with a comma, an unsupported seccomp profile, no command).
bool PodmanRunArgs(const Json& pod, const Json& container, const ImageConfig& image,
                   const PodmanRunInputs& in, std::vector<std::string>* args, std::string* error);

// The pod's fsGroup (spec.securityContext.fsGroup), if set.
std::optional<int64_t> PodFsGroup(const Json& pod);

}  // namespace parallelrun::rt::cluster
