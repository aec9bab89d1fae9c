// The reconciler's steps towards the running job: the config objects (Secret, ConfigMap,
// NetworkPolicy, Service), the coordinator pod and its end, the coordinator's progress, the worker
// pods and why pods wait. reconciler.cc holds the pass itself and the ends of a job.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "fmt/format.h"
#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/certs.h"
#include "operator/reconciler/children.h"
#include "operator/reconciler/job_status.h"
#include "operator/reconciler/observed.h"
#include "operator/reconciler/reconciler.h"
#include "operator/reconciler/reconciler_pass.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;
using rt::Status;
using std::chrono::milliseconds;

namespace {

// Writes a child unless the cache already holds it; AlreadyExists means the cache lags.
Status CreateIfMissing(kube::Client& client, informer::Informer* cache,
                       const kube::Resource& resource, const std::string& ns, const json& desired) {
  const std::string name = ObjectName(desired);
  if (cache->Get(ns, name)) return Status();
  auto created = client.Create(resource, ns, desired);
  if (!created.ok() && !kube::IsAlreadyExists(created.status())) return created.status();
  return Status();
}

// Deletes a failed pod at once (no grace: nothing runs in it), only the instance that was seen.
Status DeleteEndedPod(kube::Client& client, const std::string& ns, const json& pod) {
  Status deleted = client.Delete(kube::resources::kPods, ns, ObjectName(pod),
                                 {.grace_period_seconds = 0, .precondition_uid = ObjectUid(pod)});
  if (!deleted.ok() && !kube::IsNotFound(deleted)) return deleted;
  return Status();
}

// A restart count: status.restarts, or the annotation an older operator kept on the job's Secret
// when that is higher (read as a floor; the status takes over from the next count on).
int64_t RestartCount(const api::JobStatus& status, const informer::ObjectPtr& secret,
                     int64_t api::RestartCounts::*field, const char* annotation) {
  const int64_t counted = status.restarts ? (*status.restarts).*field : 0;
  const int64_t legacy = secret ? SecretCounter(*secret, annotation) : 0;
  return std::max(counted, legacy);
}

int64_t CoordinatorRestarts(const api::JobStatus& status, const informer::ObjectPtr& secret) {
  return RestartCount(status, secret, &api::RestartCounts::coordinator,
                      kCoordinatorCrashesAnnotation);
}

int64_t WorkerRestarts(const api::JobStatus& status, const informer::ObjectPtr& secret) {
  return RestartCount(status, secret, &api::RestartCounts::workers, kWorkerReplacementsAnnotation);
}

}  // namespace

void JobReconciler::RememberSecret(Pass& pass, json secret) {
  pass.state->secret = std::make_shared<const json>(TrimSecretForCache(std::move(secret)));
  pass.state->secret_job_uid = pass.job.uid;
  pass.secret = pass.state->secret;
}

Status JobReconciler::LoadSecret(Pass& pass) {
  if (pass.state->secret && pass.state->secret_job_uid == pass.job.uid) {
    pass.secret = pass.state->secret;
    return Status();
  }
  auto got = client_.Get(kube::resources::kSecrets, pass.job.ns, SecretName(pass.job.name));
  if (got.ok()) {
    RememberSecret(pass, *std::move(got));
  } else if (!kube::IsNotFound(got.status())) {
    return got.status();
  }
  return Status();
}

Status JobReconciler::EnsureConfigObjects(Pass& pass) {
  const std::string& ns = pass.job.ns;
  const JobMeta job{pass.job.name, ns, pass.job.uid};
  PR_RETURN_IF_ERROR(LoadSecret(pass));
  if (!pass.secret) {
    PR_ASSIGN_OR_RETURN(JobCredentials credentials,
                        GenerateJobCredentials(pass.job.name, ns, pass.now));
    auto created = client_.Create(kube::resources::kSecrets, ns, BuildSecret(job, credentials));
    if (created.ok()) {
      RememberSecret(pass, *std::move(created));
    } else if (kube::IsAlreadyExists(created.status())) {
      PR_RETURN_IF_ERROR(LoadSecret(pass));  // made by an earlier pass whose reply was lost
    } else {
      return created.status();
    }
  }
  PR_RETURN_IF_ERROR(CreateIfMissing(client_, caches_.config_maps, kube::resources::kConfigMaps, ns,
                                     BuildSpecConfigMap(job, pass.spec)));
  if (!caches_.services->Get(ns, ServiceName(pass.job.name))) {
    // The coordinator's NetworkPolicy has no cache (the operator may only create them): it is
    // made just before the Service, so a job with a Service has its policy.
    auto policy = client_.Create(kube::resources::kNetworkPolicies, ns,
                                 BuildNetworkPolicy(job, options_.children));
    if (!policy.ok() && !kube::IsAlreadyExists(policy.status())) return policy.status();
  }
  PR_RETURN_IF_ERROR(CreateIfMissing(client_, caches_.services, kube::resources::kServices, ns,
                                     BuildService(job)));
  return Status();
}

rt::StatusOr<bool> JobReconciler::CommitRestart(Pass& pass, api::RestartCounts counts) {
  std::optional<api::RestartCounts> before = pass.status.restarts;
  pass.status.restarts = counts;
  bool written = false;
  Status st = WriteStatus(pass, &written);
  if (st.ok() && written) return true;
  pass.status.restarts = std::move(before);  // not counted: the rest of the pass must not say so
  if (!st.ok()) return st;
  pass.RequeueAfter(milliseconds(200));
  return false;
}

// ----- the coordinator ----------------------------------------------------------------------

Status JobReconciler::SyncCoordinator(Pass& pass) {
  const std::string pod_name = CoordinatorPodName(pass.job.name);
  informer::ObjectPtr pod = caches_.pods->Get(pass.job.ns, pod_name);
  if (!pod) return CreateCoordinator(pass);
  if (PodTerminating(*pod)) {
    pass.RequeueAfter(milliseconds(500));
    return Status();
  }
  if (auto end = TerminationOf(*pod, kCoordinatorRole)) return CoordinatorEnded(pass, *pod, *end);
  if (PodPhase(*pod) == "Running") {
    if (pass.status.phase != api::kPhaseRunning) {
      pass.status.phase = api::kPhaseRunning;
      pass.Announce("Normal", "Started", fmt::format("coordinator {} is running", pod_name));
    }
    pass.SetCondition(api::kConditionRunning, true, api::kReasonRunning,
                      "the coordinator is running");
    if (pass.status.progress.empty()) pass.status.progress = "planning";
    ReadProgress(pass);
  } else if (pass.status.phase.empty()) {
    pass.status.phase = api::kPhasePending;
  }
  return Status();
}

Status JobReconciler::CreateCoordinator(Pass& pass) {
  const JobMeta job{pass.job.name, pass.job.ns, pass.job.uid};
  const std::string& phase = pass.job.status.phase;
  PR_ASSIGN_OR_RETURN(json desired, BuildCoordinatorPod(job, pass.spec, options_.children));
  auto created = client_.Create(kube::resources::kPods, pass.job.ns, desired);
  if (!created.ok()) {
    if (kube::IsAlreadyExists(created.status())) {
      pass.RequeueAfter(milliseconds(500));  // the old pod is still going away
      return Status();
    }
    if (created.status().code() == rt::StatusCode::kInvalidArgument) {
      // The API server refused the pod made from the spec (SPEC.md §2.1: opaque sub-objects).
      Fail(pass, api::kReasonInvalidSpec, created.status().message());
      return Status();
    }
    return created.status();
  }
  if (phase.empty() || phase == api::kPhasePending) {
    events_.Record(pass.ref, "Normal", "PodsCreated",
                   fmt::format("created coordinator pod {}", CoordinatorPodName(pass.job.name)));
  }
  if (phase.empty() || phase == api::kPhaseSuspended) pass.status.phase = api::kPhasePending;
  pass.RequeueAfter(options_.progress_interval);
  return Status();
}

Status JobReconciler::CoordinatorEnded(Pass& pass, const json& pod, const Termination& end) {
  if (rt::IsFinalCoordinatorExit(end.exit_code)) {
    if (auto summary = ParseSummary(end.message)) {
      EndFromSummary(pass, *summary, end.exit_code == rt::kCoordinatorExitSucceeded);
      return Status();
    }
  }
  if (end.exit_code == rt::kCoordinatorExitInterrupted) {
    // Interrupted (evicted, node drained): resumable without counting as a crash.
    PR_RETURN_IF_ERROR(DeleteEndedPod(client_, pass.job.ns, pod));
    pass.RequeueAfter(milliseconds(500));
    return Status();
  }
  const int64_t crashes = CoordinatorRestarts(pass.status, pass.secret) + 1;
  const std::string what =
      fmt::format("coordinator pod {} ended with exit code {}{}", ObjectName(pod), end.exit_code,
                  end.reason.empty() ? "" : " (" + end.reason + ")");
  if (crashes > pass.spec.backoff_limit) {
    Fail(pass, api::kReasonBackoffLimitExceeded,
         fmt::format("{}; backoffLimit {} reached", what, pass.spec.backoff_limit));
    return Status();
  }
  PR_ASSIGN_OR_RETURN(const bool counted,
                      CommitRestart(pass, {crashes, WorkerRestarts(pass.status, pass.secret)}));
  if (!counted) return Status();  // the pod stays: the next pass counts it from the newer job
  events_.Record(pass.ref, "Warning", "CoordinatorRestarted",
                 fmt::format("{}; starting a new one (restart {} of {}), it resumes from its "
                             "journal",
                             what, crashes, pass.spec.backoff_limit));
  PR_RETURN_IF_ERROR(DeleteEndedPod(client_, pass.job.ns, pod));
  pass.RequeueAfter(milliseconds(500));
  return Status();
}

void JobReconciler::EndFromSummary(Pass& pass, const CoordinatorReport& summary, bool ok) {
  const rt::protocol::Progress& p = summary.progress;
  ApplyProgress(summary, pass.spec, /*ended=*/true, pass.status);
  pass.status.phase = ok ? api::kPhaseSucceeded : api::kPhaseFailed;
  if (pass.status.completion_time.empty()) {
    pass.status.completion_time = SecondsPrecision(p.completionTime);
    if (pass.status.completion_time.empty()) {
      pass.status.completion_time = rt::FormatRfc3339(pass.now);
    }
  }
  const std::string reason =
      ok ? rt::reason::kCompleted : (p.reason.empty() ? api::kReasonFailed : p.reason);
  std::string message =
      p.message.empty() ? fmt::format("{} ({})", ok ? "job succeeded" : "job failed", p.progress)
                        : p.message;
  if (reason == rt::reason::kOutputInUse) message = DescribeOutputInUse(pass, message);
  pass.status.message = message;
  pass.SetCondition(ok ? api::kConditionComplete : api::kConditionFailed, true, reason, message);
  pass.ClearCondition(api::kConditionRunning, reason, message);
  if (ok) {
    pass.Announce("Normal", "Succeeded", message);
    return;
  }
  pass.Announce("Warning", rt::reason::IsThreshold(reason) ? "ThresholdExceeded" : "Failed",
                reason + ": " + message);
}

std::string JobReconciler::DescribeOutputInUse(Pass& pass, const std::string& message) {
  const std::string uid = OwnerUidOf(message);
  if (uid.empty()) return message;  // another run holds the lock: its message names it
  std::string owner;
  for (const auto& object : caches_.jobs->List()) {
    auto job = api::ParseParallelRunJob(*object);
    if (job.ok() && job->uid == uid) owner = job->ns + "/" + job->name;
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
  informer::ObjectPtr pod = caches_.pods->Get(pass.job.ns, CoordinatorPodName(pass.job.name));
  if (!pod || !pass.secret) return;
  status::ProgressTarget target;
  target.host = PodIp(*pod);
  target.port = options_.coordinator_port;
  target.server_name = CoordinatorServerName({pass.job.name, pass.job.ns, pass.job.uid});
  target.ca_pem = SecretData(*pass.secret, "ca.crt");
  target.token = SecretData(*pass.secret, "token");
  if (target.host.empty()) return;
  state.last_progress_read = steady;
  state.progress_ever_read = true;
  auto progress = progress_.Read(target);
  if (!progress.ok()) {
    spdlog::debug("{}: progress not read yet: {}", pass.key, progress.status().ToString());
    return;
  }
  ApplyProgress(CoordinatorReport{*std::move(progress)}, pass.spec, /*ended=*/false, pass.status);
}

// ----- the workers --------------------------------------------------------------------------

Status JobReconciler::SyncWorkers(Pass& pass) {
  const JobMeta job{pass.job.name, pass.job.ns, pass.job.uid};
  const auto steady = clock_.SteadyNow();
  int created = 0;
  int64_t replacements = WorkerRestarts(pass.status, pass.secret);
  const int64_t cap = static_cast<int64_t>(pass.spec.backoff_limit) * pass.spec.node_count;
  for (int i = 0; i < pass.spec.node_count; ++i) {
    const std::string pod_name = WorkerPodName(pass.job.name, i);
    informer::ObjectPtr pod = caches_.pods->Get(pass.job.ns, pod_name);
    if (!pod) {
      auto it = pass.state->worker_not_before.find(i);
      if (it != pass.state->worker_not_before.end() && steady < it->second) {
        pass.RequeueAfter(std::chrono::duration_cast<milliseconds>(it->second - steady) +
                          milliseconds(10));
        continue;
      }
      PR_ASSIGN_OR_RETURN(json desired, BuildWorkerPod(job, pass.spec, i, options_.children));
      auto made = client_.Create(kube::resources::kPods, pass.job.ns, desired);
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
    PR_ASSIGN_OR_RETURN(
        const bool counted,
        CommitRestart(pass, {CoordinatorRestarts(pass.status, pass.secret), replacements}));
    if (!counted) break;  // the pod stays: the next pass counts it from the newer job
    const int64_t shift = std::min<int64_t>(replacements - 1, 20);
    const auto backoff = std::min<milliseconds>(
        options_.worker_backoff_base * (int64_t{1} << shift), options_.worker_backoff_cap);
    pass.state->worker_not_before[i] = steady + backoff;
    events_.Record(
        pass.ref, "Warning", "WorkerPodReplaced",
        fmt::format("worker pod {} ended with exit code {}; replacing it in {} s "
                    "(replacement {} of {})",
                    pod_name, end->exit_code, backoff.count() / 1000.0, replacements, cap));
    PR_RETURN_IF_ERROR(DeleteEndedPod(client_, pass.job.ns, *pod));
    pass.RequeueAfter(backoff);
  }
  if (created > 0 && pass.job.status.phase.empty()) {
    events_.Record(pass.ref, "Normal", "PodsCreated",
                   fmt::format("created {} worker pod(s)", created));
  }
  return Status();
}

void JobReconciler::ExplainWaiting(Pass& pass) {
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.job.ns, {{kJobLabel, pass.job.name}});
  std::optional<WaitingReason> waiting;
  bool all_scheduled = !pods.empty();
  for (const auto& pod : pods) {
    if (PodTerminating(*pod) || PodFinished(*pod)) continue;
    if (auto why = WhyWaiting(*pod)) {
      waiting = why;
      break;
    }
    if (!PodOnNode(*pod)) all_scheduled = false;
  }
  if (waiting) {
    pass.SetCondition(api::kConditionScheduled, false, waiting->reason, waiting->message);
    pass.RequeueAfter(milliseconds(2000));
  } else if (all_scheduled) {
    pass.SetCondition(api::kConditionScheduled, true, api::kReasonScheduled,
                      "all pods are scheduled");
  }
}

}  // namespace parallelrun::op::reconciler
