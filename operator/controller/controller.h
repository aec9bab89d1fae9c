// A domain-free controller: N worker threads take keys from a WorkQueue and call the reconcile
// function. Knows nothing about ParallelRunJob.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "operator/controller/work_queue.h"
#include "runtime/base/status.h"

namespace parallelrun::op::controller {

struct Result {
  rt::Status status;  // not ok → AddRateLimited (and counted as an error)
  std::optional<std::chrono::milliseconds> requeue_after;  // ok and set → AddAfter; else Forget
};

using ReconcileFn = std::function<Result(const std::string& key)>;

// Observes reconciles (for metrics). Called from worker threads.
struct ReconcileObserver {
  virtual ~ReconcileObserver() = default;
  virtual void OnReconcile(const std::string& key, const Result& result,
                           std::chrono::duration<double> latency) = 0;
};

class Controller {
 public:
  Controller(std::string name, WorkQueue& queue, ReconcileFn reconcile, int workers,
             ReconcileObserver* observer = nullptr);
  ~Controller();  // Stop()s
  void Start();
  void Stop();  // shuts the queue down and joins the workers (in-flight reconciles finish)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::op::controller
