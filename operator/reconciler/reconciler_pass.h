// Internal to the reconciler (reconciler.cc, sync.cc): the per-job memory and what one reconcile
// pass knows and decides. Not for other targets.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "operator/api/parallelrun_job.h"
#include "operator/reconciler/reconciler.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::op::reconciler {

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
  api::ParallelRunJob job;  // as the cache holds it: job.status is the status last written
  api::JobStatus status;    // the status being built
  rt::JobSpec spec;
  status::ObjectRef ref;
  rt::SystemTime now;
  std::optional<std::chrono::milliseconds> requeue;
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

  void RequeueAfter(std::chrono::milliseconds d) {
    if (!requeue || d < *requeue) requeue = d;
  }

  // Sets condition `type` (api::SetCondition: the transition time moves with its status) for
  // this generation of the job.
  void SetCondition(const char* type, bool holds, std::string reason, std::string message) {
    api::SetCondition(status,
                      {type, holds ? api::kConditionTrue : api::kConditionFalse, std::move(reason),
                       std::move(message), "", job.generation},
                      now);
  }

  // Turns condition `type` False if the job has it True (api::ClearCondition).
  void ClearCondition(const char* type, std::string reason, std::string message) {
    api::ClearCondition(
        status,
        {type, api::kConditionFalse, std::move(reason), std::move(message), "", job.generation},
        now);
  }
};

}  // namespace parallelrun::op::reconciler
