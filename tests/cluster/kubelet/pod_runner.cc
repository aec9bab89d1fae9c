#include "tests/cluster/kubelet/pod_runner.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/cluster/kubelet/container_env.h"
#include "tests/cluster/kubelet/container_process.h"
#include "tests/cluster/kubelet/hosts_file.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr auto kPollInterval = milliseconds(50);
constexpr auto kRetryInterval = milliseconds(2000);
constexpr auto kImageBackOffAfter = milliseconds(1000);
constexpr size_t kMaxTerminationMessage = 4096;

std::string Now() { return FormatTimestamp(std::chrono::system_clock::now()); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The tail of a log for FallbackToLogsOnError: at most 80 lines and 2048 bytes, as a real
// kubelet takes it.
std::string LogTail(const std::string& path) {
  std::string text = ReadAll(path);
  size_t start = text.size();
  // Skip a final newline so that it does not count as an empty last line.
  size_t search = !text.empty() && text.back() == '\n' ? text.size() - 1 : text.size();
  for (int lines = 0; lines < 80 && search > 0; ++lines) {
    size_t nl = text.rfind('\n', search - 1);
    start = nl == std::string::npos ? 0 : nl + 1;
    if (nl == std::string::npos) break;
    search = nl;
  }
  if (search == 0) start = 0;
  std::string tail = text.substr(start);
  if (tail.size() > 2048) tail = tail.substr(tail.size() - 2048);
  return tail;
}

// The tag of an image reference ("" when none): "repo/x:tag@sha256:..." -> "tag".
std::string ImageTag(std::string image) {
  if (auto at = image.find('@'); at != std::string::npos) image.resize(at);
  auto slash = image.rfind('/');
  auto colon = image.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return "";
  return image.substr(colon + 1);
}

std::string PathVar(const std::vector<std::string>& env) {
  std::string path;
  for (const auto& e : env) {
    if (e.compare(0, 5, "PATH=") == 0) path = e.substr(5);
  }
  return path;
}

std::string QosClass(const Json& pod) {
  bool any = false;
  bool guaranteed = true;
  for (const char* list : {"initContainers", "containers"}) {
    const Json* cs = JsonAt(pod, std::string("spec.") + list);
    if (cs == nullptr || !cs->is_array()) continue;
    for (const auto& c : *cs) {
      const Json* limits = JsonAt(c, "resources.limits");
      const Json* requests = JsonAt(c, "resources.requests");
      bool has_limits = limits && limits->is_object() && !limits->empty();
      bool has_requests = requests && requests->is_object() && !requests->empty();
      any = any || has_limits || has_requests;
      for (const char* r : {"cpu", "memory"}) {
        if (!has_limits || !limits->contains(r)) {
          guaranteed = false;
        } else if (has_requests && requests->contains(r) && (*requests)[r] != (*limits)[r]) {
          guaranteed = false;
        }
      }
    }
  }
  if (!any) return "BestEffort";
  return guaranteed ? "Guaranteed" : "Burstable";
}

}  // namespace

PodRunner::PodRunner(RunnerConfig config, const Json& pod, std::string pod_ip)
    : config_(std::move(config)), pod_(pod), pod_ip_(std::move(pod_ip)) {
  ns_ = StringAt(pod_, "metadata.namespace", "default");
  name_ = StringAt(pod_, "metadata.name");
  uid_ = StringAt(pod_, "metadata.uid");
  restart_policy_ = StringAt(pod_, "spec.restartPolicy", "Always");
  pod_dir_ = config_.state_dir + "/pods/" + ns_ + "/" + name_;
  log_dir_ = config_.state_dir + "/logs/" + ns_ + "/" + name_;
  pid_dir_ = config_.state_dir + "/kubelet/pids";
  std::error_code ec;
  if (ReadAll(pod_dir_ + "/uid") != uid_) {
    fs::remove_all(pod_dir_, ec);
    fs::remove_all(log_dir_, ec);
  }
  fs::create_directories(pod_dir_, ec);
  fs::create_directories(log_dir_, ec);
  fs::create_directories(pid_dir_, ec);
  std::ofstream(pod_dir_ + "/uid", std::ios::trunc) << uid_;

  for (const char* list : {"initContainers", "containers"}) {
    const Json* specs = JsonAt(pod_, std::string("spec.") + list);
    if (specs == nullptr || !specs->is_array()) continue;
    for (const auto& spec : *specs) {
      Container c;
      c.name = StringAt(spec, "name");
      c.spec = spec;
      c.init = std::string(list) == "initContainers";
      containers_.push_back(std::move(c));
      if (std::string(list) == "initContainers") ++init_count_;
    }
  }
  for (auto& c : containers_) {
    if (!c.init && init_count_ > 0) c.waiting_reason = "PodInitializing";
  }
  start_time_ = Now();
  SetCondition("PodScheduled", true, "", "");
  SetCondition("Initialized", init_count_ == 0, init_count_ ? "ContainersNotInitialized" : "", "");
  SetCondition("ContainersReady", false, "ContainersNotReady", "");
  SetCondition("Ready", false, "ContainersNotReady", "");
}

PodRunner::~PodRunner() {
  if (Podman()) RemoveAllContainersNow();
  for (auto& c : containers_) {
    if (c.pid > 0) {
      KillProcessGroup(c.pid, SIGKILL);
      kill(c.pid, SIGKILL);
      int status;
      while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
      }
      ForgetPid(pid_dir_, PidKey(c));
    }
  }
}

void PodRunner::Update(const Json& pod) {
  Json status = pod_.value("status", Json::object());
  pod_ = pod;
  pod_["status"] = status;
}

std::string PodRunner::PidKey(const Container& c) const { return ns_ + "_" + name_ + "_" + c.name; }

void PodRunner::Emit(const std::string& type, const std::string& reason, const std::string& message,
                     const Container* c) {
  std::string field_path;
  if (c != nullptr) {
    field_path = std::string(c->init ? "spec.initContainers{" : "spec.containers{") + c->name + "}";
  }
  events_.push_back({type, reason, message, field_path});
}

std::vector<PodEvent> PodRunner::TakeEvents() {
  std::vector<PodEvent> out;
  out.swap(events_);
  return out;
}

void PodRunner::RefreshHosts() {
  if (!prepared_) return;
  Json pod = pod_;
  std::string content = config_.hosts_content ? config_.hosts_content(pod, pod_ip_)
                                              : BuildHostsFile(pod, pod_ip_, HostsInputs{});
  WriteInPlace(pod_dir_ + "/hosts", content);
}

void PodRunner::Prepare(SteadyTime now) {
  if (now < next_prepare_) return;
  pod_["status"]["podIP"] = pod_ip_;
  pod_["status"]["hostIP"] = config_.view.host_ip;
  std::string failed_volume, message;
  if (!PrepareVolumes(pod_, pod_dir_, config_.state_dir, config_.view, &volumes_, &failed_volume,
                      &message)) {
    next_prepare_ = now + kRetryInterval;
    for (auto& c : containers_) {
      c.waiting_reason = c.init || init_count_ == 0 ? "ContainerCreating" : "PodInitializing";
      c.waiting_message = message;
    }
    Emit("Warning", "FailedMount", message);
    return;
  }
  prepared_ = true;
  if (Podman()) ApplyPodmanVolumeOwnership();
  for (auto& c : containers_) c.waiting_message.clear();
  RefreshHosts();
}

bool PodRunner::CheckImage(Container& c, SteadyTime now) {
  if (Podman()) return CheckLocalImage(c, now);
  std::string image = StringAt(c.spec, "image");
  if (ImageTag(image) != "missing") return true;
  if (!c.image_failed) {
    c.image_failed = true;
    c.image_failed_at = now;
    c.waiting_reason = "ErrImagePull";
    c.waiting_message = "rpc error: code = NotFound desc = failed to pull and unpack image \"" +
                        image + "\": failed to resolve reference \"" + image + "\": " + image +
                        ": not found";
    Emit("Normal", "Pulling", "Pulling image \"" + image + "\"", &c);
    Emit("Warning", "Failed", "Failed to pull image \"" + image + "\": " + c.waiting_message, &c);
    Emit("Warning", "Failed", "Error: ErrImagePull", &c);
  } else if (c.waiting_reason == "ErrImagePull" && now - c.image_failed_at >= kImageBackOffAfter) {
    c.waiting_reason = "ImagePullBackOff";
    c.waiting_message = "Back-off pulling image \"" + image + "\"";
    Emit("Normal", "BackOff", c.waiting_message, &c);
    Emit("Warning", "Failed", "Error: ImagePullBackOff", &c);
  }
  return false;
}

void PodRunner::Start(Container& c, SteadyTime now) {
  pod_["status"]["podIP"] = pod_ip_;
  pod_["status"]["hostIP"] = config_.view.host_ip;
  std::vector<std::string> env;
  std::string error;
  bool configured = BuildContainerEnv(pod_, c.spec, config_.view, config_.base_env, &env, &error);
  if (configured && Podman()) configured = PodmanPreflight(c, &env, &error);
  if (!configured) {
    if (c.waiting_reason != "CreateContainerConfigError" || c.waiting_message != error) {
      Emit("Warning", "Failed", "Error: " + error, &c);
    }
    c.waiting_reason = "CreateContainerConfigError";
    c.waiting_message = error;
    c.next_start = now + kRetryInterval;
    return;
  }
  std::string log = log_dir_ + "/" + c.name + ".log";
  std::string termination_log = pod_dir_ + "/" + c.name + ".termination-log";
  std::error_code ec;
  if (c.started_once) fs::rename(log, log_dir_ + "/" + c.name + ".previous.log", ec);
  std::ofstream(termination_log, std::ios::trunc).close();
  // Writable by whatever user the container runs as, as a real kubelet creates it.
  fs::permissions(termination_log, fs::perms(0666), ec);

  LaunchSpec spec;
  std::string pod_path = PathVar(env);
  spec.search_path = pod_path.empty() ? config_.search_path : pod_path;
  spec.argv = ContainerArgv(c.spec, env, spec.search_path);
  spec.env = env;
  spec.working_dir = StringAt(c.spec, "workingDir");
  spec.hostname = StringAt(pod_, "spec.hostname", name_);
  spec.log_path = log;
  spec.scratch_dir = pod_dir_ + "/scratch";
  fs::create_directories(spec.scratch_dir, ec);
  bool mounts_ok = ContainerMounts(pod_, c.spec, volumes_, env, pod_dir_ + "/hosts",
                                   termination_log, &spec.mounts, &error);
  if (c.restart_count == 0 && !c.started_once) {
    Emit("Normal", "Pulled",
         "Container image \"" + StringAt(c.spec, "image") + "\" already present on machine", &c);
  }
  pid_t pid = -1;
  if (mounts_ok) {
    pid = Podman() ? LaunchPodman(c, env, spec.mounts, log, &error) : LaunchContainer(spec, &error);
  }
  auto now_wall = Now();
  c.started_once = true;
  if (pid < 0) {
    c.state = State::kTerminated;
    c.pid = 0;
    c.exit_code = 128;
    c.signal = 0;
    c.reason = "StartError";
    c.message = error;
    c.started_at = "";
    c.finished_at = now_wall;
    c.started_steady = now;
    Emit("Warning", "Failed", "Error: " + error, &c);
    std::ofstream(log, std::ios::app) << "";
    return;
  }
  c.pid = pid;
  c.state = State::kRunning;
  c.started_at = now_wall;
  c.started_steady = now;
  c.waiting_reason.clear();
  c.waiting_message.clear();
  RecordPid(pid_dir_, PidKey(c), pid);
  c.probe_killed = false;
  c.kill_deadline.reset();
  ResetProbes(c, now);
  Emit("Normal", "Created", "Created container " + c.name, &c);
  Emit("Normal", "Started", "Started container " + c.name, &c);
}

void PodRunner::OnExit(Container& c, int wait_status) {
  // The container's other processes go with it, as in a pid namespace whose init exited.
  KillProcessGroup(c.pid, SIGKILL);
  ForgetPid(pid_dir_, PidKey(c));
  c.pid = 0;
  c.state = State::kTerminated;
  c.finished_at = Now();
  if (WIFEXITED(wait_status)) {
    c.exit_code = WEXITSTATUS(wait_status);
    c.signal = 0;
  } else {
    c.signal = WTERMSIG(wait_status);
    c.exit_code = 128 + c.signal;
  }
  c.reason = c.exit_code == 0 ? "Completed" : "Error";
  if (Podman()) {
    // `podman run` passes the container's exit code on (128 + signal when it was killed); a
    // container runtime reports no signal.
    c.signal = 0;
    AfterPodmanExit(c);
  }
  std::string message = ReadAll(pod_dir_ + "/" + c.name + ".termination-log");
  if (message.size() > kMaxTerminationMessage) message.resize(kMaxTerminationMessage);
  if (message.empty() && c.exit_code != 0 &&
      StringAt(c.spec, "terminationMessagePolicy") == "FallbackToLogsOnError") {
    message = LogTail(log_dir_ + "/" + c.name + ".log");
  }
  if (c.reason != "StartError") c.message = message;  // a start error keeps its own message
}

void PodRunner::Reap() {
  for (auto& c : containers_) {
    if (c.pid <= 0) continue;
    int status;
    pid_t r = waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
      OnExit(c, status);
    } else if (r < 0 && errno == ECHILD) {
      // Not our child any more (cannot happen unless someone else reaped it).
      OnExit(c, 0);
    }
  }
}

bool PodRunner::ShouldRestart(const Container& c) const {
  if (c.init) return c.exit_code != 0 && restart_policy_ != "Never";
  if (restart_policy_ == "Always") return true;
  if (restart_policy_ == "OnFailure") return c.exit_code != 0;
  return false;
}

void PodRunner::ScheduleRestart(Container& c, SteadyTime now) {
  // Remember the run that ended; it becomes lastState once the next one starts.
  Json terminated = {{"exitCode", c.exit_code},
                     {"reason", c.reason},
                     {"finishedAt", c.finished_at},
                     {"containerID", Podman() && !c.container_id.empty()
                                         ? "podman://" + c.container_id
                                         : "process://" + uid_ + "/" + c.name + "/" +
                                               std::to_string(c.restart_count)}};
  if (!c.started_at.empty()) terminated["startedAt"] = c.started_at;
  if (c.signal != 0) terminated["signal"] = c.signal;
  if (!c.message.empty()) terminated["message"] = c.message;
  c.last_state = {{"terminated", terminated}};
  if (now - c.started_steady >= config_.backoff_max) c.backoff_step = 0;
  milliseconds delay(0);
  if (c.backoff_step > 0) {
    delay = config_.backoff_initial * (1LL << std::min(c.backoff_step - 1, 20));
    delay = std::min(delay, config_.backoff_max);
  }
  ++c.backoff_step;
  ++c.restart_count;
  c.next_start = now + delay;
  c.state = State::kWaiting;
  if (delay.count() > 0) {
    c.waiting_reason = "CrashLoopBackOff";
    c.waiting_message = "back-off " + std::to_string(delay.count() / 1000) +
                        "s restarting failed container=" + c.name + " pod=" + name_ + "_" + ns_ +
                        "(" + uid_ + ")";
    Emit("Warning", "BackOff",
         "Back-off restarting failed container " + c.name + " in pod " + name_ + "_" + ns_ + "(" +
             uid_ + ")",
         &c);
  } else {
    c.waiting_reason.clear();
    c.waiting_message.clear();
  }
}

PodRunner::SteadyTime PodRunner::Sync() {
  const SteadyTime now = steady_clock::now();
  Reap();
  SteadyTime next = now + std::chrono::hours(1);
  auto sooner = [&](SteadyTime t) { next = std::min(next, std::max(t, now)); };

  bool any_running = std::any_of(containers_.begin(), containers_.end(),
                                 [](const Container& c) { return c.pid > 0; });
  if (terminating_) {
    if (any_running && !killed_ && now >= kill_deadline_) {
      for (auto& c : containers_) {
        if (c.pid > 0) SignalContainer(c, SIGKILL);
      }
      killed_ = true;
    }
    if (any_running)
      sooner(killed_ ? now + kPollInterval : std::min(kill_deadline_, now + kPollInterval));
  } else if (Phase() != "Succeeded" && Phase() != "Failed") {
    if (!prepared_) Prepare(now);
    if (!prepared_) {
      sooner(next_prepare_);
    } else {
      // Init containers, one at a time.
      bool initialized = true;
      for (size_t i = 0; i < init_count_; ++i) {
        Container& c = containers_[i];
        if (c.state == State::kTerminated && c.exit_code == 0) continue;
        initialized = false;
        if (c.state == State::kRunning) break;
        if (c.state == State::kTerminated) {
          if (!ShouldRestart(c)) break;  // the pod fails
          ScheduleRestart(c, now);
        }
        if (now >= c.next_start && CheckImage(c, now)) Start(c, now);
        if (c.state != State::kRunning)
          sooner(c.image_failed ? now + kImageBackOffAfter : c.next_start);
        break;
      }
      if (initialized) {
        for (size_t i = init_count_; i < containers_.size(); ++i) {
          Container& c = containers_[i];
          if (c.state == State::kRunning) continue;
          if (c.state == State::kTerminated) {
            if (!ShouldRestart(c)) continue;
            ScheduleRestart(c, now);
          }
          if (now >= c.next_start && CheckImage(c, now)) Start(c, now);
          if (c.state == State::kWaiting) {
            sooner(c.image_failed ? now + kImageBackOffAfter : c.next_start);
          }
        }
      }
    }
  }
  if (std::any_of(containers_.begin(), containers_.end(),
                  [](const Container& c) { return c.pid > 0; })) {
    sooner(now + kPollInterval);
  }
  if (Podman()) {
    for (auto& c : containers_) {
      if (c.pid <= 0) continue;
      DeliverSignals(c, now);
      if (!terminating_) sooner(SyncProbes(c, now));
    }
  }
  UpdateConditions();
  return next;
}

void PodRunner::UpdateConditions() {
  // Conditions follow the containers.
  std::vector<std::string> not_initialized, not_ready;
  for (const auto& c : containers_) {
    if (c.init && !(c.state == State::kTerminated && c.exit_code == 0))
      not_initialized.push_back(c.name);
    if (!c.init && !IsReady(c)) not_ready.push_back(c.name);
  }
  auto join = [](const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
    return "[" + out + "]";
  };
  SetCondition(
      "Initialized", not_initialized.empty(),
      not_initialized.empty() ? "" : "ContainersNotInitialized",
      not_initialized.empty() ? "" : "containers with incomplete status: " + join(not_initialized));
  std::string phase = Phase();
  bool ready = not_ready.empty() && not_initialized.empty() && !terminating_;
  std::string reason =
      phase == "Succeeded" || phase == "Failed" ? "PodCompleted" : "ContainersNotReady";
  std::string message =
      ready || reason == "PodCompleted" ? "" : "containers with unready status: " + join(not_ready);
  SetCondition("ContainersReady", ready, ready ? "" : reason, message);
  SetCondition("Ready", ready, ready ? "" : reason, message);
}

void PodRunner::Terminate(int64_t grace_seconds) {
  const SteadyTime now = steady_clock::now();
  SteadyTime deadline = now + std::chrono::seconds(std::max<int64_t>(grace_seconds, 0));
  if (terminating_) {
    kill_deadline_ = std::min(kill_deadline_, deadline);
    return;
  }
  terminating_ = true;
  kill_deadline_ = deadline;
  for (auto& c : containers_) {
    if (c.pid > 0) {
      Emit("Normal", "Killing", "Stopping container " + c.name, &c);
      SignalContainer(c, SIGTERM);
    } else if (c.state == State::kWaiting) {
      c.waiting_message.clear();
    }
  }
}

bool PodRunner::IsStarted(const Container& c) const {
  if (c.state != State::kRunning) return false;
  return !c.startup_probe || c.startup_probe->result() == ProbeWorker::Result::kSuccess;
}

bool PodRunner::IsReady(const Container& c) const {
  if (c.init || terminating_ || !IsStarted(c)) return false;
  return !c.readiness_probe || c.readiness_probe->result() == ProbeWorker::Result::kSuccess;
}

bool PodRunner::Stopped() const {
  bool any_running = std::any_of(containers_.begin(), containers_.end(),
                                 [](const Container& c) { return c.pid > 0; });
  if (any_running) return false;
  if (terminating_) return true;
  std::string phase = Phase();
  return phase == "Succeeded" || phase == "Failed";
}

std::string PodRunner::Phase() const {
  // Init containers: a failed one that will not restart fails the pod.
  for (size_t i = 0; i < init_count_; ++i) {
    const Container& c = containers_[i];
    if (c.state == State::kTerminated && c.exit_code == 0) continue;
    if (c.state == State::kTerminated && !ShouldRestart(c)) return "Failed";
    return "Pending";
  }
  int waiting_new = 0, running = 0, stopped = 0, succeeded = 0, failed = 0;
  for (size_t i = init_count_; i < containers_.size(); ++i) {
    const Container& c = containers_[i];
    if (c.state == State::kRunning) {
      ++running;
    } else if (c.state == State::kTerminated) {
      ++stopped;
      (c.exit_code == 0 ? succeeded : failed)++;
    } else if (c.last_state.contains("terminated")) {
      // Waiting to restart: counts as stopped with its last exit.
      ++stopped;
      (c.last_state["terminated"].value("exitCode", 1) == 0 ? succeeded : failed)++;
    } else {
      ++waiting_new;
    }
  }
  if (waiting_new > 0) return "Pending";
  if (running > 0) return "Running";
  if (stopped > 0) {
    if (terminating_) return failed > 0 ? "Failed" : "Succeeded";
    if (restart_policy_ == "Always") return "Running";
    if (stopped == succeeded) return "Succeeded";
    if (restart_policy_ == "Never") return "Failed";
    return "Running";
  }
  return "Pending";
}

void PodRunner::SetCondition(const std::string& type, bool status, const std::string& reason,
                             const std::string& message) {
  std::string s = status ? "True" : "False";
  auto it = conditions_.find(type);
  if (it == conditions_.end() || it->second.status != s) {
    conditions_[type] = {s, reason, message, Now()};
  } else {
    it->second.reason = reason;
    it->second.message = message;
  }
}

Json PodRunner::ContainerStatus(const Container& c) const {
  Json status = {{"name", c.name},
                 {"image", StringAt(c.spec, "image")},
                 {"imageID", ""},
                 {"ready", !c.init && IsReady(c)},
                 {"restartCount", c.restart_count},
                 {"started", IsStarted(c)},
                 {"lastState", c.last_state}};
  if (c.started_once) {
    status["containerID"] =
        Podman() && !c.container_id.empty()
            ? "podman://" + c.container_id
            : "process://" + uid_ + "/" + c.name + "/" + std::to_string(c.restart_count);
  }
  if (Podman() && !c.image.id.empty()) status["imageID"] = "sha256:" + c.image.id;
  if (c.init) status.erase("started");
  Json state;
  switch (c.state) {
    case State::kWaiting: {
      Json waiting = {
          {"reason", c.waiting_reason.empty() ? "ContainerCreating" : c.waiting_reason}};
      if (!c.waiting_message.empty()) waiting["message"] = c.waiting_message;
      state["waiting"] = waiting;
      break;
    }
    case State::kRunning:
      state["running"] = {{"startedAt", c.started_at}};
      break;
    case State::kTerminated: {
      Json terminated = {
          {"exitCode", c.exit_code}, {"reason", c.reason}, {"finishedAt", c.finished_at}};
      if (!c.started_at.empty()) terminated["startedAt"] = c.started_at;
      if (c.signal != 0) terminated["signal"] = c.signal;
      if (!c.message.empty()) terminated["message"] = c.message;
      if (c.started_once) terminated["containerID"] = status["containerID"];
      state["terminated"] = terminated;
      break;
    }
  }
  status["state"] = state;
  return status;
}

Json PodRunner::Status() const {
  Json status;
  status["phase"] = Phase();
  Json conditions = Json::array();
  for (const char* type :
       {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}) {
    Condition cond;
    if (std::string(type) == "PodReadyToStartContainers") {
      cond = {prepared_ ? "True" : "False", "", "", start_time_};
    } else {
      auto it = conditions_.find(type);
      if (it == conditions_.end()) continue;
      cond = it->second;
    }
    Json c = {{"type", type},
              {"status", cond.status},
              {"lastProbeTime", nullptr},
              {"lastTransitionTime", cond.last_transition}};
    if (!cond.reason.empty()) c["reason"] = cond.reason;
    if (!cond.message.empty()) c["message"] = cond.message;
    conditions.push_back(c);
  }
  status["conditions"] = conditions;
  status["hostIP"] = config_.view.host_ip;
  status["hostIPs"] = Json::array({{{"ip", config_.view.host_ip}}});
  if (prepared_ && !pod_ip_.empty()) {
    status["podIP"] = pod_ip_;
    status["podIPs"] = Json::array({{{"ip", pod_ip_}}});
  }
  status["startTime"] = start_time_;
  status["qosClass"] = QosClass(pod_);
  Json init = Json::array();
  Json main = Json::array();
  for (const auto& c : containers_) (c.init ? init : main).push_back(ContainerStatus(c));
  if (!init.empty()) status["initContainerStatuses"] = init;
  status["containerStatuses"] = main;
  return status;
}

}  // namespace parallelrun::rt::cluster
