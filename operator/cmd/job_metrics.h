// The operator's own metrics on /metrics: reconcile counts and latency (a ReconcileObserver), and
// per-job gauges read from the job cache (status.phase, status.miniBatches, status.items).
#pragma once

#include <chrono>
#include <string>

#include "operator/controller/controller.h"
#include "operator/informer/informer.h"
#include "operator/manager/metrics.h"

namespace parallelrun::op::cmd {

// parallelrun_reconcile_total{result=success|requeue|error}, parallelrun_reconcile_errors_total
// and parallelrun_reconcile_duration_seconds. A 409 Conflict counts as a requeue (the cache was
// behind; the job is queued again with the newer object), not as an error.
class MetricsObserver : public controller::ReconcileObserver {
 public:
  explicit MetricsObserver(manager::Registry& registry);
  void OnReconcile(const std::string& key, const controller::Result& result,
                   std::chrono::duration<double> latency) override;

 private:
  manager::Counter& success_;
  manager::Counter& requeue_;
  manager::Counter& error_;
  manager::Counter& errors_;
  manager::Histogram& latency_;
};

// parallelrun_jobs{phase}, parallelrun_job_minibatches{namespace,name,state} and
// parallelrun_job_items{namespace,name,state}, computed from `jobs` at each scrape (a job's series
// vanish with it). `jobs` must outlive the registry's scrapes.
void RegisterJobMetrics(manager::Registry& registry, informer::Informer& jobs);

}  // namespace parallelrun::op::cmd
