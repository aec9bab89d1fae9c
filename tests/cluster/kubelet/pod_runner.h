#pragma once
// One pod on the process kubelet's node: prepares its folder and volumes, starts its init
// containers one after the other and then its containers (each a host process in its own mount
// namespace, see container_process.h), restarts them as restartPolicy says, stops them on
// deletion (SIGTERM to each process group, SIGKILL after the grace period) and reports the pod's
// status as a real kubelet would (phase, conditions, container states, exit codes, termination
// messages, restart counts).
//
// Files (both folders are wiped when a pod with another uid of the same name arrives):
//   DIR/logs/<namespace>/<name>/<container>.log           stdout and stderr of the current (or
//                                                         last) run, served by pods/log
//   DIR/logs/<namespace>/<name>/<container>.previous.log  the run before (logs --previous)
// and in the pod folder DIR/pods/<namespace>/<name>/:
//   uid                            the pod's uid
//   <container>.termination-log    bind-mounted at terminationMessagePath
//   hosts                          bind-mounted at /etc/hosts
//   volumes/...                    see volumes.h
// Pids of running containers are recorded in DIR/kubelet/pids/ (see container_process.h).
//
// Not thread-safe: the kubelet drives each runner from its one sync thread. Sync() never
// blocks for long: it reaps exited processes, starts what is due and returns when it wants to be
// called again.
//
// Two runtimes (RunnerConfig::runtime):
//   - kProcess: each container is a host process (container_process.h) running as root; images
//     are not pulled (an image whose tag is `missing` fails as ErrImagePull/ImagePullBackOff),
//     probes are not run (a running container is ready), securityContext and resources are not
//     enforced.
//   - kPodman: each container is a real OCI container (`podman run`, runc, host network) from a
//     local image (podman_args.h for the mapping of the spec), with probes (probes.h), fsGroup on
//     the pod's volumes, resource limits, OOMKilled, and a missing image giving ErrImagePull /
//     ImagePullBackOff (ErrImageNeverPull with imagePullPolicy Never) without any pull. The
//     pid the runner tracks is the `podman run` process; signals go through `podman kill`.
//     Each run's container is removed when it has exited (its log is in the log file).

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"
#include "tests/cluster/kubelet/podman.h"
#include "tests/cluster/kubelet/podman_args.h"
#include "tests/cluster/kubelet/probes.h"
#include "tests/cluster/kubelet/volumes.h"

namespace parallelrun::rt::cluster {

enum class ContainerRuntime { kProcess, kPodman };

struct RunnerConfig {
  ContainerRuntime runtime = ContainerRuntime::kProcess;
  // kPodman: whether the cgroup controllers can enforce limits.cpu / limits.memory.
  bool cpu_controller = false;
  bool memory_controller = false;
  std::string state_dir;
  ClusterView view;
  std::vector<std::string> base_env;  // KEY=VALUE passed to every container
  std::string search_path;            // PATH used to find commands (a pod's own PATH wins)
  // Restart back-off: the first restart is immediate, then initial, 2x initial, ... up to max.
  std::chrono::milliseconds backoff_initial{2000};
  std::chrono::milliseconds backoff_max{60000};
  // The pod's /etc/hosts; empty function: only localhost and the pod's own name.
  std::function<std::string(const Json& pod, const std::string& pod_ip)> hosts_content;
};

// An event about the pod, as the kubelet records it (involvedObject is the pod; field_path
// names the container, e.g. "spec.containers{main}").
struct PodEvent {
  std::string type;  // Normal or Warning
  std::string reason;
  std::string message;
  std::string field_path;
};

class PodRunner {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  PodRunner(RunnerConfig config, const Json& pod, std::string pod_ip);
  // SIGKILLs whatever still runs.
  ~PodRunner();
  PodRunner(const PodRunner&) = delete;
  PodRunner& operator=(const PodRunner&) = delete;

  // A newer version of the pod object (labels for the downward API, deletionTimestamp).
  void Update(const Json& pod);

  // Advances the pod: reaps exits, starts and restarts containers, escalates to SIGKILL.
  // Returns when it wants the next call (earlier calls are harmless).
  SteadyTime Sync();

  // Starts a graceful stop: SIGTERM to every running container now, SIGKILL after
  // `grace_seconds`. Nothing starts afterwards. A later call may shorten the deadline.
  void Terminate(int64_t grace_seconds);

  // True once no process runs and none will start again (a terminal phase, or terminated).
  bool Stopped() const;
  bool Terminating() const { return terminating_; }

  // The pod's status object (phase, conditions, IPs, startTime, containerStatuses, ...).
  Json Status() const;

  // Events since the last call.
  std::vector<PodEvent> TakeEvents();

  // Rewrites the pod's hosts file from `hosts_content` (in place, so running containers see it).
  void RefreshHosts();

  const std::string& pod_dir() const { return pod_dir_; }
  const std::string& log_dir() const { return log_dir_; }
  const std::string& pod_ip() const { return pod_ip_; }
  const std::string& uid() const { return uid_; }

 private:
  enum class State { kWaiting, kRunning, kTerminated };
  struct Container {
    std::string name;
    Json spec;
    bool init = false;
    pid_t pid = 0;
    State state = State::kWaiting;
    std::string waiting_reason = "ContainerCreating";
    std::string waiting_message;
    bool started_once = false;  // has run at least once
    std::string started_at;
    std::string finished_at;
    int exit_code = 0;
    int signal = 0;
    std::string reason;   // terminated reason
    std::string message;  // terminated message
    Json last_state = Json::object();
    int restart_count = 0;
    int backoff_step = 0;
    SteadyTime next_start{};
    SteadyTime started_steady{};
    SteadyTime image_failed_at{};
    bool image_failed = false;
    // kPodman: this run's container and the image it runs.
    ImageConfig image;
    std::string podman_name;
    std::string cid_file;
    std::string container_id;
    size_t log_offset = 0;   // size of the log file when this run started
    int pending_signal = 0;  // to deliver with `podman kill` once the container exists
    int delivering_signal = 0;
    SteadyTime next_signal_try{};
    std::shared_ptr<PodmanJob> signal_job;
    // Probes (kPodman): startup gates liveness and readiness.
    std::unique_ptr<ProbeWorker> startup_probe, liveness_probe, readiness_probe;
    bool probe_killed = false;                // killed after a failed liveness/startup probe
    std::optional<SteadyTime> kill_deadline;  // SIGKILL after this (probe kills)
  };

  void Prepare(SteadyTime now);
  // Starts `c` now (or fails it with StartError / CreateContainerConfigError).
  void Start(Container& c, SteadyTime now);
  bool CheckImage(Container& c, SteadyTime now);
  void Reap();
  void OnExit(Container& c, int wait_status);
  bool ShouldRestart(const Container& c) const;
  void ScheduleRestart(Container& c, SteadyTime now);
  std::string Phase() const;
  // Initialized, ContainersReady and Ready from the containers' states.
  void UpdateConditions();
  Json ContainerStatus(const Container& c) const;
  void SetCondition(const std::string& type, bool status, const std::string& reason,
                    const std::string& message);
  void Emit(const std::string& type, const std::string& reason, const std::string& message,
            const Container* c = nullptr);
  std::string PidKey(const Container& c) const;
  bool Podman() const { return config_.runtime == ContainerRuntime::kPodman; }
  bool IsStarted(const Container& c) const;
  bool IsReady(const Container& c) const;

  // The container runtime's half (pod_runner_podman.cc).
  bool CheckLocalImage(Container& c, SteadyTime now);
  // Extra checks before a podman start: false with the CreateContainerConfigError message.
  bool PodmanPreflight(Container& c, std::vector<std::string>* env, std::string* error);
  pid_t LaunchPodman(Container& c, const std::vector<std::string>& env,
                     const std::vector<BindMount>& mounts, const std::string& log,
                     std::string* error);
  void AfterPodmanExit(Container& c);
  void SignalContainer(Container& c, int signal);
  void DeliverSignals(Container& c, SteadyTime now);
  void ApplyPodmanVolumeOwnership();
  // Probes of a running container; may kill it. Returns when it wants the next call.
  SteadyTime SyncProbes(Container& c, SteadyTime now);
  void ResetProbes(Container& c, SteadyTime now);
  void RemoveAllContainersNow();

  RunnerConfig config_;
  Json pod_;
  std::string ns_;
  std::string name_;
  std::string uid_;
  std::string pod_ip_;
  std::string pod_dir_;
  std::string log_dir_;
  std::string pid_dir_;
  std::string restart_policy_;
  std::vector<Container> containers_;  // init containers first
  size_t init_count_ = 0;

  bool prepared_ = false;
  SteadyTime next_prepare_{};
  PreparedVolumes volumes_;
  std::string start_time_;

  bool terminating_ = false;
  bool killed_ = false;
  SteadyTime kill_deadline_{};

  struct Condition {
    std::string status;
    std::string reason;
    std::string message;
    std::string last_transition;
  };
  std::map<std::string, Condition> conditions_;
  std::vector<PodEvent> events_;
};

}  // namespace parallelrun::rt::cluster
