// How a job ends: the reasons and hints of SPEC.md §6, the Ending decided once, the pure rules
// that decide it from the counts (thresholds, success), and the JobResult it becomes. The
// coordinator's part that acts on them (EndLocked, Reject, Finalize: assembly, job_result.txt,
// result.json) is in job_end.cc.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/base/time_util.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/logs/job_result.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt {

// Reasons (the ParallelRunJob condition reasons of SPEC.md §6, plus InvalidInput for inputs that
// cannot be planned and OutputAssemblyFailed): the names of runtime/protocol/contract.h, which the
// operator shares. DiskFull is kReasonDiskFull (runtime/logs).
inline constexpr const char* kReasonCompleted = reason::kCompleted;
inline constexpr const char* kReasonInvalidInput = reason::kInvalidInput;
inline constexpr const char* kReasonOutputInUse = reason::kOutputInUse;
inline constexpr const char* kReasonErrorThreshold = reason::kErrorThresholdExceeded;
inline constexpr const char* kReasonFailedPercent = reason::kAllowedFailedPercentExceeded;
inline constexpr const char* kReasonNoSucceeded = reason::kNoSucceededItems;
inline constexpr const char* kReasonNoProgress = reason::kNoProgress;
inline constexpr const char* kReasonInitFailed = reason::kInitFailed;
inline constexpr const char* kReasonAssemblyFailed = reason::kOutputAssemblyFailed;
inline constexpr const char* kReasonOutputLost = reason::kOutputLost;

// Where to look first (JobResult.look_first).
inline constexpr const char* kHintUserErrors =
    "logs/user/error.txt (one line per failed attempt), then the tracebacks in "
    "logs/user/error/<node>/<process>.txt";
inline constexpr const char* kHintReport =
    "logs/sys/job_report/processed_mini-batches.csv (one row per attempt of every mini-batch)";
inline constexpr const char* kHintOverview =
    "logs/job_progress_overview.<yyyymmddhh>.txt (the newest file: what ran where)";
inline constexpr const char* kHintNodes =
    "logs/sys/node/<node>/_main.txt (worker starts and exits) and logs/sys/error/<node>/";
inline constexpr const char* kHintMasterRole =
    "logs/sys/master_role.<n>.txt (the coordinator's log)";
inline constexpr const char* kHintRetryFrom =
    "spec.retryFrom and the earlier run's output folder it names (its .parallelrun/plan, "
    "journal and output_index)";
inline constexpr const char* kHintStderr =
    "logs/user/stderr/<node>/<process>.stderr.txt (what init() printed)";

// How the job ended (decided once).
struct Ending {
  bool succeeded = false;
  std::string reason;
  std::string message;
  int exit_code = kCoordinatorExitJobFailed;
  bool early = false;        // stopped before every mini-batch was done: agents must stop now
  bool assemble = true;      // assemble the accepted parts
  bool output_lost = false;  // the output folder went away: no result.json, logs made again
  std::string traceback;     // InitFailed
  std::vector<std::string> look_first;
};

// An ending that stops the job at once with exit code 1 and no assembly (InvalidInput).
Ending InvalidInputEnding(std::string message, std::vector<std::string> look_first = {});

// The thresholds and the end of a job whose every mini-batch was decided (SPEC.md §4.1):
// errorThreshold, allowedFailedCount (at any time), then allowedFailedPercent, no succeeded item,
// or success. Nothing while the job goes on. `last_error`: "; last error: ..." or empty;
// `carried_from`: retryFrom's folder or empty. Whether it ends does not depend on `last_error`,
// which only words the message (the coordinator words it only then).
std::optional<Ending> DecideOutcome(const JobSpec& spec, const JobCounts& c, bool all_done,
                                    const std::string& last_error, const std::string& carried_from);

// The look_first an ending gets when it names none.
std::vector<std::string> DefaultLookFirst(const Ending& e, const JobCounts& c);

struct ResultTimes {
  SystemTime start;
  SystemTime end;
};
// The job's result for `e`.
JobResult MakeJobResult(const Ending& e, const JobCounts& c, const std::string& carried_from,
                        ResultTimes times, const std::string& log_dir);

}  // namespace parallelrun::rt
