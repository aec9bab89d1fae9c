// What the coordinator says about its progress: the overview's progress line, the ETA, the
// running summary and the Progress reply. Pure functions over the counts and the times the
// caller read from its clock; no locking, no I/O.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/time_util.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/logs/job_result.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

// At most this many running attempts are named in a running summary.
inline constexpr size_t kMaxRunningNamed = 10;

// Seconds left, from the rate of the mini-batches this coordinator completed since the first
// lease it handed out (`completed_at_start`: those already completed when it started, carried
// ones excluded). Nothing before the plan is complete, the first lease, or a completion.
std::optional<double> EtaSeconds(const JobCounts& c, bool plan_complete,
                                 std::optional<SteadyTime> first_lease, int64_t completed_at_start,
                                 SteadyTime now);

struct ProgressLineInput {
  JobCounts counts;
  bool plan_complete = false;
  double elapsed_s = 0;         // since the job started
  std::optional<double> eta_s;  // EtaSeconds
  std::string carried_from;     // retryFrom's folder, empty without one
  bool final_line = false;      // the job ended: no ETA, the carried-over count instead
};
// "Processed 3 of 10+ mini batches in 0:00:05 (1 failed), estimated 0:00:12 remaining".
std::string ProgressLine(const ProgressLineInput& in);

// "running: mini-batch 4 (attempt 1) on node-a, ..., and 3 more" (`node_of` names the node of an
// attempt); "none running" when empty.
std::string RunningSummary(const std::vector<RunningAttempt>& running,
                           const std::function<std::string(const RunningAttempt&)>& node_of);

// The Progress of a running job (phase Pending until a node joined, Running after). The caller
// adds what is not counted: reason and message, nodes, times, files, exit code.
protocol::Progress RunningProgress(const JobCounts& c, bool plan_complete, bool any_node);
// The Progress of a job that ended with `r` (`planned`: false for a job refused before planning).
protocol::Progress EndedProgress(const JobResult& r, bool planned);

}  // namespace parallelrun::rt
