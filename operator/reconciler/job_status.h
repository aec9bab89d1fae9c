// How a ParallelRunJob's status is built from what the operator observes (issue 15: numbers that
// add up). Pure functions over the status JSON, so the reconciler only decides *when* to call
// them and tests can check every rule without a cluster.
//
// Rules (also in the CRD's descriptions and docs/operations.md):
// - Times are RFC 3339 UTC at second precision ("2026-11-23T11:05:08Z"); a time that is not known
//   is left out, never "".
// - progress is "<completed>/<total>" once the plan is complete (so "0/N" at once), "planning"
//   before.
// - nodes.ready is the coordinator's count of agents seen within one lease period; once the job
//   ended it is the count in the coordinator's final summary, or the last count observed while it
//   ran when the summary has none (never 0 for a job whose agents ran).
// - output and logs say where things are as a volume of spec.volumes and a path inside it;
//   outputFile keeps the in-pod path beside them.
// - reason is one CamelCase word for the phase: the Failed condition's reason, Completed,
//   Suspended, or the Scheduled condition's reason while pods wait; absent otherwise.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "runtime/base/time_util.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::op::reconciler {

// Lenient reads of raw JSON: a missing member, or a non-object, is null / "".
const nlohmann::json& Field(const nlohmann::json& object, const char* key);
std::string Str(const nlohmann::json& object, const char* key);

// RFC 3339 UTC at second precision; "" when `text` is empty or not an RFC 3339 time.
std::string SecondsPrecision(const std::string& text);
std::string FormatStatusTime(rt::SystemTime t);

// Sets status[key] to the time `text` at second precision, or removes it when unknown.
void SetTime(nlohmann::json& status, const char* key, const std::string& text);

// Copies a coordinator progress report (protocol::Progress as JSON) into the status: counts,
// progress, ETA, times, nodes and locations. `ended`: the report is the coordinator's final
// summary (a 0 nodes.ready keeps the last count observed, estimatedCompletionTime goes).
void ApplyProgress(const nlohmann::json& progress, const rt::JobSpec& spec, bool ended,
                   nlohmann::json& status);

// status.output {volume, path, file} and status.logs {volume, path} from the spec.
void SetLocations(const rt::JobSpec& spec, nlohmann::json& status);

// status.reason from the phase and the conditions (see above).
void SetReason(nlohmann::json& status);

// The OutputInUse message naming the owner: `owner` is "namespace/name" of the job holding the
// folder, or "" when no such job exists any more (then "a deleted job" with `owner_uid`).
std::string OutputInUseMessage(const rt::JobSpec& spec, const std::string& owner,
                               const std::string& owner_uid);
// The owner's uid in the coordinator's OutputInUse message (`owner "<uid>"`); "" if absent.
std::string OwnerUidOf(const std::string& coordinator_message);

}  // namespace parallelrun::op::reconciler
