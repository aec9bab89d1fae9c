#include "runtime/logs/overview.h"

#include <cstdio>

#include "runtime/logs/log_layout.h"

namespace parallelrun::rt {

OverviewLog::OverviewLog(std::string log_dir, const Clock* clock,
                         std::function<void(const std::string&)> echo)
    : log_dir_(std::move(log_dir)), clock_(clock), echo_(std::move(echo)) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFor(clock_->Now());
}

std::string OverviewLog::FormatLine(SystemTime t, std::string_view text) {
  std::string line = FormatUtc(t, "%Y-%m-%d %H:%M:%S UTC: ");
  line.append(text);
  return line;
}

void OverviewLog::OpenFor(SystemTime t) {
  day_ = FormatUtc(t, "%Y%m%d");
  auto file = AppendFile::Open(JoinPath(log_dir_, OverviewFileName(t)));
  if (file.ok()) {
    file_ = std::move(*file);
  } else {
    file_.Close();
    if (!reported_error_) {
      std::fprintf(stderr, "parallelrun: %s\n", file.status().message().c_str());
      reported_error_ = true;
    }
  }
}

std::string OverviewLog::Write(std::string_view text) {
  std::string line;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SystemTime now = clock_->Now();
    if (FormatUtc(now, "%Y%m%d") != day_) OpenFor(now);
    line = FormatLine(now, text);
    if (file_.is_open()) {
      Status st = file_.Append(line + "\n");
      if (!st.ok() && !reported_error_) {
        std::fprintf(stderr, "parallelrun: %s\n", st.message().c_str());
        reported_error_ = true;
      }
    }
    // Under the lock so echoed lines keep the file's order.
    if (echo_) echo_(line);
  }
  return line;
}

std::string OverviewLog::current_path() const {
  std::lock_guard<std::mutex> lock(mu_);
  return file_.path();
}

}  // namespace parallelrun::rt
