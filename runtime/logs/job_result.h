// The final result of a job (SPEC.md §5): `logs/job_result.txt` for people and the same fields as
// JSON in `<output>/.parallelrun/result.json` for programs (a re-run of a finished job reads it
// back and reports the same result).
//
// job_result.txt: the first line is `Succeeded` or `Failed: <Reason>`, then `key: value` lines
// (exit_code, reason, message, mini-batch and item counts, for a retryFrom run
// `mini_batches_carried_over` and `carried_over_from`, times, duration, output_file, look_first
// hints, `most_frequent_error` and one `recent_error` line per digest group: "<error> at
// <file:line> (<n> failed attempts, ...)"), then, when the job failed in init(), `traceback:` and
// the script's traceback indented by two spaces.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/logs/error_summary.h"

namespace parallelrun::rt {

struct JobResult {
  bool succeeded = false;
  std::string reason;   // condition reason: Completed, ErrorThresholdExceeded, ...
  std::string message;  // one paragraph; names the input, threshold or node concerned
  int exit_code = 0;    // 0, 1 or 42 (SPEC.md §4.1)
  int64_t mini_batches_total = 0;
  int64_t mini_batches_succeeded = 0;
  int64_t mini_batches_failed = 0;
  int64_t mini_batches_retried = 0;
  // retryFrom: mini-batches that completed in the earlier run and were not run again (they count
  // in mini_batches_succeeded and the item counts), and that run's output folder.
  int64_t mini_batches_carried_over = 0;
  std::string carried_over_from;
  int64_t items_total = 0;
  int64_t items_succeeded = 0;
  int64_t items_failed = 0;
  std::string start_time;       // ISO 8601 UTC
  std::string completion_time;  // ISO 8601 UTC
  double duration_s = 0;
  std::string output_file;  // empty when there is none (summary_only, or not assembled)
  std::string log_dir;
  std::vector<std::string> look_first;  // "logs/user/error.txt: one line per failed attempt"
  std::string traceback;                // InitFailed: the entry script's traceback
  std::string warning;                  // e.g. accepted part files that were missing at assembly
  // The error digest at the end: the most frequent user error (count 0: none) and the latest
  // distinct ones (at most 5), as in GET /v1/progress.
  ErrorStat most_frequent_error;
  std::vector<ErrorStat> recent_errors;
};

// The first line: "Succeeded" or "Failed: <reason>".
std::string JobResultHeadline(const JobResult& result);
std::string FormatJobResultText(const JobResult& result);

nlohmann::json JobResultToJson(const JobResult& result);
// Reads what JobResultToJson wrote; an error names the field that is missing or of the wrong type.
StatusOr<JobResult> JobResultFromJson(const nlohmann::json& j);

}  // namespace parallelrun::rt
