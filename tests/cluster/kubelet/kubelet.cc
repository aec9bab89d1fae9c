// The process kubelet (StartKubelet of api.h): the test cluster's node agent and scheduler.
//
// One sync thread does everything that changes state; informers (informer.h) feed it the pods,
// the node, Services, Endpoints and PVCs. Per pass it:
//   - schedules pods without spec.nodeName onto its node (merge patch of spec.nodeName, event
//     Scheduled) or marks them Unschedulable (condition PodScheduled False, event
//     FailedScheduling) when the node is cordoned or does not match (scheduling.h);
//   - starts a PodRunner (pod_runner.h) for each pod bound to its node, with a pod IP
//     (pod_ips.h), and forwards deletion (deletionTimestamp: SIGTERM, SIGKILL after the grace
//     period, then the final DELETE with grace period 0, as a real kubelet completes graceful
//     deletion);
//   - writes pod status (merge patch through pods/status) whenever it changed, and events;
//   - keeps every running pod's /etc/hosts current with Services and pod IPs;
//   - maintains its Node (labels, status, the unschedulable taint that mirrors a cordon) and
//     binds PVCs (status.phase Bound).
// Stop() stops every pod (SIGTERM, SIGKILL after min(grace period, 5 s)) and returns when they
// are gone.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster/api.h"
#include "tests/cluster/kubelet/container_process.h"
#include "tests/cluster/kubelet/event_recorder.h"
#include "tests/cluster/kubelet/hosts_file.h"
#include "tests/cluster/kubelet/informer.h"
#include "tests/cluster/kubelet/pod_ips.h"
#include "tests/cluster/kubelet/pod_runner.h"
#include "tests/cluster/kubelet/podman.h"
#include "tests/cluster/kubelet/scheduling.h"

namespace parallelrun::rt::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using SteadyTime = steady_clock::time_point;

const ResourceRef kPods{"", "pods"};
const ResourceRef kNodes{"", "nodes"};
const ResourceRef kServices{"", "services"};
const ResourceRef kEndpoints{"", "endpoints"};
const ResourceRef kClaims{"", "persistentvolumeclaims"};
constexpr char kMergePatch[] = "application/merge-patch+json";

constexpr auto kIdleWake = milliseconds(1000);
constexpr auto kHostsRefreshEvery = milliseconds(100);
constexpr auto kNodeHeartbeatEvery = std::chrono::minutes(1);
constexpr int64_t kOrphanGraceSeconds = 2;
constexpr int64_t kShutdownGraceCapSeconds = 5;

// Host variables a container gets (a real container gets its image's; these make the host's
// tools, sanitizers and coverage work inside pods).
std::vector<std::string> PassThroughEnv() {
  static const char* const kNames[] = {"PATH",
                                       "LANG",
                                       "LC_ALL",
                                       "TZ",
                                       "LD_LIBRARY_PATH",
                                       "PYTHONPATH",
                                       "ASAN_OPTIONS",
                                       "UBSAN_OPTIONS",
                                       "LSAN_OPTIONS",
                                       "TSAN_OPTIONS",
                                       "LLVM_PROFILE_FILE",
                                       "GCOV_PREFIX",
                                       "GCOV_PREFIX_STRIP"};
  std::vector<std::string> env;
  for (const char* name : kNames) {
    if (const char* v = std::getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
  return env;
}

std::string Now() { return FormatTimestamp(std::chrono::system_clock::now()); }

int64_t GraceSeconds(const Json& pod) {
  const Json* g = JsonAt(pod, "metadata.deletionGracePeriodSeconds");
  if (g == nullptr || !g->is_number_integer())
    g = JsonAt(pod, "spec.terminationGracePeriodSeconds");
  return g != nullptr && g->is_number_integer() ? g->get<int64_t>() : 30;
}

class ProcessKubelet : public Kubelet {
 public:
  explicit ProcessKubelet(const KubeletContext& context)
      : ctx_(context),
        node_key_("/" + context.node_name),
        ips_(context.state_dir),
        kubelet_events_(context.api, "kubelet", context.node_name),
        scheduler_events_(context.api, "default-scheduler", ""),
        pods_informer_(context.api, kPods, [this] { Wake(); }),
        nodes_informer_(context.api, kNodes, [this] { Wake(); }),
        services_informer_(context.api, kServices, [this] { Wake(); }),
        endpoints_informer_(context.api, kEndpoints, [this] { Wake(); }),
        claims_informer_(context.api, kClaims, [this] { Wake(); }) {
    runner_config_.state_dir = ctx_.state_dir;
    Api* api = ctx_.api;
    runner_config_.view.get = [api](const std::string& resource, const std::string& ns,
                                    const std::string& name) -> std::optional<Json> {
      ApiResult r = api->Get({"", resource}, ns, name);
      if (!r.ok()) return std::nullopt;
      return r.value();
    };
    runner_config_.view.service_account_token = ctx_.service_account_token;
    runner_config_.view.ca_file = ctx_.ca_file;
    runner_config_.view.api_host = ctx_.api_host;
    runner_config_.view.api_port = ctx_.api_port;
    runner_config_.view.node_name = ctx_.node_name;
    runner_config_.view.host_ip = "127.0.0.1";
    if (ctx_.runtime == "container") {
      // Containers get their image's environment; nothing of the host's passes through.
      runner_config_.runtime = ContainerRuntime::kPodman;
      runner_config_.memory_controller = CgroupControllerAvailable("memory");
      runner_config_.cpu_controller = CgroupControllerAvailable("cpu");
      std::string version;
      RunPodman({"version", "--format={{.Client.Version}}"}, &version, nullptr);
      while (!version.empty() && version.back() == '\n') version.pop_back();
      runtime_version_ = "podman://" + (version.empty() ? std::string("unknown") : version);
    } else {
      runner_config_.base_env = PassThroughEnv();
    }
    const char* path = std::getenv("PATH");
    runner_config_.search_path = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    runner_config_.hosts_content = [this](const Json& pod, const std::string& ip) {
      return BuildHostsFile(pod, ip, hosts_inputs_);
    };
    hosts_inputs_.api_host = ctx_.api_host;
  }

  ~ProcessKubelet() override { Stop(); }

  void Start() {
    KillLeftoverPodProcesses(ctx_.state_dir);
    std::error_code ec;
    std::filesystem::create_directories(ctx_.state_dir + "/kubelet", ec);
    std::ofstream(ctx_.state_dir + "/kubelet/runtime", std::ios::trunc) << ctx_.runtime << "\n";
    for (Informer* i : Informers()) i->Start();
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      stopping_ = true;
    }
    wake_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    for (Informer* i : Informers()) i->Stop();
  }

 private:
  struct PodEntry {
    std::string key;
    Json pod;
    std::unique_ptr<PodRunner> runner;
    Json published;
    bool orphan = false;  // the object is gone (or replaced): stop, publish nothing
    bool ip_released = false;
    SteadyTime next_sync{};
  };

  std::vector<Informer*> Informers() {
    return {&pods_informer_, &nodes_informer_, &services_informer_, &endpoints_informer_,
            &claims_informer_};
  }

  void Wake() {
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      woken_ = true;
    }
    wake_cv_.notify_all();
  }

  void Run() {
    SteadyTime next_heartbeat{};
    SteadyTime last_hosts{};
    bool hosts_dirty = true;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(wake_mu_);
        if (stopping_) break;
        woken_ = false;
      }
      const SteadyTime now = steady_clock::now();
      SteadyTime next = now + kIdleWake;
      bool synced = true;
      for (Informer* i : Informers()) synced = synced && i->Synced();
      if (synced) {
        std::set<std::string> changed_pods = pods_informer_.TakeChanged();
        bool node_changed = !nodes_informer_.TakeChanged().empty();
        if (node_changed || now >= next_heartbeat) {
          SyncNode(now >= next_heartbeat);
          if (now >= next_heartbeat) next_heartbeat = now + kNodeHeartbeatEvery;
          // A cordon or label change may let waiting pods in (or keep new ones out).
          for (const auto& [key, entry] : unschedulable_) changed_pods.insert(key);
        }
        bool network_changed = !services_informer_.TakeChanged().empty();
        network_changed = !endpoints_informer_.TakeChanged().empty() || network_changed;
        if (network_changed || !changed_pods.empty()) hosts_dirty = true;
        for (const auto& key : changed_pods) HandlePod(key);
        BindClaims();
        if (hosts_dirty) {
          if (now - last_hosts >= kHostsRefreshEvery) {
            RefreshHosts();
            last_hosts = now;
            hosts_dirty = false;
          } else {
            next = std::min(next, last_hosts + kHostsRefreshEvery);
          }
        }
        SyncRunners(&next);
        ReapBackgroundJobs();
      } else {
        next = now + milliseconds(20);
      }
      std::unique_lock<std::mutex> lock(wake_mu_);
      wake_cv_.wait_until(lock, next, [this] { return woken_ || stopping_; });
    }
    Shutdown();
  }

  // ---------------------------------------------------------------------------- node

  void SyncNode(bool heartbeat) {
    std::optional<Json> node = nodes_informer_.Get(node_key_);
    if (!node) return;
    Api* api = ctx_.api;
    // Well-known labels a real kubelet sets.
    Json labels = Json::object();
    const Json* have = JsonAt(*node, "metadata.labels");
    const std::pair<const char*, std::string> wanted[] = {
        {"kubernetes.io/hostname", ctx_.node_name},
        {"kubernetes.io/os", "linux"},
        {"kubernetes.io/arch", "amd64"},
        {"beta.kubernetes.io/os", "linux"},
        {"beta.kubernetes.io/arch", "amd64"}};
    for (const auto& [k, v] : wanted) {
      if (have == nullptr || !have->contains(k)) labels[k] = v;
    }
    if (!labels.empty()) {
      api->Patch(kNodes, "", ctx_.node_name, kMergePatch,
                 Json{{"metadata", {{"labels", labels}}}}.dump());
    }
    // The unschedulable taint mirrors a cordon, as the node lifecycle controller keeps it.
    const Json* unschedulable = JsonAt(*node, "spec.unschedulable");
    bool cordoned = unschedulable != nullptr && *unschedulable == true;
    Json taints = Json::array();
    bool has_taint = false;
    if (const Json* t = JsonAt(*node, "spec.taints"); t != nullptr && t->is_array()) {
      for (const auto& taint : *t) {
        if (StringAt(taint, "key") == kUnschedulableTaint) {
          has_taint = true;
          if (!cordoned) continue;
        }
        taints.push_back(taint);
      }
    }
    if (cordoned != has_taint) {
      if (cordoned) {
        taints.push_back(
            {{"key", kUnschedulableTaint}, {"effect", "NoSchedule"}, {"timeAdded", Now()}});
      }
      api->Patch(kNodes, "", ctx_.node_name, kMergePatch,
                 Json{{"spec", {{"taints", taints.empty() ? Json(nullptr) : taints}}}}.dump());
    }
    if (!heartbeat) return;
    std::string now = Now();
    auto condition = [&](const char* type, const char* status, const char* reason,
                         const char* message) {
      return Json{
          {"type", type},       {"status", status},         {"reason", reason},
          {"message", message}, {"lastHeartbeatTime", now}, {"lastTransitionTime", start_time_}};
    };
    Json resources = {
        {"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}, {"ephemeral-storage", "100Gi"}};
    Json status = {
        {"conditions",
         {condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available"),
          condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure"),
          condition("PIDPressure", "False", "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available"),
          condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")}},
        {"capacity", resources},
        {"allocatable", resources},
        {"addresses",
         {{{"type", "InternalIP"}, {"address", "127.0.0.1"}},
          {{"type", "Hostname"}, {"address", ctx_.node_name}}}},
        {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", 10250}}}}},
        {"nodeInfo",
         {{"kubeletVersion", "v1.32.0"},
          {"kubeProxyVersion", "v1.32.0"},
          {"containerRuntimeVersion", runtime_version_},
          {"operatingSystem", "linux"},
          {"architecture", "amd64"},
          {"osImage", "testcluster " + ctx_.runtime + " kubelet"},
          {"kernelVersion", ""},
          {"machineID", ""},
          {"systemUUID", ""},
          {"bootID", ""}}}};
    api->Patch(kNodes, "", ctx_.node_name, kMergePatch, Json{{"status", status}}.dump(), "status");
  }

  // ---------------------------------------------------------------------------- pods

  void HandlePod(const std::string& key) {
    std::optional<Json> obj = pods_informer_.Get(key);
    std::string uid = obj ? StringAt(*obj, "metadata.uid") : "";
    if (auto it = uid_by_key_.find(key); it != uid_by_key_.end() && it->second != uid) {
      // Gone without the graceful path (force delete), or replaced by a pod of the same name.
      PodEntry& old = entries_[it->second];
      old.orphan = true;
      if (!old.runner->Terminating())
        old.runner->Terminate(std::min(GraceSeconds(old.pod), kOrphanGraceSeconds));
      old.next_sync = SteadyTime{};
      uid_by_key_.erase(it);
    }
    if (auto it = unschedulable_.find(key); it != unschedulable_.end() && it->second.first != uid) {
      unschedulable_.erase(it);
    }
    if (!obj) return;
    const Json& pod = *obj;
    const bool deleting = JsonAt(pod, "metadata.deletionTimestamp") != nullptr;
    const std::string node = StringAt(pod, "spec.nodeName");
    if (node.empty()) {
      if (!deleting) Schedule(pod, key);
      return;
    }
    unschedulable_.erase(key);
    if (node != ctx_.node_name) return;

    if (auto it = entries_.find(uid); it != entries_.end()) {
      PodEntry& e = it->second;
      e.pod = pod;
      e.runner->Update(pod);
      if (deleting && !e.runner->Terminating()) e.runner->Terminate(GraceSeconds(pod));
      e.next_sync = SteadyTime{};
      return;
    }
    if (deleting) {
      // Nothing of it runs here: complete the deletion.
      FinishDeletion(pod);
      return;
    }
    std::string phase = StringAt(pod, "status.phase");
    if (phase == "Succeeded" || phase == "Failed") return;

    // A pod that already had an IP (before a restart of the kubelet) keeps it when it can.
    std::string ip = StringAt(pod, "status.podIP");
    if (ip.empty() || !ips_.Reserve(ip)) ip = ips_.Allocate();
    PodEntry e;
    e.key = key;
    e.pod = pod;
    e.runner = std::make_unique<PodRunner>(runner_config_, pod, ip);
    uid_by_key_[key] = uid;
    entries_.emplace(uid, std::move(e));
  }

  void Schedule(const Json& pod, const std::string& key) {
    std::string scheduler = StringAt(pod, "spec.schedulerName", "default-scheduler");
    if (scheduler != "default-scheduler") return;  // another scheduler's pod
    std::optional<Json> node = nodes_informer_.Get(node_key_);
    if (!node) return;
    const std::string ns = StringAt(pod, "metadata.namespace", "default");
    const std::string name = StringAt(pod, "metadata.name");
    const std::string uid = StringAt(pod, "metadata.uid");
    std::string message = UnschedulableMessage(pod, *node);
    if (message.empty()) {
      ApiResult r = ctx_.api->Patch(kPods, ns, name, kMergePatch,
                                    Json{{"spec", {{"nodeName", ctx_.node_name}}}}.dump());
      if (r.ok()) {
        scheduler_events_.Record(
            pod, "Pod", "v1", "Normal", "Scheduled",
            "Successfully assigned " + ns + "/" + name + " to " + ctx_.node_name);
      }
      return;
    }
    auto it = unschedulable_.find(key);
    if (it != unschedulable_.end() && it->second.first == uid && it->second.second == message)
      return;
    Json status = {{"phase", "Pending"},
                   {"conditions",
                    {{{"type", "PodScheduled"},
                      {"status", "False"},
                      {"reason", "Unschedulable"},
                      {"message", message},
                      {"lastProbeTime", nullptr},
                      {"lastTransitionTime", Now()}}}}};
    ApiResult r =
        ctx_.api->Patch(kPods, ns, name, kMergePatch, Json{{"status", status}}.dump(), "status");
    if (!r.ok()) return;
    unschedulable_[key] = {uid, message};
    scheduler_events_.Record(pod, "Pod", "v1", "Warning", "FailedScheduling", message);
  }

  // The final DELETE of graceful deletion; true when the pod is gone (or was already).
  bool FinishDeletion(const Json& pod) {
    DeleteOptions options;
    options.grace_period_seconds = 0;
    options.precondition_uid = StringAt(pod, "metadata.uid");
    ApiResult r = ctx_.api->Delete(kPods, StringAt(pod, "metadata.namespace", "default"),
                                   StringAt(pod, "metadata.name"), options);
    // 409: the uid precondition failed, so the name belongs to a newer pod: ours is gone.
    return r.ok() || r.code() == 404 || r.code() == 409;
  }

  void Publish(PodEntry& e) {
    Json status = e.runner->Status();
    if (status == e.published) return;
    ApiResult r = ctx_.api->Patch(kPods, StringAt(e.pod, "metadata.namespace", "default"),
                                  StringAt(e.pod, "metadata.name"), kMergePatch,
                                  Json{{"status", status}}.dump(), "status");
    if (r.ok() || r.code() == 404) e.published = status;
  }

  void SyncRunners(SteadyTime* next) {
    const SteadyTime now = steady_clock::now();
    for (auto it = entries_.begin(); it != entries_.end();) {
      PodEntry& e = it->second;
      if (now >= e.next_sync) e.next_sync = e.runner->Sync();
      for (const PodEvent& ev : e.runner->TakeEvents()) {
        kubelet_events_.Record(e.pod, "Pod", "v1", ev.type, ev.reason, ev.message, ev.field_path);
      }
      if (!e.orphan) Publish(e);
      bool erase = false;
      if (e.runner->Stopped()) {
        if (!e.ip_released) {
          ips_.Release(e.runner->pod_ip());
          e.ip_released = true;
        }
        if (e.orphan) {
          erase = true;
        } else if (e.runner->Terminating() && FinishDeletion(e.pod)) {
          // (Its final status was published just above.)
          uid_by_key_.erase(e.key);
          erase = true;
        }
      }
      if (erase) {
        it = entries_.erase(it);
        continue;
      }
      if (!e.runner->Stopped()) *next = std::min(*next, e.next_sync);
      ++it;
    }
  }

  void RefreshHosts() {
    bool any_live = std::any_of(entries_.begin(), entries_.end(),
                                [](const auto& kv) { return !kv.second.runner->Stopped(); });
    if (!any_live) return;
    hosts_inputs_.services = services_informer_.List();
    hosts_inputs_.endpoints = endpoints_informer_.List();
    hosts_inputs_.pods = pods_informer_.List();
    for (auto& [uid, e] : entries_) {
      if (!e.runner->Stopped()) e.runner->RefreshHosts();
    }
  }

  void BindClaims() {
    for (const auto& key : claims_informer_.TakeChanged()) {
      std::optional<Json> claim = claims_informer_.Get(key);
      if (!claim || StringAt(*claim, "status.phase") == "Bound" ||
          JsonAt(*claim, "metadata.deletionTimestamp") != nullptr) {
        continue;
      }
      Json status = {{"phase", "Bound"}};
      if (const Json* modes = JsonAt(*claim, "spec.accessModes")) status["accessModes"] = *modes;
      std::string storage = StringAt(*claim, "spec.resources.requests.storage");
      if (!storage.empty()) status["capacity"] = {{"storage", storage}};
      ctx_.api->Patch(kClaims, StringAt(*claim, "metadata.namespace", "default"),
                      StringAt(*claim, "metadata.name"), kMergePatch,
                      Json{{"status", status}}.dump(), "status");
    }
  }

  void Shutdown() {
    for (auto& [uid, e] : entries_) {
      if (!e.runner->Stopped()) {
        e.runner->Terminate(std::min(GraceSeconds(e.pod), kShutdownGraceCapSeconds));
      }
    }
    auto deadline = steady_clock::now() + std::chrono::seconds(kShutdownGraceCapSeconds + 2);
    while (steady_clock::now() < deadline) {
      bool all = true;
      for (auto& [uid, e] : entries_) {
        e.runner->Sync();
        all = all && e.runner->Stopped();
      }
      if (all) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    entries_.clear();  // a runner's destructor SIGKILLs whatever is left
    // Exited containers whose background removal has not finished yet, and any others.
    if (runner_config_.runtime == ContainerRuntime::kPodman)
      RemoveClusterContainers(ctx_.state_dir);
  }

  KubeletContext ctx_;
  std::string node_key_;
  std::string start_time_ = Now();
  std::string runtime_version_ = "process://testcluster";
  PodIpAllocator ips_;
  RunnerConfig runner_config_;
  HostsInputs hosts_inputs_;
  EventRecorder kubelet_events_;
  EventRecorder scheduler_events_;
  Informer pods_informer_;
  Informer nodes_informer_;
  Informer services_informer_;
  Informer endpoints_informer_;
  Informer claims_informer_;

  std::map<std::string, PodEntry> entries_;        // by pod uid
  std::map<std::string, std::string> uid_by_key_;  // "ns/name" -> uid of the entry
  // Pods left Pending by the scheduler: key -> (uid, message last written).
  std::map<std::string, std::pair<std::string, std::string>> unschedulable_;

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Kubelet> StartKubelet(const KubeletContext& context) {
  auto kubelet = std::make_unique<ProcessKubelet>(context);
  kubelet->Start();
  return kubelet;
}

void KillLeftoverPodProcesses(const std::string& state_dir) {
  KillRecordedProcesses(state_dir + "/kubelet/pids");
  // Containers of a container-runtime cluster outlive their `podman run` processes.
  std::ifstream marker(state_dir + "/kubelet/runtime");
  std::string runtime;
  if (marker >> runtime && runtime == "container") RemoveClusterContainers(state_dir);
}

}  // namespace parallelrun::rt::cluster
