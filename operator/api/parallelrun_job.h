// The ParallelRunJob custom resource as the operator sees it (SPEC.md §2, §6): the object's
// identity and metadata, its spec (kept raw and parsed by the one job-spec model in
// runtime/jobspec) and its status, plus the names the operator stamps on children.
//
// Guarantees:
// - ParseParallelRunJob never fails on spec or status problems: a stored object with an invalid
//   spec must still be readable so the operator can report InvalidSpec on it. Status is read
//   leniently (fields of the wrong type are ignored).
// - JobStatus serializes only what is set (no empty strings, no absent count groups), so a merge
//   patch of the status stays small. Caveat: in a merge patch an omitted field means "unchanged";
//   StatusMergePatch computes a patch that also clears what was removed.
// - Every function here is pure and thread-compatible (no shared state).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::op::api {

// ----- API names ------------------------------------------------------------------------------

inline constexpr const char* kGroup = "parallelrun.io";
inline constexpr const char* kVersion = "v1alpha1";
inline constexpr const char* kApiVersion = "parallelrun.io/v1alpha1";
inline constexpr const char* kKind = "ParallelRunJob";
inline constexpr const char* kPlural = "parallelrunjobs";

// Labels on every child (job), on pods (role) and on worker pods (worker index).
inline constexpr const char* kJobLabel = "parallelrun.io/job";
inline constexpr const char* kRoleLabel = "parallelrun.io/role";
inline constexpr const char* kWorkerIndexLabel = "parallelrun.io/worker-index";
inline constexpr const char* kRoleCoordinator = "coordinator";
inline constexpr const char* kRoleWorker = "worker";
// Held on a job until the coordinator's final write is safe.
inline constexpr const char* kFinalizer = "parallelrun.io/finalizer";

// status.phase values (the CRD's enum).
inline constexpr const char* kPhasePending = "Pending";
inline constexpr const char* kPhaseRunning = "Running";
inline constexpr const char* kPhaseSucceeded = "Succeeded";
inline constexpr const char* kPhaseFailed = "Failed";
inline constexpr const char* kPhaseSuspended = "Suspended";

// Whether `phase` ends the job (Succeeded or Failed): nothing runs any more and the phase never
// changes again.
bool IsTerminalPhase(std::string_view phase);

// Condition types.
inline constexpr const char* kConditionScheduled = "Scheduled";
inline constexpr const char* kConditionRunning = "Running";
inline constexpr const char* kConditionComplete = "Complete";
inline constexpr const char* kConditionFailed = "Failed";
inline constexpr const char* kConditionSuspended = "Suspended";

// Condition status values.
inline constexpr const char* kConditionTrue = "True";
inline constexpr const char* kConditionFalse = "False";
inline constexpr const char* kConditionUnknown = "Unknown";

// Condition (and status.reason) values the operator decides itself. The reasons of a job's end
// that the coordinator decides are rt::reason::* in runtime/protocol/contract.h.
inline constexpr const char* kReasonInvalidSpec = "InvalidSpec";
inline constexpr const char* kReasonDeadlineExceeded = "DeadlineExceeded";
inline constexpr const char* kReasonBackoffLimitExceeded = "BackoffLimitExceeded";
inline constexpr const char* kReasonUnschedulable = "Unschedulable";
inline constexpr const char* kReasonImagePullBackOff = "ImagePullBackOff";
inline constexpr const char* kReasonFailedMount = "FailedMount";
inline constexpr const char* kReasonScheduled = "Scheduled";
inline constexpr const char* kReasonRunning = "Running";
inline constexpr const char* kReasonSuspended = "Suspended";
inline constexpr const char* kReasonResumed = "Resumed";
// A Failed job whose coordinator named no reason.
inline constexpr const char* kReasonFailed = "Failed";

// ----- status ---------------------------------------------------------------------------------

// A Kubernetes condition (metav1.Condition without the Go types).
struct Condition {
  std::string type;
  std::string status;  // "True", "False" or "Unknown"
  std::string reason;  // CamelCase, e.g. InvalidSpec
  std::string message;
  std::string last_transition_time;  // RFC 3339, e.g. "2026-11-23T11:05:08Z"
  int64_t observed_generation = 0;   // 0 = not set (generations start at 1)

  bool operator==(const Condition&) const = default;
};

struct MiniBatchCounts {
  int64_t total = 0;
  int64_t completed = 0;  // failed ones included
  int64_t failed = 0;
  int64_t running = 0;
  int64_t retried = 0;
  bool operator==(const MiniBatchCounts&) const = default;
};

struct ItemCounts {
  int64_t total = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  bool operator==(const ItemCounts&) const = default;
};

struct NodeCounts {
  int64_t desired = 0;
  int64_t ready = 0;  // agents seen by the coordinator within one lease period
  bool operator==(const NodeCounts&) const = default;
};

// How often the job's pods were started again after a crash (status.restarts). The durable
// counts behind spec.backoffLimit: kept in the status, as a Job keeps status.failed, so a
// restarted operator keeps honouring the limit.
struct RestartCounts {
  int64_t coordinator = 0;  // coordinator pods that crashed and were restarted
  int64_t workers = 0;      // failed worker pods that were replaced
  bool operator==(const RestartCounts&) const = default;
};

// Where the output (or the log tree) is: a volume of spec.volumes and a path inside it.
struct VolumeLocation {
  std::string volume;  // empty: a path in the image
  std::string path;
  std::string file;  // output only: the append_row file's name; empty for summary_only and logs
  bool operator==(const VolumeLocation&) const = default;
};

// One of status.recentErrors: a group of the coordinator's error digest
// (runtime/coordinator/error_digest.h, docs/why-did-my-job-fail.md).
struct RecentError {
  std::string error;         // "ValueError: model returned NaN"
  std::string location;      // "score.py:14"; empty when unknown
  int64_t count = 0;         // failed attempts
  int64_t mini_batches = 0;  // miniBatches: distinct mini-batches it hit
  int64_t items = 0;         // items of those mini-batches
  std::string last_seen;     // lastSeen (RFC 3339)
  bool operator==(const RecentError&) const = default;
};

// Exactly the fields of the CRD's status schema (SPEC.md §6); JSON names in comments.
struct JobStatus {
  int64_t observed_generation = 0;  // observedGeneration; 0 = not set
  std::string phase;                // phase: Pending | Running | Succeeded | Failed | Suspended
  std::string reason;               // CamelCase (REASON column)
  std::vector<Condition> conditions;
  std::string start_time;                       // startTime (RFC 3339)
  std::string completion_time;                  // completionTime
  std::optional<MiniBatchCounts> mini_batches;  // miniBatches
  std::optional<ItemCounts> items;
  std::optional<NodeCounts> nodes;
  std::optional<RestartCounts> restarts;
  std::string progress;                    // "<completed>/<total>"
  std::string last_progress_line;          // lastProgressLine
  std::vector<RecentError> recent_errors;  // recentErrors: at most 5, the latest first
  std::string eta;                         // H:MM:SS
  std::string estimated_completion_time;   // estimatedCompletionTime
  std::optional<VolumeLocation> output;    // output: {volume, path, file}
  std::string output_file;                 // outputFile (path inside the pods)
  std::optional<VolumeLocation> logs;      // logs: {volume, path}
  std::string message;

  bool operator==(const JobStatus&) const = default;
};

// Writes only what is set: empty strings, observedGeneration 0, absent count groups and an empty
// condition list are left out. A count group that is present is written whole.
void to_json(nlohmann::json& j, const Condition& c);
void to_json(nlohmann::json& j, const MiniBatchCounts& c);
void to_json(nlohmann::json& j, const ItemCounts& c);
void to_json(nlohmann::json& j, const NodeCounts& c);
void to_json(nlohmann::json& j, const RestartCounts& c);
void to_json(nlohmann::json& j, const VolumeLocation& l);  // empty strings left out
void to_json(nlohmann::json& j, const RecentError& e);
void from_json(const nlohmann::json& j, RecentError& e);
void to_json(nlohmann::json& j, const JobStatus& s);
// Lenient: a missing field, or one of the wrong type, keeps its default; never throws.
void from_json(const nlohmann::json& j, Condition& c);
void from_json(const nlohmann::json& j, MiniBatchCounts& c);
void from_json(const nlohmann::json& j, ItemCounts& c);
void from_json(const nlohmann::json& j, NodeCounts& c);
void from_json(const nlohmann::json& j, RestartCounts& c);
void from_json(const nlohmann::json& j, VolumeLocation& l);
void from_json(const nlohmann::json& j, JobStatus& s);

// A JSON merge patch (RFC 7386) for the status subresource that turns `before` into `after`:
// {"status": {...changed fields..., removed fields: null}}, or an empty object when nothing
// changed. Count groups are patched field by field; conditions are replaced as a whole (merge
// patches replace lists).
nlohmann::json StatusMergePatch(const JobStatus& before, const JobStatus& after);

// RFC 3339 at second precision in UTC, as Kubernetes writes metav1.Time: "2026-11-23T11:05:08Z".
std::string Rfc3339(rt::SystemTime t);

// The condition of `type`, or nullptr.
const Condition* FindCondition(const JobStatus& status, const std::string& type);
Condition* FindCondition(JobStatus& status, const std::string& type);

// Adds or updates the condition of `condition.type` with Kubernetes semantics:
// lastTransitionTime becomes `now` when the condition is new or its status changes, and is kept
// otherwise (a new reason or message alone is not a transition). A last_transition_time set on
// `condition` is ignored. Returns true when anything in the stored condition changed.
bool SetCondition(JobStatus& status, Condition condition, rt::SystemTime now);

// SetCondition for a condition that no longer holds (`condition.status` False), applied only when
// the job has the condition and it is not False already: a job never gets a False condition it
// never had (as batch/v1 Job), and a False one keeps its reason. Returns true when anything
// changed.
bool ClearCondition(JobStatus& status, Condition condition, rt::SystemTime now);

// ----- the resource ---------------------------------------------------------------------------

struct ParallelRunJob {
  std::string name;
  std::string ns;
  std::string uid;
  int64_t generation = 0;
  std::string resource_version;
  // The metadata fields TrimForCache keeps: identity, labels, annotations (without kubectl's
  // last-applied copy), finalizers, deletionTimestamp, creationTimestamp, ownerReferences.
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json raw_spec;  // null when the object has no spec
  JobStatus status;

  bool being_deleted() const;  // metadata.deletionTimestamp is set
  bool has_finalizer(const std::string& finalizer) const;
  // metadata.finalizers in their order (entries that are not strings are skipped).
  std::vector<std::string> finalizers() const;
  // spec.ttlSecondsAfterFinished read from the raw spec without validating the rest of it, so a
  // job that failed with an invalid spec still honours it; nullopt when absent or not an integer.
  std::optional<int64_t> ttl_seconds_after_finished() const;
  // "ns/name", the work-queue key.
  std::string key() const;
};

// Reads a ParallelRunJob object from the API server or the cache. Fails (InvalidArgument) only
// when `object` is not a JSON object or has no metadata.name; the spec is not validated here and
// the status is read leniently.
rt::StatusOr<ParallelRunJob> ParseParallelRunJob(const nlohmann::json& object);

// The object for a write (the status subresource's PUT): {apiVersion, kind, metadata, spec,
// status}; spec only when raw_spec is not null; metadata is `metadata` with the identity fields
// (name, namespace, uid, resourceVersion, generation) set from the struct when set there. For an
// object the cache holds (TrimForCache), ParseParallelRunJob followed by this gives the same JSON
// back except for the status, which is written from `status` (so a field JobStatus does not know is
// not written back).
void to_json(nlohmann::json& j, const ParallelRunJob& job);

// Parses and validates the job's spec with the one job-spec model (rt::ParseJobSpec) on the
// object {apiVersion, kind, metadata: {name, namespace, uid}, spec}, so field errors carry
// `spec.*` paths and the metadata.name rule is checked too. `errors` (optional) receives the
// structured field errors; the Status message lists them all, prefixed with
// "ParallelRunJob <ns>/<name>".
rt::StatusOr<rt::JobSpec> ParseSpec(const ParallelRunJob& job,
                                    std::vector<rt::FieldError>* errors = nullptr);

// ----- cache trimming (informer transforms) ----------------------------------------------------

// Keeps what the operator reads of a ParallelRunJob: apiVersion, kind, metadata.{name, namespace,
// uid, generation, resourceVersion, labels, annotations, finalizers, deletionTimestamp,
// creationTimestamp, ownerReferences}, spec and status. Drops managedFields, the rest, and the
// kubectl.kubernetes.io/last-applied-configuration annotation (a copy of the whole object).
// A non-object is returned unchanged.
nlohmann::json TrimForCache(nlohmann::json object);

// Keeps what the operator reads of a Pod (500 jobs' pods must fit in a few MiB): apiVersion,
// kind, metadata.{name, namespace, uid, deletionTimestamp, resourceVersion}, the labels
// parallelrun.io/job and /role, spec.nodeName, status.{phase, podIP, the PodScheduled condition
// when False (type, status, reason, message), containerStatuses[].{name, state}}.
// A non-object is returned unchanged.
nlohmann::json TrimPodForCache(nlohmann::json pod);

}  // namespace parallelrun::op::api
