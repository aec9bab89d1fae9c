#include "runtime/protocol/messages.h"

namespace parallelrun::rt::protocol {

// Missing fields take their defaults, so older and newer peers interoperate; a field of the
// wrong type throws nlohmann::json::type_error, which the HTTP adapter turns into a 400.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RegisterRequest, node, pid)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RegisterResponse, spec, code_dir, input_dirs,
                                                side_input_dirs, output_dir, log_dir, parts_dir,
                                                arguments, lease_seconds)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Lease, mini_batch_id, attempt, input_name,
                                                input_type, files, file, format, header, header_end,
                                                begin, end, items, part_file)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(LeaseRef, mini_batch_id, attempt)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(LeaseRequest, node, max, renew)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(LeaseResponse, leases, cancel, done, stop,
                                                retry_after_ms)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AttemptResult, mini_batch_id, attempt, process,
                                                pid, status, total, succeeded, failed, start_utc,
                                                elapsed_s, cpu_s, run_s, error, detail)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(WorkerEvent, process, pid, kind, error, detail)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ResultsRequest, node, results, events)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ResultsResponse, accepted, stop)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MiniBatchCounts, total, completed, failed, running,
                                                retried)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ItemCounts, total, succeeded, failed)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(NodeCounts, desired, ready)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Progress, phase, reason, message, startTime,
                                                completionTime, miniBatches, items, nodes, progress,
                                                lastProgressLine, eta, estimatedCompletionTime,
                                                outputFile, logs, planned, exitCode)

}  // namespace parallelrun::rt::protocol
