// The contracts the coordinator shares with the agents, the `parallelrun` commands and the
// operator, defined once: the coordinator's exit codes, the job condition reasons it writes to
// job_result.txt / result.json (which the operator copies to the ParallelRunJob's conditions), and
// the attempt statuses agents report (an enum in code; the upper-case name only on the wire, in
// the journal and in the report CSV).
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace parallelrun::rt {

// Exit codes of `parallelrun coordinator` and `parallelrun run` (SPEC.md §4.1).
inline constexpr int kCoordinatorExitSucceeded = 0;
inline constexpr int kCoordinatorExitInvalid = 1;  // invalid input, OutputInUse
inline constexpr int kCoordinatorExitJobFailed = 42;
inline constexpr int kCoordinatorExitInterrupted = 130;  // stopped (SIGINT/SIGTERM)

// Whether a coordinator that exited with `code` decided the job (succeeded, failed or invalid),
// as opposed to being interrupted or crashing (the operator restarts it then).
constexpr bool IsFinalCoordinatorExit(int code) {
  return code == kCoordinatorExitSucceeded || code == kCoordinatorExitJobFailed ||
         code == kCoordinatorExitInvalid;
}

// Condition reasons of a job's end (SPEC.md §6), as the coordinator writes them.
namespace reason {
inline constexpr const char* kCompleted = "Completed";
inline constexpr const char* kInvalidInput = "InvalidInput";
inline constexpr const char* kOutputInUse = "OutputInUse";
inline constexpr const char* kOutputNotWritable = "OutputNotWritable";
inline constexpr const char* kErrorThresholdExceeded = "ErrorThresholdExceeded";
inline constexpr const char* kAllowedFailedPercentExceeded = "AllowedFailedPercentExceeded";
inline constexpr const char* kNoSucceededItems = "NoSucceededItems";
inline constexpr const char* kNoProgress = "NoProgress";
inline constexpr const char* kInitFailed = "InitFailed";
inline constexpr const char* kOutputAssemblyFailed = "OutputAssemblyFailed";
inline constexpr const char* kOutputLost = "OutputLost";
inline constexpr const char* kDiskFull = "DiskFull";

// The reasons of a job that failed because too much of its work failed (the operator records
// them as a ThresholdExceeded event).
constexpr bool IsThreshold(std::string_view r) {
  return r == kErrorThresholdExceeded || r == kAllowedFailedPercentExceeded ||
         r == kNoSucceededItems;
}
}  // namespace reason

// How one attempt of a mini-batch ended, as an agent reports it.
enum class AttemptStatus : unsigned char {
  kRunDone,
  kRunException,
  kRunTimeout,
  kRunWrongType,
  kWorkerDied,
  kCancelled,
  kLeaseExpired,
  kInitFailed,
  kInitTimeout,
};
// The wire name ("RUN_DONE", ...) and back; nullopt for a name that is not a status.
std::optional<AttemptStatus> ParseAttemptStatus(std::string_view name);
const char* AttemptStatusName(AttemptStatus status);
// Every wire name, in enum order: "RUN_DONE, RUN_EXCEPTION, ..., INIT_TIMEOUT" (error messages).
std::string AttemptStatusNames();
// Writes the wire name (test failure messages).
std::ostream& operator<<(std::ostream& os, AttemptStatus status);

}  // namespace parallelrun::rt
