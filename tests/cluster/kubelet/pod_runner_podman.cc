// PodRunner's container runtime (RunnerConfig::runtime == kPodman): local images, `podman run`
// per container run, signals through `podman kill`, exit analysis (StartError, OOMKilled) and
// probes. See pod_runner.h and podman_args.h.

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tests/cluster/kubelet/pod_runner.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr auto kSignalRetry = milliseconds(300);

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t start = s.find_first_not_of(" \n");
  return start == std::string::npos ? "" : s.substr(start);
}

std::string ReadFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const char* SignalName(int signal) { return signal == SIGKILL ? "KILL" : "TERM"; }

// Container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*, unique per run, like the kubelet's
// k8s_<container>_<pod>_<namespace>_<uid>_<attempt>.
std::string ContainerName(const std::string& container, const std::string& pod,
                          const std::string& ns, const std::string& uid, int attempt) {
  return "k8s_" + container + "_" + pod + "_" + ns + "_" + uid + "_" + std::to_string(attempt);
}

}  // namespace

bool PodRunner::CheckLocalImage(Container& c, SteadyTime now) {
  const std::string image = StringAt(c.spec, "image");
  std::string out, err;
  int rc = RunPodman({"image", "inspect", "--format=json", NormalizeImageRef(image)}, &out, &err);
  std::string parse_error;
  if (rc == 0 && ParseImageInspect(out, &c.image, &parse_error)) {
    if (c.image_failed) c.waiting_reason = "ContainerCreating";
    c.image_failed = false;
    return true;
  }
  std::string detail = Trim(rc == 0 ? parse_error : err);
  if (StringAt(c.spec, "imagePullPolicy") == "Never") {
    std::string message =
        "Container image \"" + image + "\" is not present with pull policy of Never";
    if (!c.image_failed || c.waiting_reason != "ErrImageNeverPull") {
      Emit("Warning", "ErrImageNeverPull", message, &c);
    }
    c.image_failed = true;
    c.image_failed_at = now;
    c.waiting_reason = "ErrImageNeverPull";
    c.waiting_message = message;
    return false;
  }
  if (!c.image_failed) {
    c.image_failed = true;
    c.image_failed_at = now;
    c.waiting_reason = "ErrImagePull";
    c.waiting_message = "rpc error: code = NotFound desc = failed to pull and unpack image \"" +
                        image + "\": " + detail +
                        " (the test cluster never pulls: build or tag the image in the local "
                        "podman storage)";
    Emit("Normal", "Pulling", "Pulling image \"" + image + "\"", &c);
    Emit("Warning", "Failed", "Failed to pull image \"" + image + "\": " + c.waiting_message, &c);
    Emit("Warning", "Failed", "Error: ErrImagePull", &c);
  } else if (c.waiting_reason == "ErrImagePull" && now - c.image_failed_at >= milliseconds(1000)) {
    c.waiting_reason = "ImagePullBackOff";
    c.waiting_message = "Back-off pulling image \"" + image + "\"";
    Emit("Normal", "BackOff", c.waiting_message, &c);
    Emit("Warning", "Failed", "Error: ImagePullBackOff", &c);
  }
  return false;
}

bool PodRunner::PodmanPreflight(Container& c, std::vector<std::string>* env, std::string* error) {
  // HOME comes from the image's /etc/passwd (the runtime sets it), unless the pod sets it.
  bool own_home = false;
  if (const Json* vars = JsonAt(c.spec, "env"); vars != nullptr && vars->is_array()) {
    for (const auto& v : *vars) own_home = own_home || StringAt(v, "name") == "HOME";
  }
  if (!own_home) std::erase(*env, std::string("HOME=/root"));
  *error = VerifyRunAsNonRoot(pod_, c.spec, c.image);
  return error->empty();
}

pid_t PodRunner::LaunchPodman(Container& c, const std::vector<std::string>& env,
                              const std::vector<BindMount>& mounts, const std::string& log,
                              std::string* error) {
  PodmanRunInputs in;
  in.name = ContainerName(c.name, name_, ns_, uid_, c.restart_count);
  in.cid_file = pod_dir_ + "/" + c.name + ".cid";
  in.state_dir = config_.state_dir;
  in.argv = ContainerProcessArgv(c.spec, c.image, env);
  in.env = env;
  in.mounts = mounts;
  in.hostname = StringAt(pod_, "spec.hostname", name_);
  in.memory_controller = config_.memory_controller;
  in.cpu_controller = config_.cpu_controller;
  std::vector<std::string> args;
  if (!PodmanRunArgs(pod_, c.spec, c.image, in, &args, error)) return -1;
  // (Containers left by an earlier testcluster process with this state folder were removed when
  // the kubelet started: KillLeftoverPodProcesses.)
  std::error_code ec;
  fs::remove(in.cid_file, ec);
  c.podman_name = in.name;
  c.cid_file = in.cid_file;
  c.container_id.clear();
  c.pending_signal = 0;
  c.signal_job.reset();
  c.log_offset = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
  return SpawnPodman(args, log, error);
}

void PodRunner::AfterPodmanExit(Container& c) {
  std::ifstream(c.cid_file) >> c.container_id;
  const std::string log = log_dir_ + "/" + c.name + ".log";
  if (c.exit_code >= 125 && c.exit_code <= 127) {
    // 125-127 are also podman's own failures (no container, or runc could not exec): tell them
    // apart by whether the container ever started.
    std::string started;
    int rc = c.container_id.empty()
                 ? -1
                 : RunPodman({"inspect", "--format={{.State.StartedAt}}", c.container_id}, &started,
                             nullptr);
    if (rc != 0 || started.rfind("0001-01-01", 0) == 0) {
      std::string message = Trim(ReadFrom(log, c.log_offset));
      if (message.rfind("Error: ", 0) == 0) message = message.substr(7);
      // podman's message is no container output: keep it out of `kubectl logs`.
      std::error_code ec;
      fs::resize_file(log, c.log_offset, ec);
      c.reason = "StartError";
      c.exit_code = 128;
      c.message = message;
      c.started_at.clear();
    }
  } else if (c.exit_code == 137 && JsonAt(c.spec, "resources.limits.memory") != nullptr) {
    std::string oom;
    RunPodman({"inspect", "--format={{.State.OOMKilled}}", c.podman_name}, &oom, nullptr);
    if (Trim(oom) == "true" || KernelLogShowsOomKill(c.container_id)) c.reason = "OOMKilled";
  }
  RemoveContainerInBackground(c.podman_name);
  c.pending_signal = 0;
  c.signal_job.reset();
}

void PodRunner::SignalContainer(Container& c, int signal) {
  if (c.pid <= 0) return;
  if (!Podman()) {
    KillProcessGroup(c.pid, signal);
    return;
  }
  if (c.pending_signal != SIGKILL) c.pending_signal = signal;
  c.next_signal_try = {};
}

void PodRunner::DeliverSignals(Container& c, SteadyTime now) {
  if (c.kill_deadline && now >= *c.kill_deadline) {
    SignalContainer(c, SIGKILL);
    c.kill_deadline.reset();
  }
  if (c.signal_job && c.signal_job->Done()) {
    // Delivered; a failure (the container was only being created) is retried below.
    if (c.signal_job->ExitCode() == 0 && c.pending_signal == c.delivering_signal) {
      c.pending_signal = 0;
    }
    c.signal_job.reset();
    c.next_signal_try = now + kSignalRetry;
  }
  if (c.pending_signal == 0 || c.signal_job || now < c.next_signal_try) return;
  std::error_code ec;
  if (!fs::exists(c.cid_file, ec)) return;  // not created yet: `podman kill` would miss it
  c.delivering_signal = c.pending_signal;
  c.signal_job = PodmanJob::Start(
      {"kill", std::string("--signal=") + SignalName(c.pending_signal), c.podman_name});
}

void PodRunner::ApplyPodmanVolumeOwnership() {
  if (std::optional<int64_t> group = PodFsGroup(pod_)) ApplyFsGroup(pod_, volumes_, *group);
}

void PodRunner::ResetProbes(Container& c, SteadyTime now) {
  c.startup_probe.reset();
  c.liveness_probe.reset();
  c.readiness_probe.reset();
  if (!Podman() || c.init) return;
  const std::pair<const char*, std::unique_ptr<ProbeWorker>*> probes[] = {
      {"startupProbe", &c.startup_probe},
      {"livenessProbe", &c.liveness_probe},
      {"readinessProbe", &c.readiness_probe}};
  for (const auto& [field, worker] : probes) {
    const Json* probe = JsonAt(c.spec, field);
    if (probe == nullptr || !probe->is_object()) continue;
    ProbeSpec spec;
    std::string error;
    if (!ParseProbe(*probe, c.spec, &spec, &error)) {
      // The probe can never succeed: every attempt fails with the reason.
      spec = ProbeSpec{};
      spec.error = std::string(field) + ": " + error;
      spec.failure_threshold = 1;
    }
    *worker = std::make_unique<ProbeWorker>(spec);
    (*worker)->Reset(now);
  }
}

PodRunner::SteadyTime PodRunner::SyncProbes(Container& c, SteadyTime now) {
  SteadyTime next = now + std::chrono::hours(1);
  if (c.probe_killed || c.state != State::kRunning) return next;
  const std::string host_default = pod_ip_;
  const std::string name = c.podman_name;
  auto poll = [&](ProbeWorker& worker, const char* type) {
    const ProbeSpec spec = worker.spec();
    const std::string host = spec.host.empty() ? host_default : spec.host;
    ProbeWorker::Attempt attempt = [spec, host, name]() -> ProbeOutcome {
      if (!spec.error.empty()) return {false, spec.error};
      const milliseconds timeout = std::chrono::seconds(spec.timeout_seconds);
      switch (spec.kind) {
        case ProbeSpec::Kind::kHttpGet:
          return HttpGetOnce(host, spec.port, spec.path, spec.headers, timeout);
        case ProbeSpec::Kind::kTcpSocket:
          return TcpConnectOnce(host, spec.port, timeout);
        case ProbeSpec::Kind::kExec:
          break;
      }
      std::vector<std::string> args = {"exec", name};
      args.insert(args.end(), spec.command.begin(), spec.command.end());
      std::string out, err;
      int rc = RunPodman(args, &out, &err, timeout);
      if (rc == 0) return {true, out};
      if (rc < 0)
        return {false, "command timed out after " + std::to_string(spec.timeout_seconds) + "s"};
      return {false, Trim(out + err)};
    };
    bool changed = false;
    next = std::min(next, worker.Poll(now, attempt, &changed));
    for (const auto& message : worker.TakeFailures()) {
      Emit("Warning", "Unhealthy", std::string(type) + " probe failed: " + message, &c);
    }
    return worker.result() == ProbeWorker::Result::kFailure;
  };
  auto kill = [&](const ProbeWorker& worker, const char* which) {
    Emit("Normal", "Killing",
         "Container " + c.name + " failed " + which + " probe, will be restarted", &c);
    c.probe_killed = true;
    int64_t grace = 30;
    if (const Json* g = JsonAt(pod_, "spec.terminationGracePeriodSeconds");
        g != nullptr && g->is_number_integer()) {
      grace = g->get<int64_t>();
    }
    grace = worker.spec().termination_grace_period_seconds.value_or(grace);
    SignalContainer(c, SIGTERM);
    c.kill_deadline = now + std::chrono::seconds(std::max<int64_t>(grace, 0));
  };
  if (c.startup_probe && c.startup_probe->result() != ProbeWorker::Result::kSuccess) {
    if (poll(*c.startup_probe, "Startup")) kill(*c.startup_probe, "startup");
    return next;
  }
  if (c.liveness_probe && poll(*c.liveness_probe, "Liveness")) {
    kill(*c.liveness_probe, "liveness");
    return next;
  }
  if (c.readiness_probe) poll(*c.readiness_probe, "Readiness");
  return next;
}

void PodRunner::RemoveAllContainersNow() {
  std::vector<std::string> args = {"rm", "--force", "--time=0", "--ignore"};
  for (const auto& c : containers_) {
    if (c.pid > 0 && !c.podman_name.empty()) args.push_back(c.podman_name);
  }
  if (args.size() > 4) RunPodman(args, nullptr, nullptr);
}

}  // namespace parallelrun::rt::cluster
