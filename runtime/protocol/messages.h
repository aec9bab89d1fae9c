// Coordinator ⇄ agent messages (HTTP+JSON, SPEC.md §4.1). Every request carries the run's bearer
// token. Endpoints (all JSON bodies):
//
//   POST /v1/register  RegisterRequest  -> RegisterResponse   (an agent joins)
//   POST /v1/lease     LeaseRequest     -> LeaseResponse      (renew running leases, get new work)
//   POST /v1/results   ResultsRequest   -> ResultsResponse    (attempt outcomes, worker events,
//                                                               leases given back; and, when
//                                                               the request carries `lease`, the
//                                                               lease call's answer too)
//   GET  /v1/progress                   -> Progress           (status fields of SPEC.md §6)
//
// Agents lease several mini-batches per request and report results in batches, so short
// mini-batches are not dominated by HTTP round trips.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parallelrun::rt::protocol {

struct LeaseRef {
  int64_t mini_batch_id = 0;
  int attempt = 1;
};

struct RegisterRequest {
  std::string node;  // node name (pod IP; locally 127.0.0.<i+1>)
  int64_t pid = 0;
  // Attempts this agent runs, has queued, or finished without its result accepted yet (non-empty
  // when it registers again after the coordinator was unreachable): a restarted coordinator
  // lets it keep them, and gives back at once, without counting a try, what the node had before
  // the restart and no longer holds.
  std::vector<LeaseRef> held;
};

// Everything an agent needs to run workers: it never reads the manifest itself.
struct RegisterResponse {
  nlohmann::json spec;  // ToJson(JobSpec)
  std::string code_dir;
  std::map<std::string, std::string> input_dirs;       // input name -> folder
  std::map<std::string, std::string> side_input_dirs;  // side input name -> folder
  std::string output_dir;
  std::string log_dir;                 // <output>/logs
  std::string parts_dir;               // <output>/.parallelrun/parts
  std::vector<std::string> arguments;  // expanded
  int lease_seconds = 90;              // runInvocationTimeout + 30
  // The coordinator runs no job: it finished before, or was refused (OutputInUse, ...). The agent
  // has nothing to do and writes nothing in the output folder (an older agent ignores this and
  // hears `done` or `stop` on its first lease call instead).
  bool ended = false;
};

// Tabular with partition keys: the byte ranges of one file that hold a partition's rows.
struct LeaseSegment {
  std::string file;  // absolute path
  std::string format;
  int64_t header_end = 0;
  std::vector<std::vector<int64_t>> ranges;  // [begin, end) pairs
  int64_t file_size = -1;
  int64_t file_mtime_ns = -1;
  bool operator==(const LeaseSegment&) const = default;
};

// One leased attempt. `attempt` numbers from 1; (mini_batch_id, attempt) fences results.
struct Lease {
  int64_t mini_batch_id = 0;
  int attempt = 1;
  std::string input_name;
  std::string input_type;  // "file" | "tabular"
  // file: absolute paths of the items.
  std::vector<std::string> files;
  // tabular: absolute path, format ("csv" | "jsonl"), csv header flag, byte ranges.
  std::string file;
  std::string format;
  bool header = true;
  int64_t header_end = 0;
  int64_t begin = 0;
  int64_t end = 0;
  int64_t items = 0;
  std::string part_file;  // where the worker writes its rows; empty for summary_only
  // tabular: the file's size and mtime (ns since the epoch) when it was planned; the agent fails
  // the attempt when the file differs now (-1: not recorded, e.g. a plan from an older version).
  int64_t file_size = -1;
  int64_t file_mtime_ns = -1;
  // file: each file's size and mtime when planned, in `files` order (empty: not recorded; -1:
  // the file could not be stat'ed then); the agent fails the attempt when one differs now.
  std::vector<int64_t> file_sizes;
  std::vector<int64_t> file_mtimes_ns;
  // With spec.partitionKeys: [key, value] pairs in partitionKeys order; and (tabular) the
  // partition's rows as segments, used instead of file/header_end/begin/end.
  std::vector<std::vector<std::string>> partition_key_value;
  std::vector<LeaseSegment> segments;
};

struct LeaseRequest {
  std::string node;
  int max = 0;                  // how many new leases the agent can take now (0 = renew only)
  std::vector<LeaseRef> renew;  // attempts still running on this node
};

struct LeaseResponse {
  std::vector<Lease> leases;
  std::vector<LeaseRef> cancel;  // running attempts the agent must stop (job ending, fenced)
  bool done = false;             // no more work will come: finish running work and exit
  bool stop = false;             // stop now: cancel everything and exit
  int retry_after_ms = 0;        // no work now but more may come (retries, planning)
};

// Outcome of one attempt. status: RUN_DONE, RUN_EXCEPTION, RUN_TIMEOUT, RUN_WRONG_TYPE,
// WORKER_DIED, CANCELLED, LEASE_EXPIRED.
struct AttemptResult {
  int64_t mini_batch_id = 0;
  int attempt = 1;
  std::string process;  // process000
  int64_t pid = 0;
  std::string status;
  int64_t total = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  std::string start_utc;  // ISO 8601
  double elapsed_s = 0;
  double cpu_s = 0;
  double run_s = 0;
  std::string error;   // one line
  std::string detail;  // traceback or longer text
  // RUN_DONE with a part file: its size and CRC-32 (runtime/output/part_file.h) as the agent read
  // them right after the worker wrote it; the coordinator journals them and the assembly checks
  // the part against them. -1: no part file (or an agent that predates the check).
  int64_t part_bytes = -1;
  uint32_t part_crc32 = 0;
};

// Worker life events that are not tied to a mini-batch. kind: INIT_FAILED, INIT_TIMEOUT,
// WORKER_STARTED, WORKER_EXITED, NODE_GAVE_UP (this node stops starting workers).
struct WorkerEvent {
  std::string process;
  int64_t pid = 0;
  std::string kind;
  std::string error;
  std::string detail;
};

struct ResultsRequest {
  std::string node;
  std::vector<AttemptResult> results;
  std::vector<WorkerEvent> events;
  // Leases given back unrun (an agent stopping on SIGTERM): queued again at once, without
  // counting a try and without waiting for the lease to expire. Only this node's live attempts
  // are affected; anything else is ignored.
  std::vector<LeaseRef> released;
  // A lease call in the same round trip (its `node` is the report's): the coordinator records the
  // report first (durably), then answers the lease part in ResultsResponse.lease. Such a request is
  // never answered 409: refused results come back in `refused` with the lease answer. A coordinator
  // that predates this ignores it and answers no `lease`: the agent then makes the lease call.
  std::optional<LeaseRequest> lease;
};

// Fencing: a result counts only when the node reporting it holds the lease of that very attempt.
// Results that do not are `refused` (never counted; the agent drops them); when every result of a
// request is refused the reply is 409 (with this body and a `reason`).
struct ResultsResponse {
  std::vector<LeaseRef> accepted;  // results recorded durably (journal fsync'd)
  std::vector<LeaseRef> refused;   // results of attempts this node does not hold
  bool stop = false;
  // The job has ended normally (as LeaseResponse.done): no more work will come; finish running
  // work and exit. Set on the answer to the report that ended the job, so its agent need not wait
  // for its next lease call to hear it, and on reports after such an end (with `stop` too, for
  // agents that predate `done` here: a newer agent takes `done` and ignores that `stop`).
  bool done = false;
  // The answer to the request's `lease` (absent when it asked none, or the lease part failed after
  // the report was recorded: the agent asks again).
  std::optional<LeaseResponse> lease;
};

struct MiniBatchCounts {
  int64_t total = 0, completed = 0, failed = 0, running = 0, retried = 0;
};
struct ItemCounts {
  int64_t total = 0, succeeded = 0, failed = 0;
};
struct NodeCounts {
  int64_t desired = 0, ready = 0;
};

// One group of the coordinator's error digest (runtime/coordinator/error_digest.h); the items of
// the ParallelRunJob's status.recentErrors.
struct ErrorCount {
  std::string error;        // the user's error, one line: "ValueError: model returned NaN"
  std::string location;     // deepest frame of the user's code, "score.py:7"; empty when unknown
  int64_t count = 0;        // failed attempts with this error at this location
  int64_t miniBatches = 0;  // distinct mini-batches it hit
  int64_t items = 0;        // items of those mini-batches
  std::string lastSeen;     // RFC 3339 UTC
};

// Field names are exactly those of the ParallelRunJob status (SPEC.md §6).
struct Progress {
  std::string phase;   // Pending | Running | Succeeded | Failed
  std::string reason;  // for Failed / Succeeded: condition reason
  std::string message;
  std::string startTime;
  std::string completionTime;
  MiniBatchCounts miniBatches;
  ItemCounts items;
  NodeCounts nodes;
  std::string progress;  // "<completed>/<total>"
  std::string lastProgressLine;
  std::string eta;  // H:MM:SS
  std::string estimatedCompletionTime;
  std::string outputFile;
  std::string logs;
  bool planned = false;  // the plan is complete (totals are final)
  int exitCode = -1;     // set once the job ended
  // The latest distinct user errors (most recent first, at most 5) and the most frequent one
  // (count 0: none); kept after the end.
  std::vector<ErrorCount> recentErrors;
  ErrorCount mostFrequentError;
};

void to_json(nlohmann::json& j, const RegisterRequest& v);
void from_json(const nlohmann::json& j, RegisterRequest& v);
void to_json(nlohmann::json& j, const RegisterResponse& v);
void from_json(const nlohmann::json& j, RegisterResponse& v);
void to_json(nlohmann::json& j, const LeaseSegment& v);
void from_json(const nlohmann::json& j, LeaseSegment& v);
void to_json(nlohmann::json& j, const Lease& v);
void from_json(const nlohmann::json& j, Lease& v);
void to_json(nlohmann::json& j, const LeaseRef& v);
void from_json(const nlohmann::json& j, LeaseRef& v);
void to_json(nlohmann::json& j, const LeaseRequest& v);
void from_json(const nlohmann::json& j, LeaseRequest& v);
void to_json(nlohmann::json& j, const LeaseResponse& v);
void from_json(const nlohmann::json& j, LeaseResponse& v);
void to_json(nlohmann::json& j, const AttemptResult& v);
void from_json(const nlohmann::json& j, AttemptResult& v);
void to_json(nlohmann::json& j, const WorkerEvent& v);
void from_json(const nlohmann::json& j, WorkerEvent& v);
void to_json(nlohmann::json& j, const ResultsRequest& v);
void from_json(const nlohmann::json& j, ResultsRequest& v);
void to_json(nlohmann::json& j, const ResultsResponse& v);
void from_json(const nlohmann::json& j, ResultsResponse& v);
void to_json(nlohmann::json& j, const MiniBatchCounts& v);
void from_json(const nlohmann::json& j, MiniBatchCounts& v);
void to_json(nlohmann::json& j, const ItemCounts& v);
void from_json(const nlohmann::json& j, ItemCounts& v);
void to_json(nlohmann::json& j, const NodeCounts& v);
void from_json(const nlohmann::json& j, NodeCounts& v);
void to_json(nlohmann::json& j, const ErrorCount& v);
void from_json(const nlohmann::json& j, ErrorCount& v);
void to_json(nlohmann::json& j, const Progress& v);
void from_json(const nlohmann::json& j, Progress& v);

}  // namespace parallelrun::rt::protocol
