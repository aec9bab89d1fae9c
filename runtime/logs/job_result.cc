#include "runtime/logs/job_result.h"

#include "runtime/base/time_util.h"

namespace parallelrun::rt {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    JobResult, succeeded, reason, message, exit_code, mini_batches_total, mini_batches_succeeded,
    mini_batches_failed, mini_batches_retried, mini_batches_carried_over, carried_over_from,
    items_total, items_succeeded, items_failed, start_time, completion_time, duration_s,
    output_file, log_dir, look_first, traceback, warning, most_frequent_error, recent_errors)

std::string JobResultHeadline(const JobResult& result) {
  return result.succeeded ? "Succeeded" : "Failed: " + result.reason;
}

namespace {

// Keeps each `key: value` on one line whatever the message holds.
std::string OneLine(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

std::string FormatJobResultText(const JobResult& r) {
  std::string t = JobResultHeadline(r) + "\n";
  auto kv = [&t](const char* key, const std::string& value) {
    t += key;
    t += ": ";
    t += OneLine(value);
    t += '\n';
  };
  kv("exit_code", std::to_string(r.exit_code));
  kv("reason", r.reason);
  if (!r.message.empty()) kv("message", r.message);
  kv("mini_batches_total", std::to_string(r.mini_batches_total));
  kv("mini_batches_succeeded", std::to_string(r.mini_batches_succeeded));
  kv("mini_batches_failed", std::to_string(r.mini_batches_failed));
  kv("mini_batches_retried", std::to_string(r.mini_batches_retried));
  if (!r.carried_over_from.empty()) {
    kv("mini_batches_carried_over", std::to_string(r.mini_batches_carried_over));
    kv("carried_over_from", r.carried_over_from);
  }
  kv("items_total", std::to_string(r.items_total));
  kv("items_succeeded", std::to_string(r.items_succeeded));
  kv("items_failed", std::to_string(r.items_failed));
  kv("start_time", r.start_time);
  kv("completion_time", r.completion_time);
  kv("duration", FormatDuration(r.duration_s));
  kv("output_file", r.output_file.empty() ? "none" : r.output_file);
  kv("log_dir", r.log_dir);
  if (!r.warning.empty()) kv("warning", r.warning);
  for (const auto& hint : r.look_first) kv("look_first", hint);
  if (r.most_frequent_error.count > 0) {
    kv("most_frequent_error", DescribeErrorStat(r.most_frequent_error));
  }
  for (const auto& e : r.recent_errors) {
    kv("recent_error", e.last_seen + " " + DescribeErrorStat(e));
  }
  if (!r.traceback.empty()) {
    t += "traceback:\n";
    size_t start = 0;
    while (start < r.traceback.size()) {
      size_t end = r.traceback.find('\n', start);
      if (end == std::string::npos) end = r.traceback.size();
      t += "  ";
      t.append(r.traceback, start, end - start);
      t += '\n';
      start = end + 1;
    }
  }
  return t;
}

nlohmann::json JobResultToJson(const JobResult& result) { return result; }

StatusOr<JobResult> JobResultFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgumentError("job result: expected a JSON object");
  try {
    return j.get<JobResult>();
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(std::string("job result: ") + e.what());
  }
}

}  // namespace parallelrun::rt
