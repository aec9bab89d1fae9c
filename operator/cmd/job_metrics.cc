#include "operator/cmd/job_metrics.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "operator/api/parallelrun_job.h"
#include "operator/kube/client.h"

namespace parallelrun::op::cmd {
namespace {

using nlohmann::json;

constexpr const char* kReconcileTotal = "parallelrun_reconcile_total";
constexpr const char* kReconcileTotalHelp = "Reconciles of ParallelRunJobs by result.";

// The job's status object, or nullptr when it has none.
const json* StatusOf(const json& job) {
  auto s = job.find("status");
  return s != job.end() && s->is_object() ? &*s : nullptr;
}

// A phase gauge: jobs whose status.phase is `phase` (no phase yet counts as Pending).
double CountPhase(const informer::Informer& jobs, const std::string& phase) {
  double n = 0;
  for (const auto& job : jobs.List()) {
    const json* s = StatusOf(*job);
    std::string p = s != nullptr ? s->value("phase", "") : "";
    n += (p.empty() ? std::string(api::kPhasePending) : p) == phase;
  }
  return n;
}

// One series per (job, state) of the status group `group`, for jobs that have the group.
template <typename Counts>
manager::Registry::Series PerJob(
    const informer::Informer& jobs, const char* group,
    const std::vector<std::pair<const char*, int64_t Counts::*>>& fields) {
  manager::Registry::Series out;
  for (const auto& job : jobs.List()) {
    const json* s = StatusOf(*job);
    if (s == nullptr) continue;
    auto found = s->find(group);
    if (found == s->end() || !found->is_object()) continue;
    const Counts counts = found->get<Counts>();
    const json meta = job->value("metadata", json::object());
    for (const auto& [state, field] : fields) {
      out.push_back({{{"namespace", meta.value("namespace", "")},
                      {"name", meta.value("name", "")},
                      {"state", state}},
                     static_cast<double>(counts.*field)});
    }
  }
  return out;
}

}  // namespace

MetricsObserver::MetricsObserver(manager::Registry& registry)
    : success_(registry.GetCounter(kReconcileTotal, kReconcileTotalHelp, {{"result", "success"}})),
      requeue_(registry.GetCounter(kReconcileTotal, kReconcileTotalHelp, {{"result", "requeue"}})),
      error_(registry.GetCounter(kReconcileTotal, kReconcileTotalHelp, {{"result", "error"}})),
      errors_(registry.GetCounter("parallelrun_reconcile_errors_total",
                                  "Reconciles that returned an error (retried with backoff); "
                                  "a write conflict that is simply retried is not one.")),
      latency_(registry.GetHistogram("parallelrun_reconcile_duration_seconds",
                                     "Time spent in one reconcile.")) {}

void MetricsObserver::OnReconcile(const std::string& key, const controller::Result& result,
                                  std::chrono::duration<double> latency) {
  latency_.Observe(latency.count());
  if (!result.status.ok() && kube::IsConflict(result.status)) {
    requeue_.Inc();
  } else if (!result.status.ok()) {
    error_.Inc();
    errors_.Inc();
    spdlog::info("reconcile {}: {}", key, result.status.ToString());
  } else if (result.requeue_after) {
    requeue_.Inc();
  } else {
    success_.Inc();
  }
}

void RegisterJobMetrics(manager::Registry& registry, informer::Informer& jobs) {
  for (const char* phase : {api::kPhasePending, api::kPhaseRunning, api::kPhaseSucceeded,
                            api::kPhaseFailed, api::kPhaseSuspended}) {
    registry.SetGaugeFunction(
        "parallelrun_jobs",
        "ParallelRunJobs in this replica's cache by status.phase (a job with no phase yet is "
        "Pending).",
        {{"phase", phase}}, [&jobs, phase] { return CountPhase(jobs, phase); });
  }
  using api::ItemCounts;
  using api::MiniBatchCounts;
  registry.SetGaugeFamilyFunction(
      "parallelrun_job_minibatches",
      "Mini-batches of each job by state (status.miniBatches: total, completed, failed, running, "
      "retried).",
      [&jobs] {
        return PerJob<MiniBatchCounts>(jobs, "miniBatches",
                                       {{"total", &MiniBatchCounts::total},
                                        {"completed", &MiniBatchCounts::completed},
                                        {"failed", &MiniBatchCounts::failed},
                                        {"running", &MiniBatchCounts::running},
                                        {"retried", &MiniBatchCounts::retried}});
      });
  registry.SetGaugeFamilyFunction(
      "parallelrun_job_items",
      "Items of each job by state (status.items: total, succeeded, failed).", [&jobs] {
        return PerJob<ItemCounts>(jobs, "items",
                                  {{"total", &ItemCounts::total},
                                   {"succeeded", &ItemCounts::succeeded},
                                   {"failed", &ItemCounts::failed}});
      });
}

}  // namespace parallelrun::op::cmd
