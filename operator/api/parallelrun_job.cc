#include "operator/api/parallelrun_job.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string_view>
#include <utility>

namespace parallelrun::op::api {
namespace {

using nlohmann::json;

// ----- lenient readers: a missing field or one of the wrong type leaves `out` as it is --------

const json* Field(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

void ReadString(const json& object, std::string_view key, std::string* out) {
  const json* v = Field(object, key);
  if (v != nullptr && v->is_string()) *out = v->get<std::string>();
}

// Integers, and floats with an integral value (some clients write 3.0), within int64.
void ReadInt(const json& object, std::string_view key, int64_t* out) {
  const json* v = Field(object, key);
  if (v == nullptr) return;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      *out = static_cast<int64_t>(u);
    }
  } else if (v->is_number_integer()) {
    *out = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    // 2^63 is exactly representable; anything below it (and >= -2^63) fits in int64.
    if (std::isfinite(d) && std::floor(d) == d && d >= -9223372036854775808.0 &&
        d < 9223372036854775808.0) {
      *out = static_cast<int64_t>(d);
    }
  }
}

template <typename T>
void ReadGroup(const json& object, std::string_view key, std::optional<T>* out) {
  const json* v = Field(object, key);
  if (v != nullptr && v->is_object()) *out = v->get<T>();
}

// ----- writers: leave out what is not set -----------------------------------------------------

void PutString(json& j, const char* key, const std::string& value) {
  if (!value.empty()) j[key] = value;
}

void PutInt(json& j, const char* key, int64_t value) {
  if (value != 0) j[key] = value;
}

template <typename T>
void PutGroup(json& j, const char* key, const std::optional<T>& value) {
  if (value) j[key] = *value;
}

// ----- trimming ---------------------------------------------------------------------------------

// Returns an object with only `keys` of `object` (those present).
json Pick(const json& object, std::initializer_list<std::string_view> keys) {
  json out = json::object();
  if (!object.is_object()) return out;
  for (std::string_view key : keys) {
    auto it = object.find(key);
    if (it != object.end()) out[std::string(key)] = *it;
  }
  return out;
}

// Moves `keys` of `object` into a new object (no copies of large subtrees).
json Take(json& object, std::initializer_list<std::string_view> keys) {
  json out = json::object();
  if (!object.is_object()) return out;
  for (std::string_view key : keys) {
    auto it = object.find(key);
    if (it != object.end()) out[std::string(key)] = std::move(*it);
  }
  return out;
}

// kubectl's client-side apply keeps a copy of the whole object in this annotation; the operator
// never reads it and it would double the size of every cached job.
constexpr const char* kLastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

json TrimJobMetadata(json metadata) {
  json out = Take(metadata, {"name", "namespace", "uid", "generation", "resourceVersion", "labels",
                             "annotations", "finalizers", "deletionTimestamp", "creationTimestamp",
                             "ownerReferences"});
  if (auto it = out.find("annotations"); it != out.end() && it->is_object()) {
    it->erase(kLastAppliedAnnotation);
  }
  return out;
}

json TrimList(const json* list, std::initializer_list<std::string_view> keys) {
  json out = json::array();
  if (list == nullptr || !list->is_array()) return out;
  for (const json& item : *list) out.push_back(Pick(item, keys));
  return out;
}

// ----- merge patch ------------------------------------------------------------------------------

// RFC 7386 patch turning object `before` into object `after`.
json MergeDiff(const json& before, const json& after) {
  json patch = json::object();
  for (const auto& [key, value] : after.items()) {
    auto it = before.find(key);
    if (it == before.end()) {
      patch[key] = value;
    } else if (*it != value) {
      patch[key] = it->is_object() && value.is_object() ? MergeDiff(*it, value) : value;
    }
  }
  for (const auto& [key, value] : before.items()) {
    (void)value;
    if (!after.contains(key)) patch[key] = nullptr;
  }
  return patch;
}

}  // namespace

// ----- status JSON ------------------------------------------------------------------------------

void to_json(json& j, const Condition& c) {
  j = json::object();
  PutString(j, "type", c.type);
  PutString(j, "status", c.status);
  PutString(j, "reason", c.reason);
  PutString(j, "message", c.message);
  PutString(j, "lastTransitionTime", c.last_transition_time);
  PutInt(j, "observedGeneration", c.observed_generation);
}

void to_json(json& j, const MiniBatchCounts& c) {
  j = {{"total", c.total},
       {"completed", c.completed},
       {"failed", c.failed},
       {"running", c.running},
       {"retried", c.retried}};
}

void to_json(json& j, const ItemCounts& c) {
  j = {{"total", c.total}, {"succeeded", c.succeeded}, {"failed", c.failed}};
}

void to_json(json& j, const NodeCounts& c) { j = {{"desired", c.desired}, {"ready", c.ready}}; }

void to_json(json& j, const RestartCounts& c) {
  j = {{"coordinator", c.coordinator}, {"workers", c.workers}};
}

void to_json(json& j, const VolumeLocation& l) {
  j = json::object();
  PutString(j, "volume", l.volume);
  PutString(j, "path", l.path);
  PutString(j, "file", l.file);
}

void to_json(json& j, const RecentError& e) {
  j = {{"error", e.error},
       {"location", e.location},
       {"count", e.count},
       {"miniBatches", e.mini_batches},
       {"items", e.items}};
  PutString(j, "lastSeen", e.last_seen);
}

void from_json(const json& j, RecentError& e) {
  e = RecentError{};
  ReadString(j, "error", &e.error);
  ReadString(j, "location", &e.location);
  ReadInt(j, "count", &e.count);
  ReadInt(j, "miniBatches", &e.mini_batches);
  ReadInt(j, "items", &e.items);
  ReadString(j, "lastSeen", &e.last_seen);
}

void to_json(json& j, const JobStatus& s) {
  j = json::object();
  PutInt(j, "observedGeneration", s.observed_generation);
  PutString(j, "phase", s.phase);
  PutString(j, "reason", s.reason);
  if (!s.conditions.empty()) j["conditions"] = s.conditions;
  PutString(j, "startTime", s.start_time);
  PutString(j, "completionTime", s.completion_time);
  PutGroup(j, "miniBatches", s.mini_batches);
  PutGroup(j, "items", s.items);
  PutGroup(j, "nodes", s.nodes);
  PutGroup(j, "restarts", s.restarts);
  PutString(j, "progress", s.progress);
  PutString(j, "lastProgressLine", s.last_progress_line);
  if (!s.recent_errors.empty()) j["recentErrors"] = s.recent_errors;
  PutString(j, "eta", s.eta);
  PutString(j, "estimatedCompletionTime", s.estimated_completion_time);
  PutGroup(j, "output", s.output);
  PutString(j, "outputFile", s.output_file);
  PutGroup(j, "logs", s.logs);
  PutString(j, "message", s.message);
}

void from_json(const json& j, Condition& c) {
  c = Condition{};
  ReadString(j, "type", &c.type);
  ReadString(j, "status", &c.status);
  ReadString(j, "reason", &c.reason);
  ReadString(j, "message", &c.message);
  ReadString(j, "lastTransitionTime", &c.last_transition_time);
  ReadInt(j, "observedGeneration", &c.observed_generation);
}

void from_json(const json& j, MiniBatchCounts& c) {
  c = MiniBatchCounts{};
  ReadInt(j, "total", &c.total);
  ReadInt(j, "completed", &c.completed);
  ReadInt(j, "failed", &c.failed);
  ReadInt(j, "running", &c.running);
  ReadInt(j, "retried", &c.retried);
}

void from_json(const json& j, ItemCounts& c) {
  c = ItemCounts{};
  ReadInt(j, "total", &c.total);
  ReadInt(j, "succeeded", &c.succeeded);
  ReadInt(j, "failed", &c.failed);
}

void from_json(const json& j, NodeCounts& c) {
  c = NodeCounts{};
  ReadInt(j, "desired", &c.desired);
  ReadInt(j, "ready", &c.ready);
}

void from_json(const json& j, RestartCounts& c) {
  c = RestartCounts{};
  ReadInt(j, "coordinator", &c.coordinator);
  ReadInt(j, "workers", &c.workers);
}

void from_json(const json& j, VolumeLocation& l) {
  l = VolumeLocation{};
  ReadString(j, "volume", &l.volume);
  ReadString(j, "path", &l.path);
  ReadString(j, "file", &l.file);
}

void from_json(const json& j, JobStatus& s) {
  s = JobStatus{};
  ReadInt(j, "observedGeneration", &s.observed_generation);
  ReadString(j, "phase", &s.phase);
  ReadString(j, "reason", &s.reason);
  if (const json* conditions = Field(j, "conditions"); conditions && conditions->is_array()) {
    for (const json& item : *conditions) {
      Condition c = item.get<Condition>();
      if (!c.type.empty()) s.conditions.push_back(std::move(c));  // a typeless one means nothing
    }
  }
  ReadString(j, "startTime", &s.start_time);
  ReadString(j, "completionTime", &s.completion_time);
  ReadGroup(j, "miniBatches", &s.mini_batches);
  ReadGroup(j, "items", &s.items);
  ReadGroup(j, "nodes", &s.nodes);
  ReadGroup(j, "restarts", &s.restarts);
  ReadString(j, "progress", &s.progress);
  ReadString(j, "lastProgressLine", &s.last_progress_line);
  if (const json* errors = Field(j, "recentErrors"); errors && errors->is_array()) {
    for (const json& item : *errors) s.recent_errors.push_back(item.get<RecentError>());
  }
  ReadString(j, "eta", &s.eta);
  ReadString(j, "estimatedCompletionTime", &s.estimated_completion_time);
  ReadGroup(j, "output", &s.output);
  ReadString(j, "outputFile", &s.output_file);
  ReadGroup(j, "logs", &s.logs);
  ReadString(j, "message", &s.message);
}

json StatusMergePatch(const JobStatus& before, const JobStatus& after) {
  json diff = MergeDiff(json(before), json(after));
  if (diff.empty()) return json::object();
  return {{"status", std::move(diff)}};
}

std::string Rfc3339(rt::SystemTime t) { return rt::FormatRfc3339(t); }

bool IsTerminalPhase(std::string_view phase) {
  return phase == kPhaseSucceeded || phase == kPhaseFailed;
}

// ----- conditions -------------------------------------------------------------------------------

const Condition* FindCondition(const JobStatus& status, const std::string& type) {
  auto it = std::find_if(status.conditions.begin(), status.conditions.end(),
                         [&](const Condition& c) { return c.type == type; });
  return it == status.conditions.end() ? nullptr : &*it;
}

Condition* FindCondition(JobStatus& status, const std::string& type) {
  return const_cast<Condition*>(FindCondition(std::as_const(status), type));
}

bool SetCondition(JobStatus& status, Condition condition, rt::SystemTime now) {
  Condition* existing = FindCondition(status, condition.type);
  if (existing == nullptr) {
    condition.last_transition_time = Rfc3339(now);
    status.conditions.push_back(std::move(condition));
    return true;
  }
  const bool transition =
      existing->status != condition.status || existing->last_transition_time.empty();
  condition.last_transition_time = transition ? Rfc3339(now) : existing->last_transition_time;
  if (*existing == condition) return false;
  *existing = std::move(condition);
  return true;
}

bool ClearCondition(JobStatus& status, Condition condition, rt::SystemTime now) {
  const Condition* existing = FindCondition(status, condition.type);
  if (existing == nullptr || existing->status == kConditionFalse) return false;
  return SetCondition(status, std::move(condition), now);
}

// ----- the resource -----------------------------------------------------------------------------

bool ParallelRunJob::being_deleted() const {
  const json* ts = Field(metadata, "deletionTimestamp");
  return ts != nullptr && !ts->is_null();
}

bool ParallelRunJob::has_finalizer(const std::string& finalizer) const {
  const json* list = Field(metadata, "finalizers");
  if (list == nullptr || !list->is_array()) return false;
  return std::any_of(list->begin(), list->end(),
                     [&](const json& f) { return f.is_string() && f == finalizer; });
}

std::vector<std::string> ParallelRunJob::finalizers() const {
  std::vector<std::string> out;
  const json* list = Field(metadata, "finalizers");
  if (list == nullptr || !list->is_array()) return out;
  for (const json& f : *list) {
    if (f.is_string()) out.push_back(f.get<std::string>());
  }
  return out;
}

std::optional<int64_t> ParallelRunJob::ttl_seconds_after_finished() const {
  const json* ttl = Field(raw_spec, "ttlSecondsAfterFinished");
  if (ttl == nullptr || !ttl->is_number_integer()) return std::nullopt;
  return ttl->get<int64_t>();
}

std::string ParallelRunJob::key() const { return ns.empty() ? name : ns + "/" + name; }

rt::StatusOr<ParallelRunJob> ParseParallelRunJob(const json& object) {
  if (!object.is_object()) {
    return rt::InvalidArgumentError("a ParallelRunJob must be a JSON object, got " +
                                    std::string(object.type_name()));
  }
  const json* metadata = Field(object, "metadata");
  ParallelRunJob job;
  if (metadata != nullptr) ReadString(*metadata, "name", &job.name);
  if (job.name.empty()) return rt::InvalidArgumentError("a ParallelRunJob has no metadata.name");
  ReadString(*metadata, "namespace", &job.ns);
  ReadString(*metadata, "uid", &job.uid);
  ReadInt(*metadata, "generation", &job.generation);
  ReadString(*metadata, "resourceVersion", &job.resource_version);
  job.metadata = TrimJobMetadata(*metadata);
  if (const json* spec = Field(object, "spec"); spec != nullptr) job.raw_spec = *spec;
  if (const json* status = Field(object, "status"); status != nullptr) {
    job.status = status->get<JobStatus>();
  }
  return job;
}

void to_json(json& j, const ParallelRunJob& job) {
  json metadata = job.metadata.is_object() ? job.metadata : json::object();
  // The identity fields are the struct's (equal to metadata's in a parsed object).
  PutString(metadata, "name", job.name);
  PutString(metadata, "namespace", job.ns);
  PutString(metadata, "uid", job.uid);
  PutString(metadata, "resourceVersion", job.resource_version);
  PutInt(metadata, "generation", job.generation);
  j = {{"apiVersion", kApiVersion}, {"kind", kKind}, {"metadata", std::move(metadata)}};
  if (!job.raw_spec.is_null()) j["spec"] = job.raw_spec;
  j["status"] = job.status;
}

rt::StatusOr<rt::JobSpec> ParseSpec(const ParallelRunJob& job,
                                    std::vector<rt::FieldError>* errors) {
  json metadata = {{"name", job.name}};
  if (!job.ns.empty()) metadata["namespace"] = job.ns;
  if (!job.uid.empty()) metadata["uid"] = job.uid;
  json document = {{"apiVersion", kApiVersion}, {"kind", kKind}, {"metadata", metadata}};
  if (!job.raw_spec.is_null()) document["spec"] = job.raw_spec;
  // Cached objects hold valid UTF-8 (the API server and nlohmann's parser insist on it); replace
  // anyway so a hand-made object cannot make dump() throw.
  const std::string text = document.dump(-1, ' ', false, json::error_handler_t::replace);
  return rt::ParseJobSpec(text, std::string(kKind) + " " + job.key(), errors);
}

// ----- cache trimming ---------------------------------------------------------------------------

json TrimForCache(json object) {
  if (!object.is_object()) return object;
  json out = Take(object, {"apiVersion", "kind", "spec", "status"});
  if (auto it = object.find("metadata"); it != object.end()) {
    out["metadata"] = TrimJobMetadata(std::move(*it));
  }
  return out;
}

json TrimPodForCache(json pod) {
  if (!pod.is_object()) return pod;
  json out = Take(pod, {"apiVersion", "kind"});
  if (auto it = pod.find("metadata"); it != pod.end()) {
    out["metadata"] =
        Take(*it, {"name", "namespace", "uid", "deletionTimestamp", "resourceVersion"});
    if (auto labels = it->find("labels"); labels != it->end() && labels->is_object()) {
      json kept = Take(*labels, {kJobLabel, kRoleLabel});
      if (!kept.empty()) out["metadata"]["labels"] = std::move(kept);
    }
  }
  if (auto it = pod.find("spec"); it != pod.end()) {
    json spec = Take(*it, {"nodeName"});
    if (!spec.empty()) out["spec"] = std::move(spec);
  }
  if (auto it = pod.find("status"); it != pod.end() && it->is_object()) {
    json& status = *it;
    json trimmed = Take(status, {"phase", "podIP"});
    if (auto c = status.find("conditions"); c != status.end() && c->is_array()) {
      // Only a pod that is not scheduled says something the operator reports.
      json kept = json::array();
      for (json& cond : *c) {
        if (cond.is_object() && cond.value("type", "") == "PodScheduled" &&
            cond.value("status", "") == "False") {
          kept.push_back(Take(cond, {"type", "status", "reason", "message"}));
        }
      }
      if (!kept.empty()) trimmed["conditions"] = std::move(kept);
    }
    if (const json* cs = Field(status, "containerStatuses"); cs != nullptr) {
      trimmed["containerStatuses"] = TrimList(cs, {"name", "state"});
    }
    out["status"] = std::move(trimmed);
  }
  return out;
}

}  // namespace parallelrun::op::api
