#include "runtime/logs/error_summary.h"

namespace parallelrun::rt {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ErrorStat, error, location, count, mini_batches,
                                                items, last_seen)

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
