#include "operator/reconciler/reconciler.h"

#include <spdlog/spdlog.h>

#include "fmt/format.h"
#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/children.h"
#include "operator/reconciler/job_status.h"
#include "operator/reconciler/observed.h"
#include "operator/reconciler/reconciler_pass.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;
using rt::Status;
using std::chrono::milliseconds;

namespace {

// How long worker pods still running when the job ended may take to hear the end and exit on
// their own (their pods, and so `kubectl logs`, are kept like a Job's) before they are deleted.
constexpr std::chrono::seconds kWorkerExitGrace{90};

bool WorkerMayStillExit(const json& pod, const api::JobStatus& status, rt::SystemTime now) {
  if (PodRole(pod) != kWorkerRole) return false;
  auto done = rt::ParseRfc3339(status.completion_time);
  return done.ok() && now < *done + kWorkerExitGrace;
}

}  // namespace

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
  const std::string ns = slash == std::string::npos ? "" : key.substr(0, slash);
  const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
  informer::ObjectPtr object = caches_.jobs->Get(ns, name);
  if (!object) {
    std::lock_guard<std::mutex> lock(mu_);
    states_.erase(key);
    return {};
  }
  auto job = api::ParseParallelRunJob(*object);
  if (!job.ok()) return {job.status(), std::nullopt};
  Pass pass;
  pass.key = key;
  pass.job = *std::move(job);
  pass.status = pass.job.status;
  pass.ref = {api::kApiVersion, api::kKind,   pass.job.ns,
              pass.job.name,    pass.job.uid, pass.job.resource_version};
  pass.now = clock_.Now();
  pass.state = &StateOf(key);

  if (pass.job.being_deleted()) return Finalize(pass);
  // A finished job carries no finalizer, so it can be deleted with no operator running:
  // Finished() removes it once the job's pods have stopped, and it is never added back.
  if (api::IsTerminalPhase(pass.job.status.phase)) return Finished(pass);
  if (!pass.job.has_finalizer(api::kFinalizer)) return AddFinalizer(pass);
  return Run(pass);
}

controller::Result JobReconciler::AddFinalizer(Pass& pass) {
  json list = pass.job.finalizers();
  list.push_back(api::kFinalizer);
  auto patched = client_.Patch(
      kube::resources::kParallelRunJobs, pass.job.ns, pass.job.name, kube::PatchType::kMerge,
      {{"metadata", {{"finalizers", list}, {"resourceVersion", pass.job.resource_version}}}});
  if (!patched.ok()) return {patched.status(), std::nullopt};
  // The MODIFIED event brings the job back with its new resourceVersion.
  return {};
}

controller::Result JobReconciler::Run(Pass& pass) {
  std::vector<rt::FieldError> errors;
  auto spec = api::ParseSpec(pass.job, &errors);
  pass.status.observed_generation = pass.job.generation;
  if (!spec.ok()) {
    std::string message;
    for (const auto& e : errors) message += (message.empty() ? "" : "; ") + e.ToString();
    if (message.empty()) message = spec.status().message();
    Fail(pass, api::kReasonInvalidSpec, message);
    return {WriteStatus(pass), pass.requeue};
  }
  pass.spec = *std::move(spec);

  if (pass.spec.suspend) return Suspend(pass);
  const api::Condition* suspended = api::FindCondition(pass.job.status, api::kConditionSuspended);
  if (suspended != nullptr && suspended->status == api::kConditionTrue) {
    pass.SetCondition(api::kConditionSuspended, false, api::kReasonResumed, "job resumed");
    pass.Announce("Normal", "Resumed", "job resumed: finished work is not redone");
  }

  if (pass.status.start_time.empty()) pass.status.start_time = rt::FormatRfc3339(pass.now);
  if (auto ended = EnforceDeadline(pass)) return *ended;

  Status st = EnsureConfigObjects(pass);
  if (!st.ok()) return {st, std::nullopt};
  st = SyncCoordinator(pass);
  if (!st.ok()) return {st, std::nullopt};
  if (!api::IsTerminalPhase(pass.status.phase)) {
    st = SyncWorkers(pass);
    if (!st.ok()) return {st, std::nullopt};
    ExplainWaiting(pass);
  }
  st = WriteStatus(pass);
  if (!st.ok()) return {st, std::nullopt};
  if (api::IsTerminalPhase(pass.status.phase)) return {Status(), milliseconds(200)};
  return {Status(), pass.requeue};
}

controller::Result JobReconciler::Suspend(Pass& pass) {
  bool all_gone = false;
  auto stopped = StopPods(pass, &all_gone);
  if (!stopped.status.ok()) return stopped;
  if (pass.job.status.phase != api::kPhaseSuspended) {
    pass.Announce("Normal", "Suspended", "job suspended: pods deleted, finished work is kept");
  }
  pass.status.phase = api::kPhaseSuspended;
  pass.SetCondition(api::kConditionSuspended, true, api::kReasonSuspended, "job suspended");
  pass.ClearCondition(api::kConditionRunning, api::kReasonSuspended, "job suspended");
  Status written = WriteStatus(pass);
  if (!written.ok()) return {written, std::nullopt};
  if (!all_gone) return {Status(), milliseconds(1000)};
  return {};
}

std::optional<controller::Result> JobReconciler::EnforceDeadline(Pass& pass) {
  if (!pass.spec.active_deadline_seconds) return std::nullopt;
  auto start = rt::ParseRfc3339(pass.status.start_time);
  if (!start.ok()) return std::nullopt;
  const auto deadline = *start + std::chrono::seconds(*pass.spec.active_deadline_seconds);
  if (pass.now < deadline) {
    pass.RequeueAfter(std::chrono::duration_cast<milliseconds>(deadline - pass.now) +
                      milliseconds(100));
    return std::nullopt;
  }
  bool all_gone = false;
  auto stopped = StopPods(pass, &all_gone);
  if (!stopped.status.ok()) return stopped;
  Fail(pass, api::kReasonDeadlineExceeded,
       fmt::format("job was active longer than its activeDeadlineSeconds ({} s)",
                   *pass.spec.active_deadline_seconds));
  return controller::Result{WriteStatus(pass), pass.requeue};
}

void JobReconciler::Fail(Pass& pass, const std::string& reason, const std::string& message) {
  pass.status.phase = api::kPhaseFailed;
  pass.status.message = reason == api::kReasonInvalidSpec ? "invalid spec: " + message : message;
  if (pass.status.completion_time.empty()) {
    pass.status.completion_time = rt::FormatRfc3339(pass.now);
  }
  pass.SetCondition(api::kConditionFailed, true, reason, message);
  pass.ClearCondition(api::kConditionRunning, reason, message);
  pass.Announce("Warning", reason, message);
}

controller::Result JobReconciler::StopPods(Pass& pass, bool* all_gone) {
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.job.ns, {{kJobLabel, pass.job.name}});
  *all_gone = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod) && !PodTerminating(*pod)) {
      // Keep finished pods (their logs), but a suspended job must not keep a finished
      // coordinator that a resume would mistake for the end.
      if (!pass.spec.suspend) continue;
    }
    *all_gone = false;
    if (PodTerminating(*pod)) continue;
    // The default grace period lets the coordinator make its last journal write (SIGTERM).
    Status deleted = client_.Delete(kube::resources::kPods, pass.job.ns, ObjectName(*pod),
                                    {.precondition_uid = ObjectUid(*pod)});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  return {};
}

controller::Result JobReconciler::Finished(Pass& pass) {
  // Workers still running after the end (they would only retry a gone coordinator): stop them,
  // and keep the finalizer until they have (a recreated job must not meet them).
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.job.ns, {{kJobLabel, pass.job.name}});
  bool all_stopped = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod)) continue;
    all_stopped = false;
    if (PodTerminating(*pod)) continue;
    if (WorkerMayStillExit(*pod, pass.job.status, pass.now)) continue;
    Status deleted = client_.Delete(kube::resources::kPods, pass.job.ns, ObjectName(*pod), {});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  if (!all_stopped) return {Status(), milliseconds(500)};
  if (Status removed = RemoveFinalizer(pass); !removed.ok()) return {removed, std::nullopt};
  const std::optional<int64_t> ttl = pass.job.ttl_seconds_after_finished();
  if (!ttl) return {};
  auto done = rt::ParseRfc3339(pass.job.status.completion_time);
  if (!done.ok()) return {};
  const auto expiry = *done + std::chrono::seconds(*ttl);
  if (pass.now < expiry) {
    return {Status(),
            std::chrono::duration_cast<milliseconds>(expiry - pass.now) + milliseconds(100)};
  }
  Status deleted =
      client_.Delete(kube::resources::kParallelRunJobs, pass.job.ns, pass.job.name,
                     {.propagation_policy = "Background", .precondition_uid = pass.job.uid});
  if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  return {};
}

Status JobReconciler::RemoveFinalizer(Pass& pass) {
  if (!pass.job.has_finalizer(api::kFinalizer)) return Status();
  json kept = json::array();
  for (const std::string& f : pass.job.finalizers()) {
    if (f != api::kFinalizer) kept.push_back(f);
  }
  // The resourceVersion precondition keeps a finalizer someone else added meanwhile.
  auto patched = client_.Patch(
      kube::resources::kParallelRunJobs, pass.job.ns, pass.job.name, kube::PatchType::kMerge,
      {{"metadata", {{"finalizers", kept}, {"resourceVersion", pass.job.resource_version}}}});
  if (!patched.ok() && !kube::IsNotFound(patched.status())) return patched.status();
  return Status();
}

controller::Result JobReconciler::Finalize(Pass& pass) {
  std::vector<informer::ObjectPtr> pods =
      caches_.pods->ListByLabels(pass.job.ns, {{kJobLabel, pass.job.name}});
  bool all_gone = true;
  for (const auto& pod : pods) {
    if (PodFinished(*pod)) continue;
    all_gone = false;
    if (PodTerminating(*pod)) continue;
    Status deleted = client_.Delete(kube::resources::kPods, pass.job.ns, ObjectName(*pod), {});
    if (!deleted.ok() && !kube::IsNotFound(deleted)) return {deleted, std::nullopt};
  }
  if (!all_gone) return {Status(), milliseconds(500)};  // the coordinator is still writing
  if (Status removed = RemoveFinalizer(pass); !removed.ok()) return {removed, std::nullopt};
  std::lock_guard<std::mutex> lock(mu_);
  states_.erase(pass.key);
  return {};
}

Status JobReconciler::WriteStatus(Pass& pass, bool* written) {
  if (written != nullptr) *written = false;
  SetReason(pass.status);
  if (pass.status == pass.job.status) {
    if (written != nullptr) *written = true;
    RecordTransitions(pass);
    return Status();
  }
  api::ParallelRunJob next = pass.job;
  next.status = pass.status;
  auto updated =
      client_.Update(kube::resources::kParallelRunJobs, pass.job.ns, json(next), "status");
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
  const auto& old_counts = pass.job.status.mini_batches;
  const int64_t before = old_counts ? old_counts->completed : 0;
  const int64_t after = pass.status.mini_batches ? pass.status.mini_batches->completed : before;
  if (after > before && options_.on_mini_batches_completed) {
    options_.on_mini_batches_completed(after - before);
  }
  // The pass may write again (a restart counted mid-pass): from the job just written.
  pass.job.status = pass.status;
  const json rv = updated->value(json::json_pointer("/metadata/resourceVersion"), json());
  if (rv.is_string()) pass.job.resource_version = rv.get<std::string>();
  if (written != nullptr) *written = true;
  return Status();
}

void JobReconciler::RecordTransitions(Pass& pass) {
  for (const auto& t : pass.transitions) events_.Record(pass.ref, t.type, t.reason, t.message);
  pass.transitions.clear();
}

}  // namespace parallelrun::op::reconciler
