// The ParallelRunJob reconciler (SPEC.md §6): level-based and idempotent. Each call looks at the
// job and its children as the informers last saw them, makes one step towards the desired state
// (create missing children, replace failed worker pods with backoff, restart a crashed
// coordinator up to backoffLimit, delete pods when suspended, past the deadline or finished),
// reads the coordinator's progress at most every `progress_interval`, and writes the status
// subresource when it changed. It never blocks on a pod: waiting is a requeue.
//
// Finalizer: a job carries `parallelrun.io/finalizer` while it runs, so that deleting it stops
// its pods with their grace period (the coordinator's last journal write) before the job object
// goes, and a job recreated under the same name cannot meet the old pods. Once the job is
// Succeeded or Failed and its pods have stopped, the finalizer is removed: a finished job can be
// deleted with no operator running.
//
// Durable counters (coordinator crashes, worker replacements) live in the job's status
// (status.restarts, written before the failed pod is deleted), so a restarted operator keeps
// honouring backoffLimit. Jobs from older operators kept them as annotations of the job's Secret:
// those are read (never written) as a floor. Backoff timers are in memory.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "operator/api/parallelrun_job.h"
#include "operator/controller/controller.h"
#include "operator/informer/informer.h"
#include "operator/kube/client.h"
#include "operator/reconciler/children.h"
#include "operator/status/event_recorder.h"
#include "operator/status/progress_client.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::reconciler {

struct CoordinatorReport;  // job_status.h
struct Termination;        // observed.h

// The informer caches the reconciler reads. Child caches hold objects labelled
// parallelrun.io/job (trimmed: see the Trim* functions below). There is no cache of Secrets: the
// operator may only get and create them (a job's Secret is read by name once and then kept by
// the reconciler).
struct Caches {
  informer::Informer* jobs = nullptr;
  informer::Informer* pods = nullptr;
  informer::Informer* config_maps = nullptr;
  informer::Informer* services = nullptr;
};

struct ReconcilerOptions {
  ChildrenOptions children;  // default image, coordinator resources
  std::chrono::milliseconds progress_interval{2000};
  std::chrono::milliseconds worker_backoff_base{2000};
  std::chrono::milliseconds worker_backoff_cap{60000};
  int coordinator_port = kCoordinatorPort;
  // Called with how many more mini-batches ended, each time a written status shows more
  // (parallelrun_minibatches_processed_total); may be empty.
  std::function<void(int64_t)> on_mini_batches_completed;
};

// Annotations on the Secret `J-parallelrun` where operators before status.restarts kept the
// restart counts: read as a floor for the jobs they started, never written.
inline constexpr const char* kCoordinatorCrashesAnnotation = "parallelrun.io/coordinator-crashes";
inline constexpr const char* kWorkerReplacementsAnnotation = "parallelrun.io/worker-replacements";

class JobReconciler {
 public:
  JobReconciler(kube::Client& client, Caches caches, status::ProgressReader& progress,
                status::EventRecorder& events, const rt::Clock& clock, ReconcilerOptions options);
  ~JobReconciler();

  // key: "namespace/name" of a ParallelRunJob.
  controller::Result Reconcile(const std::string& key);

 private:
  struct JobState;  // per-job memory: last progress read, worker backoff timers
  struct Pass;      // one reconcile's view and decisions (reconciler_pass.h)

  // reconciler.cc: the pass and the ends of a job.
  controller::Result AddFinalizer(Pass& pass);
  controller::Result Run(Pass& pass);
  controller::Result Suspend(Pass& pass);
  // Past spec.activeDeadlineSeconds: stops the pods and fails the job (the result to return);
  // before it: a requeue at the deadline and nullopt.
  std::optional<controller::Result> EnforceDeadline(Pass& pass);
  controller::Result Finalize(Pass& pass);
  controller::Result Finished(Pass& pass);
  rt::Status RemoveFinalizer(Pass& pass);  // ours only; ok when absent
  controller::Result StopPods(Pass& pass, bool* all_gone);
  // Ends the job: phase Failed, condition Failed with `reason`, a Warning event.
  void Fail(Pass& pass, const std::string& reason, const std::string& message);
  // Writes the status when it changed (reason set first); a conflict is a requeue, not an
  // error. Transition events are recorded once their status is written. `written` (optional):
  // set true when the API server holds pass.status (written now, or unchanged), false after a
  // conflict or when the job is gone; a written status becomes pass.job's.
  rt::Status WriteStatus(Pass& pass, bool* written = nullptr);
  void RecordTransitions(Pass& pass);

  // sync.cc: the steps towards the running job.
  rt::Status EnsureConfigObjects(Pass& pass);
  rt::Status SyncCoordinator(Pass& pass);
  rt::Status CreateCoordinator(Pass& pass);
  // The coordinator's container ended: the job's end (a final exit with its summary), a restart
  // without counting (interrupted), or a counted restart up to backoffLimit.
  rt::Status CoordinatorEnded(Pass& pass, const nlohmann::json& pod, const Termination& end);
  rt::Status SyncWorkers(Pass& pass);
  void ExplainWaiting(Pass& pass);
  void ReadProgress(Pass& pass);
  // The coordinator ended with its final summary (its container's termination message).
  void EndFromSummary(Pass& pass, const CoordinatorReport& summary, bool ok);
  // The coordinator's OutputInUse message, rewritten to name the owning job, volume and path.
  std::string DescribeOutputInUse(Pass& pass, const std::string& message);
  // Writes `counts` (a restart just counted) as status.restarts before the failed pod is
  // deleted: false (and a requeue, pass.status as before) when the write lost a conflict, so the
  // pod stays and the next pass, from the newer job, counts it; never a deleted pod without its
  // count.
  rt::StatusOr<bool> CommitRestart(Pass& pass, api::RestartCounts counts);
  // pass.secret: the job's Secret from this process's memory, else read by name (null when
  // there is none yet).
  rt::Status LoadSecret(Pass& pass);
  void RememberSecret(Pass& pass, nlohmann::json secret);
  JobState& StateOf(const std::string& key);

  kube::Client& client_;
  Caches caches_;
  status::ProgressReader& progress_;
  status::EventRecorder& events_;
  const rt::Clock& clock_;
  ReconcilerOptions options_;
  std::mutex mu_;
  std::map<std::string, JobState> states_;
};

// Transforms: keep only what the reconciler reads (memory per job matters: SPEC §9).
// TrimSecretForCache is for the Secrets the reconciler keeps in memory.
nlohmann::json TrimSecretForCache(nlohmann::json secret);
nlohmann::json TrimMetadataOnly(nlohmann::json object);

}  // namespace parallelrun::op::reconciler
