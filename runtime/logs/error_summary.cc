#include "runtime/logs/error_summary.h"

namespace parallelrun::rt {

void to_json(nlohmann::json& j, const ErrorStat& v) {
  j = nlohmann::json{{"error", v.error}, {"location", v.location},
                     {"count", v.count}, {"mini_batches", v.mini_batches},
                     {"items", v.items}, {"last_seen", v.last_seen}};
}

void from_json(const nlohmann::json& j, ErrorStat& v) {
  const ErrorStat d;
  v.error = j.value("error", d.error);
  v.location = j.value("location", d.location);
  v.count = j.value("count", d.count);
  v.mini_batches = j.value("mini_batches", d.mini_batches);
  v.items = j.value("items", d.items);
  v.last_seen = j.value("last_seen", d.last_seen);
}

std::string FormatErrorSummaryLine(const ErrorSummaryEntry& e) {
  std::string line = FormatUtc(e.time, "%Y-%m-%d %H:%M:%S UTC");
  line += " node=" + e.node;
  if (!e.process.empty()) line += " process=" + e.process;
  if (e.mini_batch_id >= 0) {
    line += " mini_batch=" + std::to_string(e.mini_batch_id);
    line += " attempt=" + std::to_string(e.attempt);
  }
  line += " status=" + e.status;
  std::string error = e.error;
  for (char& c : error) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (!error.empty()) line += " error=" + error;
  if (!e.process.empty()) line += " (traceback: user/error/" + e.node + "/" + e.process + ".txt)";
  line += '\n';
  return line;
}

std::string DescribeErrorStat(const ErrorStat& s) {
  std::string text = s.error;
  if (!s.location.empty()) text += " at " + s.location;
  text += " (" + std::to_string(s.count) + " failed attempt" + (s.count == 1 ? "" : "s");
  if (s.mini_batches > 0) {
    text += ", " + std::to_string(s.mini_batches) + " mini-batch" +
            (s.mini_batches == 1 ? "" : "es") + ", " + std::to_string(s.items) + " item" +
            (s.items == 1 ? "" : "s");
  }
  return text + ")";
}

}  // namespace parallelrun::rt
