#include "runtime/protocol/messages.h"

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace parallelrun::rt::protocol {
namespace {

// A JSON integer that does not fit its field (attempt 2^32+1 must not wrap to 1). A
// nlohmann::json::exception, so the HTTP adapter answers 400 with the message, like a type error.
class FieldRangeError : public nlohmann::json::exception {
 public:
  explicit FieldRangeError(const std::string& message) : exception(406, message.c_str()) {}
};

// One field of a message: missing takes the default; an integer field must hold a JSON integer
// within its C++ type's range.
template <typename T>
void ReadField(const nlohmann::json& j, const char* name, T& out, const T& fallback) {
  out = j.value(name, fallback);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    auto it = j.find(name);
    if (it == j.end()) return;
    const bool fits =
        it->is_number_unsigned()
            ? it->template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
        : it->is_number_integer()
            ? it->template get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                  it->template get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
            : false;
    if (!fits) {
      throw FieldRangeError(std::string(name) + ": got " + it->dump() +
                            ", expected an integer from " +
                            std::to_string(std::numeric_limits<T>::min()) + " to " +
                            std::to_string(std::numeric_limits<T>::max()));
    }
  }
}

}  // namespace

// nlohmann's NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT defines the functions `inline`, so
// this file would emit none of them for the out-of-line declarations in messages.h; this is the
// same expansion without `inline`, and with integer fields range-checked (ReadField).
#define PR_JSON_FROM(v1) \
  ReadField(nlohmann_json_j, #v1, nlohmann_json_t.v1, nlohmann_json_default_obj.v1);
#define PR_DEFINE_JSON_WITH_DEFAULT(Type, ...)                                   \
  void to_json(nlohmann::json& nlohmann_json_j, const Type& nlohmann_json_t) {   \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NLOHMANN_JSON_TO, __VA_ARGS__))     \
  }                                                                              \
  void from_json(const nlohmann::json& nlohmann_json_j, Type& nlohmann_json_t) { \
    const Type nlohmann_json_default_obj{};                                      \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(PR_JSON_FROM, __VA_ARGS__))         \
  }

// Missing fields take their defaults, so older and newer peers interoperate; a field of the
// wrong type throws nlohmann::json::type_error, which the HTTP adapter turns into a 400.
PR_DEFINE_JSON_WITH_DEFAULT(RegisterRequest, node, pid, held)
PR_DEFINE_JSON_WITH_DEFAULT(RegisterResponse, spec, code_dir, input_dirs, side_input_dirs,
                            output_dir, log_dir, parts_dir, arguments, lease_seconds, ended)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseSegment, file, format, header_end, ranges, file_size,
                            file_mtime_ns)

// A lease is the largest message the coordinator writes and the agent reads for every mini-batch:
// besides the fields that name it, only those that differ from their defaults are written (a file
// lease carries none of the tabular fields, and the reverse); from_json reads a missing field as
// its default, so the lease read back is the one written.
#define PR_JSON_TO_UNLESS_DEFAULT(v1)                        \
  if (!(nlohmann_json_t.v1 == nlohmann_json_default_obj.v1)) \
    nlohmann_json_j[#v1] = nlohmann_json_t.v1;
void to_json(nlohmann::json& nlohmann_json_j, const Lease& nlohmann_json_t) {
  static const Lease nlohmann_json_default_obj{};
  nlohmann_json_j = nlohmann::json::object();
  NLOHMANN_JSON_EXPAND(
      NLOHMANN_JSON_PASTE(NLOHMANN_JSON_TO, mini_batch_id, attempt, input_name, input_type, items))
  NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(
      PR_JSON_TO_UNLESS_DEFAULT, files, file, format, header, header_end, begin, end, part_file,
      file_size, file_mtime_ns, file_sizes, file_mtimes_ns, partition_key_value, segments))
}
void from_json(const nlohmann::json& nlohmann_json_j, Lease& nlohmann_json_t) {
  static const Lease nlohmann_json_default_obj{};
  NLOHMANN_JSON_EXPAND(
      NLOHMANN_JSON_PASTE(PR_JSON_FROM, mini_batch_id, attempt, input_name, input_type, files, file,
                          format, header, header_end, begin, end, items, part_file, file_size,
                          file_mtime_ns, file_sizes, file_mtimes_ns, partition_key_value, segments))
}
PR_DEFINE_JSON_WITH_DEFAULT(LeaseRef, mini_batch_id, attempt)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseRequest, node, max, renew)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseResponse, leases, cancel, done, stop, retry_after_ms)
PR_DEFINE_JSON_WITH_DEFAULT(AttemptResult, mini_batch_id, attempt, process, pid, status, total,
                            succeeded, failed, start_utc, elapsed_s, cpu_s, run_s, error, detail,
                            part_bytes, part_crc32)
PR_DEFINE_JSON_WITH_DEFAULT(WorkerEvent, process, pid, kind, error, detail)

// The optional `lease` of a report and of its answer: written only when present; read when present
// and not null.
template <typename T>
void ReadOptional(const nlohmann::json& j, const char* name, std::optional<T>& out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    out.reset();
    return;
  }
  out = it->template get<T>();
}

void to_json(nlohmann::json& j, const ResultsRequest& v) {
  j = nlohmann::json{
      {"node", v.node}, {"results", v.results}, {"events", v.events}, {"released", v.released}};
  if (v.lease) {
    j["lease"] = nlohmann::json{{"max", v.lease->max}, {"renew", v.lease->renew}};
  }
}
void from_json(const nlohmann::json& j, ResultsRequest& v) {
  const ResultsRequest d{};
  ReadField(j, "node", v.node, d.node);
  ReadField(j, "results", v.results, d.results);
  ReadField(j, "events", v.events, d.events);
  ReadField(j, "released", v.released, d.released);
  ReadOptional(j, "lease", v.lease);
  if (v.lease) v.lease->node = v.node;  // the report's node, whatever the lease part says
}
void to_json(nlohmann::json& j, const ResultsResponse& v) {
  j = nlohmann::json{
      {"accepted", v.accepted}, {"refused", v.refused}, {"stop", v.stop}, {"done", v.done}};
  if (v.lease) j["lease"] = *v.lease;
}
void from_json(const nlohmann::json& j, ResultsResponse& v) {
  const ResultsResponse d{};
  ReadField(j, "accepted", v.accepted, d.accepted);
  ReadField(j, "refused", v.refused, d.refused);
  ReadField(j, "stop", v.stop, d.stop);
  ReadField(j, "done", v.done, d.done);
  ReadOptional(j, "lease", v.lease);
}
PR_DEFINE_JSON_WITH_DEFAULT(MiniBatchCounts, total, completed, failed, running, retried)
PR_DEFINE_JSON_WITH_DEFAULT(ItemCounts, total, succeeded, failed)
PR_DEFINE_JSON_WITH_DEFAULT(NodeCounts, desired, ready)
PR_DEFINE_JSON_WITH_DEFAULT(ErrorCount, error, location, count, miniBatches, items, lastSeen)
PR_DEFINE_JSON_WITH_DEFAULT(Progress, phase, reason, message, startTime, completionTime,
                            miniBatches, items, nodes, progress, lastProgressLine, eta,
                            estimatedCompletionTime, outputFile, logs, planned, exitCode,
                            recentErrors, mostFrequentError)

}  // namespace parallelrun::rt::protocol
