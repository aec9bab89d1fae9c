// The error digest: the user errors of failed attempts, grouped, so that the job's status can name
// them (issue 15, docs/why-did-my-job-fail.md). Each group is one error text at one place in the
// user's code; it counts the failed attempts, the distinct mini-batches and their items it hit,
// and when it was last seen. The coordinator feeds it every failed attempt (RUN_EXCEPTION,
// RUN_TIMEOUT, WORKER_DIED, ...) and every failed init(); it serves the latest distinct groups
// (GET /v1/progress `recentErrors`, the operator's status.recentErrors) and the most frequent one
// (status.message, the Failed condition, job_result.txt).
//
// Not thread-safe: the coordinator calls it under its lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "runtime/logs/error_summary.h"
#include "runtime/logs/job_result.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

// The deepest frame of the user's code in a Python traceback (the last "Traceback (most recent
// call last):" block, so the exception that was raised last), as "file:line". A frame counts as
// the user's when its file lies under `code_dir` (then the file is given relative to it); when no
// frame does, the deepest frame outside Python's own library folders (lib/pythonX.Y,
// site-packages, dist-packages) is taken with its full path. Empty when the text holds no frame
// (a native entry point, a timeout, a worker that died).
std::string DeepestUserFrame(const std::string& traceback, const std::string& code_dir);

// How many of the latest distinct errors the status and the result carry.
constexpr size_t kRecentErrors = 5;

class ErrorDigest {
 public:
  // Groups kept; when a new group would exceed it, the least frequent (then the least recently
  // seen) group is dropped, so a job with a different message per item stays bounded.
  static constexpr size_t kMaxGroups = 256;
  // Longest error text kept (a status field, not a log).
  static constexpr size_t kMaxErrorChars = 500;

  explicit ErrorDigest(std::string code_dir) : code_dir_(std::move(code_dir)) {}

  // One failed attempt: `error` is its one-line error, `detail` its traceback or longer text,
  // `mini_batch_id` < 0 for failures not tied to a mini-batch (init()), `items` the items of the
  // mini-batch (counted once per mini-batch and group), `when` ISO 8601 UTC.
  void Add(const std::string& error, const std::string& detail, int64_t mini_batch_id,
           int64_t items, const std::string& when);

  // The latest distinct errors, most recently seen first, at most `max`.
  std::vector<ErrorStat> Recent(size_t max = kRecentErrors) const;
  // The group with the most failed attempts (ties: the most recently seen); count 0 when empty.
  ErrorStat MostFrequent() const;
  bool empty() const { return groups_.empty(); }

 private:
  struct Group {
    ErrorStat stat;
    uint64_t seq = 0;  // order of the last sighting
    std::set<int64_t> mini_batches;
  };
  void DropOneGroup();

  std::string code_dir_;
  uint64_t seq_ = 0;
  std::map<std::pair<std::string, std::string>, Group> groups_;  // {error, location} -> group
};

// The digest's share of the final result and of GET /v1/progress (recentErrors: at most 5).
void PutErrors(const ErrorDigest& digest, JobResult* result);
void PutErrors(const JobResult& result, protocol::Progress* progress);
void PutErrors(const ErrorDigest& digest, protocol::Progress* progress);
// "; most frequent error: <DescribeErrorStat>" for a failed job's message; empty when no error
// was recorded.
std::string MostFrequentErrorSuffix(const ErrorDigest& digest);

}  // namespace parallelrun::rt
