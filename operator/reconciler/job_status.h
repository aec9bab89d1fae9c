// How a ParallelRunJob's status is built from what the operator observes (issue 15: numbers that
// add up). Pure functions over the typed status (operator/api), so the reconciler only decides
// *when* to call them and tests can check every rule without a cluster.
//
// Rules (also in the CRD's descriptions and docs/operations.md):
// - Times (recentErrors' lastSeen included) are RFC 3339 UTC at second precision
//   ("2026-11-23T11:05:08Z"); a time that is not known is left out, never "".
// - progress is "<completed>/<total>" once the plan is complete (so "0/N" at once), "planning"
//   before.
// - nodes.ready is the coordinator's count of agents seen within one lease period; once the job
//   ended it is the count in the coordinator's final summary, or the last count observed while it
//   ran when the summary has none (never 0 for a job whose agents ran).
// - output and logs say where things are as a volume of spec.volumes and a path inside it;
//   outputFile keeps the in-pod path beside them.
// - recentErrors are the coordinator's latest distinct errors; a report without any (a
//   coordinator that restarted) keeps what an earlier report put there.
// - reason is one CamelCase word for the phase: the Failed condition's reason, Completed,
//   Suspended, or the Scheduled condition's reason while pods wait; absent otherwise.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "operator/api/parallelrun_job.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::op::reconciler {

// RFC 3339 UTC at second precision (rt::FormatRfc3339 of rt::ParseRfc3339); "" when `text` is
// empty or not an RFC 3339 time.
std::string SecondsPrecision(const std::string& text);

// A coordinator's report: its answer to GET /v1/progress while it runs, or its final summary (the
// termination message of its pod) once it ended.
struct CoordinatorReport {
  rt::protocol::Progress progress;
  // Whether the report carries the count groups. A progress answer always does; a summary is
  // JSON that was cut to fit 4 KiB, and a group it lacks keeps what the status holds.
  bool has_mini_batches = true;
  bool has_items = true;
};

// The final summary in a coordinator's termination message; nullopt when `message` is not a
// JSON object. A field of the wrong type leaves the whole progress at its defaults (as the
// coordinator writes it, it never has one).
std::optional<CoordinatorReport> ParseSummary(const std::string& message);

// Copies a coordinator report into the status: counts, progress, ETA, times, nodes, locations and
// recent errors. `ended`: the report is the coordinator's final summary (a 0 nodes.ready keeps
// the last count observed, nothing runs any more, estimatedCompletionTime goes).
void ApplyProgress(const CoordinatorReport& report, const rt::JobSpec& spec, bool ended,
                   api::JobStatus& status);

// status.output {volume, path, file} and status.logs {volume, path} from the spec.
void SetLocations(const rt::JobSpec& spec, api::JobStatus& status);

// status.reason from the phase and the conditions (see above).
void SetReason(api::JobStatus& status);

// The OutputInUse message naming the owner: `owner` is "namespace/name" of the job holding the
// folder, or "" when no such job exists any more (then "a deleted job" with `owner_uid`).
std::string OutputInUseMessage(const rt::JobSpec& spec, const std::string& owner,
                               const std::string& owner_uid);
// The owner's uid in the coordinator's OutputInUse message (`owner "<uid>"`); "" if absent.
std::string OwnerUidOf(const std::string& coordinator_message);

}  // namespace parallelrun::op::reconciler
