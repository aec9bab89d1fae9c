#include "operator/reconciler/reconciler.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>

#include "fmt/format.h"
#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/certs.h"
#include "operator/reconciler/children.h"
#include "operator/reconciler/job_status.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;
using rt::Status;
using std::chrono::milliseconds;

namespace {

using api::kFinalizer;

int64_t Int(const json& object, const char* key, int64_t fallback = 0) {
  const json& v = Field(object, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (...) {
    }
  }
  return fallback;
}

std::string Base64Decode(const std::string& in) {
  if (in.empty()) return {};
  std::string out(3 * ((in.size() + 3) / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return {};
  size_t pad = 0;
  if (in.size() >= 1 && in[in.size() - 1] == '=') ++pad;
  if (in.size() >= 2 && in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

// "2026-11-23T10:00:00Z" (fractions ignored) → time point; nullopt if not RFC 3339 UTC.
std::optional<rt::SystemTime> ParseTime(const std::string& text) {
  std::tm tm{};
  int year, month, day, hour, minute, second;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &year, &month, &day, &hour, &minute,
                  &second) != 6) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string Timestamp(rt::SystemTime t) { return FormatStatusTime(t); }

bool IsTerminalPhase(const std::string& phase) { return phase == "Succeeded" || phase == "Failed"; }

const json* ContainerStatus(const json& pod, const std::string& container) {
  const json& statuses = Field(Field(pod, "status"), "containerStatuses");
  if (!statuses.is_array()) return nullptr;
  for (const json& s : statuses) {
    if (Str(s, "name") == container) return &s;
  }
  return statuses.empty() ? nullptr : &statuses[0];
}

std::string PodPhase(const json& pod) { return Str(Field(pod, "status"), "phase"); }

bool PodTerminating(const json& pod) {
  return !Str(Field(pod, "metadata"), "deletionTimestamp").empty();
}

bool PodFinished(const json& pod) {
  const std::string phase = PodPhase(pod);
  return phase == "Succeeded" || phase == "Failed";
}

// status.recentErrors: the coordinator's latest distinct errors (docs/why-did-my-job-fail.md). An
// empty list (a coordinator that restarted) leaves what an earlier read put there.
void PutRecentErrors(const json& progress, json& status) {
  const json& errors = Field(progress, "recentErrors");
  if (errors.is_array() && !errors.empty()) status["recentErrors"] = errors;
}

// How long worker pods still running when the job ended may take to hear the end and exit on
// their own (their pods, and so `kubectl logs`, are kept like a Job's) before they are deleted.
constexpr std::chrono::seconds kWorkerExitGrace{90};

bool WorkerMayStillExit(const json& pod, const json& status, rt::SystemTime now) {
  if (Str(Field(Field(pod, "metadata"), "labels"), kRoleLabel) != kWorkerRole) return false;
  auto done = ParseTime(Str(status, "completionTime"));
  return done && now < *done + kWorkerExitGrace;
}

// The terminated state of a pod's container, if it ended.
struct Termination {
  int exit_code = 0;
  std::string message;
  std::string reason;
};

std::optional<Termination> TerminationOf(const json& pod, const std::string& container) {
  const json* cs = ContainerStatus(pod, container);
  if (cs == nullptr) {
    if (PodFinished(pod)) return Termination{PodPhase(pod) == "Succeeded" ? 0 : -1, "", ""};
    return std::nullopt;
  }
  const json& terminated = Field(Field(*cs, "state"), "terminated");
  if (!terminated.is_object()) {
    if (PodFinished(pod)) return Termination{PodPhase(pod) == "Succeeded" ? 0 : -1, "", ""};
    return std::nullopt;
  }
  return Termination{static_cast<int>(Int(terminated, "exitCode", -1)), Str(terminated, "message"),
                     Str(terminated, "reason")};
}

// Why a pod is not running yet, as a job condition reason + message; nullopt if nothing is wrong.
struct WaitingReason {
  std::string reason;
  std::string message;
};

std::optional<WaitingReason> WhyWaiting(const json& pod) {
  const std::string name = Str(Field(pod, "metadata"), "name");
  const json& status = Field(pod, "status");
  const json& conditions = Field(status, "conditions");
  if (conditions.is_array()) {
    for (const json& c : conditions) {
      if (Str(c, "type") == "PodScheduled" && Str(c, "status") == "False") {
        return WaitingReason{
            "Unschedulable",
            fmt::format("pod {}: {}", name,
                        Str(c, "message").empty() ? Str(c, "reason") : Str(c, "message"))};
      }
    }
  }
  const json& statuses = Field(status, "containerStatuses");
  if (statuses.is_array()) {
    for (const json& cs : statuses) {
      const json& waiting = Field(Field(cs, "state"), "waiting");
      const std::string reason = Str(waiting, "reason");
      const std::string message = Str(waiting, "message");
      if (reason == "ImagePullBackOff" || reason == "ErrImagePull" ||
          reason == "InvalidImageName") {
        return WaitingReason{"ImagePullBackOff",
                             fmt::format("pod {}: {}: {}", name, reason, message)};
      }
      if (message.find("MountVolume") != std::string::npos ||
          reason == "CreateContainerConfigError") {
        return WaitingReason{"FailedMount", fmt::format("pod {}: {}", name, message)};
      }
    }
  }
  return std::nullopt;
}

json FindCondition(const json& status, const std::string& type) {
  const json& conditions = Field(status, "conditions");
  if (conditions.is_array()) {
    for (const json& c : conditions) {
      if (Str(c, "type") == type) return c;
    }
  }
  return nullptr;
}

// Kubernetes semantics: lastTransitionTime changes only when the status does.
void SetCondition(json& status, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation, rt::SystemTime now) {
  json& conditions = status["conditions"];
  if (!conditions.is_array()) conditions = json::array();
  const std::string value_text = value ? "True" : "False";
  for (json& c : conditions) {
    if (Str(c, "type") != type) continue;
    if (Str(c, "status") != value_text) c["lastTransitionTime"] = Timestamp(now);
    c["status"] = value_text;
    c["reason"] = reason;
    c["message"] = message;
    c["observedGeneration"] = generation;
    return;
  }
  conditions.push_back({{"type", type},
                        {"status", value_text},
                        {"reason", reason},
                        {"message", message},
                        {"lastTransitionTime", Timestamp(now)},
                        {"observedGeneration", generation}});
}

// Sets a condition only if it exists already (so a job never gets a "False" condition it never
// had, as batch/v1 Job does).
void ClearCondition(json& status, const std::string& type, const std::string& reason,
                    const std::string& message, int64_t generation, rt::SystemTime now) {
  if (FindCondition(status, type).is_null()) return;
  if (Str(FindCondition(status, type), "status") == "False") return;
  SetCondition(status, type, false, reason, message, generation, now);
}

}  // namespace

nlohmann::json TrimMetadataOnly(nlohmann::json object) {
  json out = {{"apiVersion", object.value("apiVersion", "")}, {"kind", object.value("kind", "")}};
  json meta = json::object();
  const json& m = Field(object, "metadata");
  for (const char* key : {"name", "namespace", "uid", "resourceVersion", "deletionTimestamp"}) {
    if (m.contains(key)) meta[key] = m[key];
  }
  // The job label routes events to the job; the Secret's annotations hold the restart counters.
  const json& job = Field(Field(m, "labels"), api::kJobLabel);
  if (!job.is_null()) meta["labels"] = {{api::kJobLabel, job}};
  const json& annotations = Field(m, "annotations");
  for (const char* key : {kCoordinatorCrashesAnnotation, kWorkerReplacementsAnnotation}) {
    if (annotations.contains(key)) meta["annotations"][key] = annotations[key];
  }
  out["metadata"] = std::move(meta);
  return out;
}

nlohmann::json TrimSecretForCache(nlohmann::json secret) {
  json out = TrimMetadataOnly(secret);
  const json& data = Field(secret, "data");
  json kept = json::object();
  for (const char* key : {"token", "ca.crt"}) {
    if (data.contains(key)) kept[key] = data[key];
  }
  out["data"] = std::move(kept);
  return out;
}

struct JobReconciler::JobState {
  rt::SteadyTime last_progress_read{};
  bool progress_ever_read = false;
  std::map<int, rt::SteadyTime> worker_not_before;  // backoff before re-creating worker i
  // The job's Secret (trimmed), read by name once per operator process and kept in step with
  // the reconciler's own writes: the operator may not list or watch Secrets.
  informer::ObjectPtr secret;
  std::string secret_job_uid;  // the job instance it belongs to
};

// Everything one reconcile knows and decides.
struct JobReconciler::Pass {
  std::string key;
  informer::ObjectPtr object;
  std::string ns, name, uid, resource_version;
  int64_t generation = 0;
  json old_status;
  json status;  // the status being built
  rt::JobSpec spec;
  status::ObjectRef ref;
  rt::SystemTime now;
  std::optional<milliseconds> requeue;
  JobState* state = nullptr;
  informer::ObjectPtr secret;
  // Events of status transitions, recorded once the status that holds the transition is written
  // (a write lost to a conflict is redone by the next pass, which finds the same transition).
  struct Transition {
    std::string type, reason, message;
  };
  std::vector<Transition> transitions;

  void Announce(std::string type, std::string reason, std::string message) {
    transitions.push_back({std::move(type), std::move(reason), std::move(message)});
  }

  void RequeueAfter(milliseconds d) {
    if (!requeue || d < *requeue) requeue = d;
  }
};

JobReconciler::JobReconciler(kube::Client& client, Caches caches, status::ProgressReader& progress,
                             status::EventRecorder& events, const rt::Clock& clock,
                             ReconcilerOptions options)
    : client_(client),
      caches_(caches),
      progress_(progress),
      events_(events),
      clock_(clock),
      options_(std::move(options)) {}

JobReconciler::~JobReconciler() = default;

JobReconciler::JobState& JobReconciler::StateOf(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return states_[key];
}

controller::Result JobReconciler::Reconcile(const std::string& key) {
  const auto slash = key.find('/');
  Pass pass;
  pass.key = key;
  pass.ns = slash == std::string::npos ? "" : key.substr(0, slash);
  pass.name = slash == std::string::npos ? key : key.substr(slash + 1);
  pass.object = caches_.jobs->Get(pass.ns, pass.name);
  if (!pass.object) {
    std::lock_guard<std::mutex> lock(mu_);
    states_.erase(key);
    return {};
  }
  const json& meta = Field(*pass.object, "metadata");
  pass.uid = Str(meta, "uid");
  pass.resource_version = Str(meta, "resourceVersion");
  pass.generation = Int(meta, "generation", 0);
  pass.old_status =
      Field(*pass.object, "status").is_object() ? Field(*pass.object, "status") : json::object();
  pass.status = pass.old_status;
  pass.ref = {rt::kApiVersion, rt::kKind, pass.ns, pass.name, pass.uid, pass.resource_version};
  pass.now = clock_.Now();
  pass.state = &StateOf(key);

  if (!Str(meta, "deletionTimestamp").empty()) return Finalize(pass);
  // A finished job carries no finalizer, so it can be deleted with no operator running:
  // Finished() removes it once the job's pods have stopped, and it is never added back.
  if (IsTerminalPhase(Str(pass.old_status, "phase"))) return Finished(pass);

  const json& finalizers = Field(meta, "finalizers");
  bool has_finalizer = false;
  if (finalizers.is_array()) {
    for (const json& f : finalizers) has_finalizer |= (f == kFinalizer);
  }
  if (!has_finalizer) {
    json list = finalizers.is_array() ? finalizers : json::array();
    list.push_back(kFinalizer);
    auto patched = client_.Patch(
        kube::resources::kParallelRunJobs, pass.ns, pass.name, kube::PatchType::kMerge,
        {{"metadata", {{"finalizers", list}, {"resourceVersion", pass.resource_version}}}});
    if (!patched.ok()) return {patched.status(), std::nullopt};
    // The MODIFIED event brings the job back with its new resourceVersion.
    return {};
  }
  return Run(pass);
}

controller::Result JobReconciler::Run(Pass& pass) {
  std::vector<rt::FieldError> errors;
  auto parsed = api::ParseParallelRunJob(*pass.object);
  if (!parsed.ok()) return {parsed.status(), std::nullopt};
  auto spec = api::ParseSpec(*parsed, &errors);
  pass.status["observedGeneration"] = pass.generation;
  if (!spec.ok()) {
    std::string message;
    for (const auto& e : errors) message += (message.empty() ? "" : "; ") + e.ToString();
    if (message.empty()) message = spec.status().message();
    Fail(pass, "InvalidSpec", message);
    return {WriteStatus(pass), pass.requeue};
  }
  pass.spec = *std::move(spec);

  if (pass.spec.suspend) {
    bool all_gone = false;
    auto stopped = StopPods(pass, &all_gone);
    if (!stopped.status.ok()) return stopped;
    if (Str(pass.old_status, "phase") != "Suspended") {
      pass.Announce("Normal", "Suspended", "job suspended: pods deleted, finished work is kept");
    }
    pass.status["phase"] = "Suspended";
    SetCondition(pass.status, "Suspended", true, "Suspended", "job suspended", pass.generation,
                 pass.now);
    ClearCondition(pass.status, "Running", "Suspended", "job suspended", pass.generation, pass.now);
    Status written = WriteStatus(pass);
    if (!written.ok()) return {written, std::nullopt};
    if (!all_gone) return {Status(), milliseconds(1000)};
    return {};
  }
  if (Str(FindCondition(pass.old_status, "Suspended"), "status") == "True") {
    SetCondition(pass.status, "Suspended", false, "Resumed", "job resumed", pass.generation,
                 pass.now);
    pass.Announce("Normal", "Resumed", "job resumed: finished work is not redone");
  }

  if (Str(pass.status, "startTime").empty()) pass.status["startTime"] = Timestamp(pass.now);
  if (pass.spec.active_deadline_seconds) {
    auto start = ParseTime(Str(pass.status, "startTime"));
    if (start) {
      const auto deadline = *start + std::chrono::seconds(*pass.spec.active_deadline_seconds);
      if (pass.now >= deadline) {
        bool all_gone = false;
        auto stopped = StopPods(pass, &all_gone);
        if (!stopped.status.ok()) return stopped;
        const std::string message =
            fmt::format("job was active longer than its activeDeadlineSeconds ({} s)",
                        *pass.spec.active_deadline_seconds);
        Fail(pass, "DeadlineExceeded", message);
        return {WriteStatus(pass), pass.requeue};
      }
      pass.RequeueAfter(std::chrono::duration_cast<milliseconds>(deadline - pass.now) +
                        milliseconds(100));
    }
  }

  Status st = EnsureConfigObjects(pass);
  if (!st.ok()) return {st, std::nullopt};
  st = SyncCoordinator(pass);
  if (!st.ok()) return {st, std::nullopt};
  if (!IsTerminalPhase(Str(pass.status, "phase"))) {
    st = SyncWorkers(pass);
    if (!st.ok()) return {st, std::nullopt};
    ExplainWaiting(pass);
  }
  st = WriteStatus(pass);
  if (!st.ok()) return {st, std::nullopt};
  if (IsTerminalPhase(Str(pass.status, "phase"))) return {Status(), milliseconds(200)};
  return {Status(), pass.requeue};
}

// Writes a child unless the cache already holds it; AlreadyExists means the cache lags.
static Status CreateIfMissing(kube::Client& client, informer::Informer* cache,
                              const kube::Resource& resource, const std::string& ns,
                              const json& desired) {
  const std::string name = Str(Field(desired, "metadata"), "name");
  if (cache->Get(ns, name)) return Status();
  auto created = client.Create(resource, ns, desired);
  if (!created.ok() && !kube::IsAlreadyExists(created.status())) return created.status();
  return Status();
}

void JobReconciler::Fail(Pass& pass, const std::string& reason, const std::string& message) {
  pass.status["phase"] = "Failed";
  pass.status["message"] = reason == "InvalidSpec" ? "invalid spec: " + message : message;
  if (Str(pass.status, "completionTime").empty()) {
    pass.status["completionTime"] = Timestamp(pass.now);
  }
  SetCondition(pass.status, "Failed", true, reason, message, pass.generation, pass.now);
  ClearCondition(pass.status, "Running", reason, message, pass.generation, pass.now);
  pass.Announce("Warning", reason, message);
}

void JobReconciler::RememberSecret(Pass& pass, json secret) {
  pass.state->secret = std::make_shared<const json>(TrimSecretForCache(std::move(secret)));
  pass.state->secret_job_uid = pass.uid;
  pass.secret = pass.state->secret;
}

Status JobReconciler::LoadSecret(Pass& pass) {
  if (pass.state->secret && pass.state->secret_job_uid == pass.uid) {
    pass.secret = pass.state->secret;
    return Status();
  }
  auto got = client_.Get(kube::resources::kSecrets, pass.ns, SecretName(pass.name));
  if (got.ok()) {
    RememberSecret(pass, *std::move(got));
  } else if (!kube::IsNotFound(got.status())) {
    return got.status();
  }
  return Status();
}

Status JobReconciler::EnsureConfigObjects(Pass& pass) {
  const JobMeta job{pass.name, pass.ns, pass.uid};
  PR_RETURN_IF_ERROR(LoadSecret(pass));
  if (!pass.secret) {
    PR_ASSIGN_OR_RETURN(JobCredentials credentials,
                        GenerateJobCredentials(pass.name, pass.ns, pass.now));
    auto created =
        client_.Create(kube::resources::kSecrets, pass.ns, BuildSecret(job, credentials));
    if (created.ok()) {
      RememberSecret(pass, *std::move(created));
    } else if (kube::IsAlreadyExists(created.status())) {
      PR_RETURN_IF_ERROR(LoadSecret(pass));  // made by an earlier pass whose reply was lost
    } else {
      return created.status();
    }
  }
  PR_RETURN_IF_ERROR(CreateIfMissing(client_, caches_.config_maps, kube::resources::kConfigMaps,
                                     pass.ns, BuildSpecConfigMap(job, pass.spec)));
  if (!caches_.services->Get(pass.ns, ServiceName(pass.name))) {
    // The coordinator's NetworkPolicy has no cache (the operator may only create them): it is
    // made just before the Service, so a job with a Service has its policy.
    auto policy = client_.Create(kube::resources::kNetworkPolicies, pass.ns,
                                 BuildNetworkPolicy(job, options_.children));
    if (!policy.ok() && !kube::IsAlreadyExists(policy.status())) return policy.status();
  }
  PR_RETURN_IF_ERROR(CreateIfMissing(client_, caches_.services, kube::resources::kServices, pass.ns,
                                     BuildService(job)));
  return Status();
}

Status JobReconciler::BumpSecretCounter(Pass& pass, const char* annotation, int64_t value) {
  auto patched = client_.Patch(
      kube::resources::kSecrets, pass.ns, SecretName(pass.name), kube::PatchType::kMerge,
      {{"metadata", {{"annotations", {{annotation, std::to_string(value)}}}}}});
  if (!patched.ok()) return patched.status();
  RememberSecret(pass, *std::move(patched));
  return Status();
}

static int64_t SecretCounter(const informer::ObjectPtr& secret, const char* annotation) {
  if (!secret) return 0;
  return Int(Field(Field(*secret, "metadata"), "annotations"), annotation, 0);
}

Status JobReconciler::SyncCoordinator(Pass& pass) {
  const JobMeta job{pass.name, pass.ns, pass.uid};
  const std::string pod_name = CoordinatorPodName(pass.name);
  informer::ObjectPtr pod = caches_.pods->Get(pass.ns, pod_name);
  const std::string phase = Str(pass.old_status, "phase");
  if (!pod) {
    PR_ASSIGN_OR_RETURN(json desired, BuildCoordinatorPod(job, pass.spec, options_.children));
    auto created = client_.Create(kube::resources::kPods, pass.ns, desired);
    if (!created.ok()) {
      if (kube::IsAlreadyExists(created.status())) {
        pass.RequeueAfter(milliseconds(500));  // the old pod is still going away
        return Status();
      }
      if (created.status().code() == rt::StatusCode::kInvalidArgument) {
        // The API server refused the pod made from the spec (SPEC.md §2.1: opaque sub-objects).
        Fail(pass, "InvalidSpec", created.status().message());
        return Status();
      }
      return created.status();
    }
    if (phase.empty() || phase == "Pending") {
      events_.Record(pass.ref, "Normal", "PodsCreated",
                     fmt::format("created coordinator pod {}", pod_name));
    }
    if (phase.empty() || phase == "Suspended") pass.status["phase"] = "Pending";
    pass.RequeueAfter(options_.progress_interval);
    return Status();
  }
  if (PodTerminating(*pod)) {
    pass.RequeueAfter(milliseconds(500));
    return Status();
  }

  if (auto end = TerminationOf(*pod, kCoordinatorRole)) {
    const bool final_code = rt::IsFinalCoordinatorExit(end->exit_code);
    json summary = json::parse(end->message, nullptr, /*allow_exceptions=*/false);
    if (final_code && summary.is_object()) {
      EndFromSummary(pass, summary, end->exit_code == rt::kCoordinatorExitSucceeded);
      return Status();
    }
    if (end->exit_code == rt::kCoordinatorExitInterrupted) {
      // Interrupted (evicted, node drained): resumable without counting as a crash.
      auto deleted = client_.Delete(
          kube::resources::kPods, pass.ns, pod_name,
          {.grace_period_seconds = 0, .precondition_uid = Str(Field(*pod, "metadata"), "uid")});
      if (!deleted.ok() && !kube::IsNotFound(deleted)) return deleted;
      pass.RequeueAfter(milliseconds(500));
      return Status();
    }
    const int64_t crashes = SecretCounter(pass.secret, kCoordinatorCrashesAnnotation) + 1;
    const std::string what =
        fmt::format("coordinator pod {} ended with exit code {}{}", pod_name, end->exit_code,
                    end->reason.empty() ? "" : " (" + end->reason + ")");
    if (crashes > pass.spec.backoff_limit) {
      const std::string message =
          fmt::format("{}; backoffLimit {} reached", what, pass.spec.backoff_limit);
      Fail(pass, "BackoffLimitExceeded", message);
      return Status();
    }
    PR_RETURN_IF_ERROR(BumpSecretCounter(pass, kCoordinatorCrashesAnnotation, crashes));
    events_.Record(pass.ref, "Warning", "CoordinatorRestarted",
                   fmt::format("{}; starting a new one (restart {} of {}), it resumes from its "
                               "journal",
                               what, crashes, pass.spec.backoff_limit));
    Status deleted = client_.Delete(
        kube::resources::kPods, pass.ns, pod_name,
        {.grace_period_seconds = 0, .precondition_uid = Str(Field(*pod, "metadata"), "uid")});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return deleted;
    pass.RequeueAfter(milliseconds(500));
    return Status();
  }

  if (PodPhase(*pod) == "Running") {
    if (Str(pass.status, "phase") != "Running") {
      pass.status["phase"] = "Running";
      pass.Announce("Normal", "Started", fmt::format("coordinator {} is running", pod_name));
    }
    SetCondition(pass.status, "Running", true, "Running", "the coordinator is running",
                 pass.generation, pass.now);
    if (Str(pass.status, "progress").empty()) pass.status["progress"] = "planning";
    ReadProgress(pass);
  } else if (Str(pass.status, "phase").empty()) {
    pass.status["phase"] = "Pending";
  }
  return Status();
}

void JobReconciler::EndFromSummary(Pass& pass, const json& summary, bool ok) {
  rt::protocol::Progress p;
  try {
    p = summary.get<rt::protocol::Progress>();
  } catch (const std::exception&) {
  }
  ApplyProgress(summary, pass.spec, /*ended=*/true, pass.status);
  PutRecentErrors(summary, pass.status);
  pass.status["phase"] = ok ? "Succeeded" : "Failed";
  if (Str(pass.status, "completionTime").empty()) {
    SetTime(pass.status, "completionTime", p.completionTime);
    if (Str(pass.status, "completionTime").empty()) {
      pass.status["completionTime"] = Timestamp(pass.now);
    }
  }
  const std::string reason = ok ? "Completed" : (p.reason.empty() ? "Failed" : p.reason);
  std::string message =
      p.message.empty()
          ? fmt::format("{} ({})", ok ? "job succeeded" : "job failed", Str(summary, "progress"))
          : p.message;
  if (reason == "OutputInUse") message = DescribeOutputInUse(pass, message);
  pass.status["message"] = message;
  SetCondition(pass.status, ok ? "Complete" : "Failed", true, reason, message, pass.generation,
               pass.now);
  ClearCondition(pass.status, "Running", reason, message, pass.generation, pass.now);
  if (ok) {
    pass.Announce("Normal", "Succeeded", message);
    return;
  }
  const bool threshold = reason == "ErrorThresholdExceeded" ||
                         reason == "AllowedFailedPercentExceeded" || reason == "NoSucceededItems";
  pass.Announce("Warning", threshold ? "ThresholdExceeded" : "Failed", reason + ": " + message);
}

std::string JobReconciler::DescribeOutputInUse(Pass& pass, const std::string& message) {
  const std::string uid = OwnerUidOf(message);
  if (uid.empty()) return message;  // another run holds the lock: its message names it
  std::string owner;
  for (const auto& job : caches_.jobs->List()) {
    const json& meta = Field(*job, "metadata");
    if (Str(meta, "uid") == uid) owner = Str(meta, "namespace") + "/" + Str(meta, "name");
  }
  return OutputInUseMessage(pass.spec, owner, uid);
}

void JobReconciler::ReadProgress(Pass& pass) {
  JobState& state = *pass.state;
  const auto steady = clock_.SteadyNow();
  if (state.progress_ever_read && steady - state.last_progress_read < options_.progress_interval) {
    pass.RequeueAfter(std::chrono::duration_cast<milliseconds>(
        options_.progress_interval - (steady - state.last_progress_read)));
    return;
  }
  pass.RequeueAfter(options_.progress_interval);
  informer::ObjectPtr pod = caches_.pods->Get(pass.ns, CoordinatorPodName(pass.name));
  if (!pod || !pass.secret) return;
  status::ProgressTarget target;
  target.host = Str(Field(*pod, "status"), "podIP");
  target.port = options_.coordinator_port;
  target.server_name = CoordinatorServerName({pass.name, pass.ns, pass.uid});
  const json& data = Field(*pass.secret, "data");
  target.ca_pem = Base64Decode(Str(data, "ca.crt"));
  target.token = Base64Decode(Str(data, "token"));
  if (target.host.empty()) return;
  state.last_progress_read = steady;
  state.progress_ever_read = true;
  auto progress = progress_.Read(target);
  if (!progress.ok()) {
    spdlog::debug("{}: progress not read yet: {}", pass.key, progress.status().ToString());
    return;
  }
  const json p = *progress;
  ApplyProgress(p, pass.spec, /*ended=*/false, pass.status);
  PutRecentErrors(p, pass.status);
}

Status JobReconciler::SyncWorkers(Pass& pass) {
  const JobMeta job{pass.name, pass.ns, pass.uid};
  const auto steady = clock_.SteadyNow();
  int created = 0;
  int64_t replacements = SecretCounter(pass.secret, kWorkerReplacementsAnnotation);
  const int64_t cap = static_cast<int64_t>(pass.spec.backoff_limit) * pass.spec.node_count;
  for (int i = 0; i < pass.spec.node_count; ++i) {
    const std::string pod_name = WorkerPodName(pass.name, i);
    informer::ObjectPtr pod = caches_.pods->Get(pass.ns, pod_name);
    if (!pod) {
      auto it = pass.state->worker_not_before.find(i);
      if (it != pass.state->worker_not_before.end() && steady < it->second) {
        pass.RequeueAfter(std::chrono::duration_cast<milliseconds>(it->second - steady) +
                          milliseconds(10));
        continue;
      }
      PR_ASSIGN_OR_RETURN(json desired, BuildWorkerPod(job, pass.spec, i, options_.children));
      auto made = client_.Create(kube::resources::kPods, pass.ns, desired);
      if (!made.ok()) {
        if (kube::IsAlreadyExists(made.status())) {
          pass.RequeueAfter(milliseconds(500));
          continue;
        }
        return made.status();
      }
      ++created;
      continue;
    }
    if (PodTerminating(*pod)) {
      pass.RequeueAfter(milliseconds(500));
      continue;
    }
    auto end = TerminationOf(*pod, kWorkerRole);
    if (!end || end->exit_code == 0) continue;  // running, or finished its share of the job
    if (replacements >= cap) continue;          // leave it failed: the cap is reached
    ++replacements;
    PR_RETURN_IF_ERROR(BumpSecretCounter(pass, kWorkerReplacementsAnnotation, replacements));
    const int64_t shift = std::min<int64_t>(replacements - 1, 20);
    const auto backoff = std::min<milliseconds>(
        options_.worker_backoff_base * (int64_t{1} << shift), options_.worker_backoff_cap);
    pass.state->worker_not_before[i] = steady + backoff;
    events_.Record(
        pass.ref, "Warning", "WorkerPodReplaced",
        fmt::format("worker pod {} ended with exit code {}; replacing it in {} s "
                    "(replacement {} of {})",
                    pod_name, end->exit_code, backoff.count() / 1000.0, replacements, cap));
    Status deleted = client_.Delete(
        kube::resources::kPods, pass.ns, pod_name,
        {.grace_period_seconds = 0, .precondition_uid = Str(Field(*pod, "metadata"), "uid")});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return deleted;
    pass.RequeueAfter(backoff);
  }
  if (created > 0 && Str(pass.old_status, "phase").empty()) {
    events_.Record(pass.ref, "Normal", "PodsCreated",
                   fmt::format("created {} worker pod(s)", created));
  }
  return Status();
}

void JobReconciler::ExplainWaiting(Pass& pass) {
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.ns, {{kJobLabel, pass.name}});
  std::optional<WaitingReason> waiting;
  bool all_scheduled = !pods.empty();
  for (const auto& pod : pods) {
    if (PodTerminating(*pod) || PodFinished(*pod)) continue;
    if (auto why = WhyWaiting(*pod)) {
      waiting = why;
      break;
    }
    if (Str(Field(*pod, "spec"), "nodeName").empty()) all_scheduled = false;
  }
  if (waiting) {
    SetCondition(pass.status, "Scheduled", false, waiting->reason, waiting->message,
                 pass.generation, pass.now);
    pass.RequeueAfter(milliseconds(2000));
  } else if (all_scheduled) {
    SetCondition(pass.status, "Scheduled", true, "Scheduled", "all pods are scheduled",
                 pass.generation, pass.now);
  }
}

controller::Result JobReconciler::StopPods(Pass& pass, bool* all_gone) {
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.ns, {{kJobLabel, pass.name}});
  *all_gone = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod) && !PodTerminating(*pod)) {
      // Keep finished pods (their logs), but a suspended job must not keep a finished
      // coordinator that a resume would mistake for the end.
      if (!pass.spec.suspend) continue;
    }
    *all_gone = false;
    if (PodTerminating(*pod)) continue;
    const std::string name = Str(Field(*pod, "metadata"), "name");
    // The default grace period lets the coordinator make its last journal write (SIGTERM).
    Status deleted = client_.Delete(kube::resources::kPods, pass.ns, name,
                                    {.precondition_uid = Str(Field(*pod, "metadata"), "uid")});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  return {};
}

controller::Result JobReconciler::Finished(Pass& pass) {
  // Workers still running after the end (they would only retry a gone coordinator): stop them,
  // and keep the finalizer until they have (a recreated job must not meet them).
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.ns, {{kJobLabel, pass.name}});
  bool all_stopped = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod)) continue;
    all_stopped = false;
    if (PodTerminating(*pod)) continue;
    if (WorkerMayStillExit(*pod, pass.old_status, pass.now)) continue;
    const std::string name = Str(Field(*pod, "metadata"), "name");
    Status deleted = client_.Delete(kube::resources::kPods, pass.ns, name, {});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  if (!all_stopped) return {Status(), milliseconds(500)};
  if (Status removed = RemoveFinalizer(pass); !removed.ok()) return {removed, std::nullopt};
  const json& ttl = Field(Field(*pass.object, "spec"), "ttlSecondsAfterFinished");
  if (!ttl.is_number_integer()) return {};
  auto done = ParseTime(Str(pass.old_status, "completionTime"));
  if (!done) return {};
  const auto expiry = *done + std::chrono::seconds(ttl.get<int64_t>());
  if (pass.now < expiry) {
    return {Status(),
            std::chrono::duration_cast<milliseconds>(expiry - pass.now) + milliseconds(100)};
  }
  Status deleted =
      client_.Delete(kube::resources::kParallelRunJobs, pass.ns, pass.name,
                     {.propagation_policy = "Background", .precondition_uid = pass.uid});
  if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  return {};
}

Status JobReconciler::RemoveFinalizer(Pass& pass) {
  const json& finalizers = Field(Field(*pass.object, "metadata"), "finalizers");
  if (!finalizers.is_array()) return Status();
  json kept = json::array();
  bool ours = false;
  for (const json& f : finalizers) {
    if (f == kFinalizer) {
      ours = true;
    } else {
      kept.push_back(f);
    }
  }
  if (!ours) return Status();
  // The resourceVersion precondition keeps a finalizer someone else added meanwhile.
  auto patched = client_.Patch(
      kube::resources::kParallelRunJobs, pass.ns, pass.name, kube::PatchType::kMerge,
      {{"metadata", {{"finalizers", kept}, {"resourceVersion", pass.resource_version}}}});
  if (!patched.ok() && !kube::IsNotFound(patched.status())) return patched.status();
  return Status();
}

controller::Result JobReconciler::Finalize(Pass& pass) {
  bool all_gone = false;
  pass.spec.suspend = false;
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.ns, {{kJobLabel, pass.name}});
  all_gone = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod)) continue;
    all_gone = false;
    if (PodTerminating(*pod)) continue;
    Status deleted =
        client_.Delete(kube::resources::kPods, pass.ns, Str(Field(*pod, "metadata"), "name"), {});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  if (!all_gone) return {Status(), milliseconds(500)};  // the coordinator is still writing
  if (Status removed = RemoveFinalizer(pass); !removed.ok()) return {removed, std::nullopt};
  std::lock_guard<std::mutex> lock(mu_);
  states_.erase(pass.key);
  return {};
}

Status JobReconciler::WriteStatus(Pass& pass) {
  SetReason(pass.status);
  if (pass.status == pass.old_status) {
    RecordTransitions(pass);
    return Status();
  }
  json object = *pass.object;
  object["status"] = pass.status;
  auto updated = client_.Update(kube::resources::kParallelRunJobs, pass.ns, object, "status");
  if (!updated.ok()) {
    pass.transitions.clear();  // the next pass finds the same transitions again
    if (kube::IsNotFound(updated.status())) return Status();
    if (kube::IsConflict(updated.status())) {
      // The cache was behind: the watch brings the newer job and queues it; not an error.
      pass.RequeueAfter(milliseconds(200));
      return Status();
    }
    return updated.status();
  }
  RecordTransitions(pass);
  const int64_t before =
      Field(Field(pass.old_status, "miniBatches"), "completed").is_number_integer()
          ? pass.old_status["miniBatches"]["completed"].get<int64_t>()
          : 0;
  const int64_t after = Int(Field(pass.status, "miniBatches"), "completed", before);
  if (after > before && options_.on_mini_batches_completed) {
    options_.on_mini_batches_completed(after - before);
  }
  return Status();
}

void JobReconciler::RecordTransitions(Pass& pass) {
  for (const auto& t : pass.transitions) events_.Record(pass.ref, t.type, t.reason, t.message);
  pass.transitions.clear();
}

}  // namespace parallelrun::op::reconciler
