#include "runtime/logs/error_summary.h"

namespace parallelrun::rt {

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

}  // namespace parallelrun::rt
