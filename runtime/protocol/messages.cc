#include "runtime/protocol/messages.h"

namespace parallelrun::rt::protocol {

// nlohmann's NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT defines the functions `inline`, so
// this file would emit none of them for the out-of-line declarations in messages.h; this is the
// same expansion without `inline`.
#define PR_DEFINE_JSON_WITH_DEFAULT(Type, ...)                                              \
  void to_json(nlohmann::json& nlohmann_json_j, const Type& nlohmann_json_t) {              \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NLOHMANN_JSON_TO, __VA_ARGS__))                \
  }                                                                                         \
  void from_json(const nlohmann::json& nlohmann_json_j, Type& nlohmann_json_t) {            \
    const Type nlohmann_json_default_obj{};                                                 \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NLOHMANN_JSON_FROM_WITH_DEFAULT, __VA_ARGS__)) \
  }

// Missing fields take their defaults, so older and newer peers interoperate; a field of the
// wrong type throws nlohmann::json::type_error, which the HTTP adapter turns into a 400.
PR_DEFINE_JSON_WITH_DEFAULT(RegisterRequest, node, pid, held)
PR_DEFINE_JSON_WITH_DEFAULT(RegisterResponse, spec, code_dir, input_dirs, side_input_dirs,
                            output_dir, log_dir, parts_dir, arguments, lease_seconds)
PR_DEFINE_JSON_WITH_DEFAULT(Lease, mini_batch_id, attempt, input_name, input_type, files, file,
                            format, header, header_end, begin, end, items, part_file, file_size,
                            file_mtime_ns)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseRef, mini_batch_id, attempt)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseRequest, node, max, renew)
PR_DEFINE_JSON_WITH_DEFAULT(LeaseResponse, leases, cancel, done, stop, retry_after_ms)
PR_DEFINE_JSON_WITH_DEFAULT(AttemptResult, mini_batch_id, attempt, process, pid, status, total,
                            succeeded, failed, start_utc, elapsed_s, cpu_s, run_s, error, detail,
                            part_bytes, part_crc32)
PR_DEFINE_JSON_WITH_DEFAULT(WorkerEvent, process, pid, kind, error, detail)
PR_DEFINE_JSON_WITH_DEFAULT(ResultsRequest, node, results, events, released)
PR_DEFINE_JSON_WITH_DEFAULT(ResultsResponse, accepted, stop)
PR_DEFINE_JSON_WITH_DEFAULT(MiniBatchCounts, total, completed, failed, running, retried)
PR_DEFINE_JSON_WITH_DEFAULT(ItemCounts, total, succeeded, failed)
PR_DEFINE_JSON_WITH_DEFAULT(NodeCounts, desired, ready)
PR_DEFINE_JSON_WITH_DEFAULT(Progress, phase, reason, message, startTime, completionTime,
                            miniBatches, items, nodes, progress, lastProgressLine, eta,
                            estimatedCompletionTime, outputFile, logs, planned, exitCode)

}  // namespace parallelrun::rt::protocol
