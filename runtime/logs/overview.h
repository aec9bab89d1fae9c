// `logs/job_progress_overview.<yyyymmddhh>.txt` (SPEC.md §5): the human-readable story of a job,
// one timestamped line per event ("2026-11-23 11:05:08 UTC: Processed 40 of 100 mini batches ...").
//
// Guarantees: a new file is started by every OverviewLog (each coordinator start) and whenever a
// line is written on a later UTC day than the open file's; a coordinator restarted within the
// same UTC hour appends to that hour's file (the name has no finer field). Lines are written
// through, so `tail -f` works. Each line is also passed to `echo` (the CLI prints it, a pod log
// shows it). Write errors never fail the job: the first one is reported on stderr.
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"

namespace parallelrun::rt {

class OverviewLog {
 public:
  OverviewLog(std::string log_dir, const Clock* clock,
              std::function<void(const std::string&)> echo);
  OverviewLog(const OverviewLog&) = delete;
  OverviewLog& operator=(const OverviewLog&) = delete;

  // Writes "YYYY-MM-DD HH:MM:SS UTC: <text>" and returns that line.
  std::string Write(std::string_view text);
  // The file the last line went to.
  std::string current_path() const;

  // "2026-11-23 11:05:08 UTC: <text>" for time `t`.
  static std::string FormatLine(SystemTime t, std::string_view text);

 private:
  void OpenFor(SystemTime t);

  const std::string log_dir_;
  const Clock* const clock_;
  const std::function<void(const std::string&)> echo_;
  mutable std::mutex mu_;
  AppendFile file_;
  std::string day_;  // yyyymmdd of the open file
  bool reported_error_ = false;
};

}  // namespace parallelrun::rt
