#pragma once
// Running the `podman` command line for the container runtime (podman + runc as root, local
// images only). Every child is started with posix_spawn (safe in the multi-threaded testcluster
// process) in its own session, with stdin from /dev/null.
//
// Thread safety: every function may be called from any thread; background jobs are reaped under
// a mutex.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

// The podman binary: $TESTCLUSTER_PODMAN, else `podman` on PATH.
std::string PodmanBinary();
// True when PodmanBinary() can be executed (`podman --version` succeeds).
bool PodmanAvailable();

// Runs `podman args...` and waits (SIGKILL after `timeout`). Returns the exit code (-1 when it
// could not start or timed out); stdout goes to `out`, stderr to `err` (either may be null).
int RunPodman(const std::vector<std::string>& args, std::string* out, std::string* err,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Starts `podman args...` with stdout and stderr appended to `log_path`; returns its pid (the
// caller reaps it) or -1 with `error`.
pid_t SpawnPodman(const std::vector<std::string>& args, const std::string& log_path,
                  std::string* error);

// A podman command running in the background (output discarded). Done() reaps it without
// blocking; ExitCode() is valid once Done() returned true (-1: killed or failed to start).
class PodmanJob {
 public:
  static std::shared_ptr<PodmanJob> Start(const std::vector<std::string>& args);
  ~PodmanJob();
  bool Done();
  int ExitCode() const { return exit_code_; }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
  int exit_code_ = -1;
};

// Removes, in the background, containers that are no longer wanted (`podman rm -f`); keeps the
// jobs so they are reaped later. Returns at once.
void RemoveContainerInBackground(const std::string& name);
// Reaps finished background removals (called now and then by the kubelet).
void ReapBackgroundJobs();

// Removes every container labelled with this cluster's state folder (kLabelClusterState),
// waiting for the removal. Returns how many there were.
int RemoveClusterContainers(const std::string& state_dir);

// True when the kernel log records an OOM kill in the cgroup of container `container_id`
// (cgroup v1 with this kernel reports no oom_kill counts, and podman's OOMKilled stays false).
bool KernelLogShowsOomKill(const std::string& container_id);

// True when the cgroup controller `name` ("memory", "cpu") can limit containers (cgroup v1
// hierarchy mounted, or listed in cgroup v2's cgroup.controllers).
bool CgroupControllerAvailable(const std::string& name);

}  // namespace parallelrun::rt::cluster
