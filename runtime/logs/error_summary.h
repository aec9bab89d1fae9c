// Lines of `logs/user/error.txt` (SPEC.md §5): a summary of user-code errors, one line per failed
// attempt or failed init(), pointing at the process's full traceback file.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/base/time_util.h"

namespace parallelrun::rt {

struct ErrorSummaryEntry {
  SystemTime time;
  std::string node;
  std::string process;         // may be empty (LEASE_EXPIRED: the node stopped answering)
  int64_t mini_batch_id = -1;  // -1: not tied to a mini-batch (init failures)
  int attempt = 0;
  std::string status;
  std::string error;  // one line
};

// "2026-11-23 11:05:08 UTC node=127.0.0.1 process=process000 mini_batch=12 attempt=2
//  status=RUN_EXCEPTION error=ValueError: bad row (traceback: user/error/127.0.0.1/process000.txt)"
// on one line, LF-terminated.
std::string FormatErrorSummaryLine(const ErrorSummaryEntry& entry);

// One group of the coordinator's error digest (runtime/coordinator/error_digest.h): one error text
// at one place in the user's code.
struct ErrorStat {
  std::string error;         // "ValueError: model returned NaN" (one line)
  std::string location;      // deepest frame of the user's code, "score.py:7"; may be empty
  int64_t count = 0;         // failed attempts
  int64_t mini_batches = 0;  // distinct mini-batches hit
  int64_t items = 0;         // items of those mini-batches
  std::string last_seen;     // ISO 8601 UTC
};
void to_json(nlohmann::json& j, const ErrorStat& v);
void from_json(const nlohmann::json& j, ErrorStat& v);
// "ValueError: model returned NaN at score.py:7 (5 failed attempts, 5 mini-batches, 10 items)"
std::string DescribeErrorStat(const ErrorStat& stat);

}  // namespace parallelrun::rt
