// The planner thread: cuts the inputs into mini-batches (runtime/partitioner) and appends them to
// the plan file, handing each batch of records to the coordinator only once it is durable.
//
// Guarantees: records are flushed (write + fdatasync) every kFlushRecords records or every
// kFlushInterval, whichever comes first, so the first mini-batch can start long before planning
// of a large input ends. A restarted planner skips the `existing_records` already in the plan
// (the partitioner is deterministic) and never rewrites them. Exactly one of on_complete /
// on_error is called, unless the planner is cancelled first.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt {

struct PlannerOptions {
  JobSpec spec;
  std::vector<std::string> input_dirs;  // folder of spec.inputs[i]
  std::string plan_path;
  int64_t existing_records = 0;  // records already in the plan
  int64_t valid_bytes = 0;       // where appending continues
  const Clock* clock = nullptr;
  // Records that became durable, in plan order (ids existing_records, existing_records + 1, ...).
  std::function<void(std::vector<PlanEntry>&&)> on_durable;
  // END is durable: the plan is complete.
  std::function<void()> on_complete;
  // Planning failed (missing input folder, unreadable file, unknown format ...).
  std::function<void(const Status&)> on_error;
  // A warning about the inputs (entries that are not regular files), at the end of planning.
  std::function<void(const std::string&)> on_warning;
};

class Planner {
 public:
  static constexpr size_t kFlushRecords = 1000;
  static constexpr std::chrono::milliseconds kFlushInterval{50};

  explicit Planner(PlannerOptions options);
  ~Planner();  // cancels and joins
  Planner(const Planner&) = delete;
  Planner& operator=(const Planner&) = delete;

  void Start();
  // Asks the thread to stop between two mini-batches; no callback runs after that. The destructor
  // joins the thread.
  void Cancel();

 private:
  void Run();
  Status Plan();

  PlannerOptions options_;
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace parallelrun::rt
