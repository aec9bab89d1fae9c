// AttemptLog: the one writer of what the coordinator decides about attempts. One decision (a
// lease, a result, an expired or given-back lease, a carried-over mini-batch) is a journal line
// (.parallelrun/journal, the truth a restarted coordinator replays), maybe a report row
// (logs/sys/job_report/processed_mini-batches.csv) and maybe an error-summary line
// (logs/user/error.txt). A Batch collects the records of one request or tick; Write writes them.
//
// Order and failure policy, the same for every decision:
// 1. the journal lines, in one append;
// 2. then the report rows, in one append, in the same order as their journal lines
//    (report_repair.h rebuilds the rows a crash cut off from the journal's last records, so the
//    report must never hold a row the journal does not);
// 3. then the error-summary lines.
// When the journal append fails nothing else is written and Write returns the journal's error, so
// that the caller does not acknowledge what is not recorded (the coordinator answers 500 to an
// agent's report, and ends the job with DiskFull when the disk is full). The report and the error
// summary are derived files: a failed append there is logged and not returned (the report's rows
// are rebuilt from the journal on resume). Durability is separate: Write returns the journal offset
// to pass to Journal::SyncTo before a result is acknowledged (SyncTo may run without the caller's
// lock, so that requests share fdatasyncs).
//
// Not thread-safe: the coordinator calls Write with its lock held, which also keeps the journal's
// order equal to the order of the decisions.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>

#include "runtime/base/files.h"
#include "runtime/base/status.h"
#include "runtime/coordinator/journal.h"
#include "runtime/logs/error_summary.h"
#include "runtime/logs/report_csv.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

class AttemptLog {
 public:
  class Batch {
   public:
    // One decision: its journal line (JournalLeaseLine, JournalResultLine, ...), and the report
    // row and error-summary line it writes, if any.
    void Add(std::string_view journal_line, const ReportRow* row = nullptr,
             const ErrorSummaryEntry* error = nullptr);
    // An error-summary line that is no decision about an attempt (init() failed on a worker).
    void AddError(const ErrorSummaryEntry& error);
    bool empty() const { return journal_.empty() && rows_.empty() && errors_.empty(); }
    int64_t rows() const { return row_count_; }

   private:
    friend class AttemptLog;
    std::string journal_, rows_, errors_;
    int64_t row_count_ = 0;
  };

  // Owns the report and the error summary (`user_errors` may be closed: its lines are then
  // dropped); `journal` must outlive this.
  AttemptLog(Journal* journal, std::unique_ptr<ReportCsv> report, AppendFile user_errors,
             std::shared_ptr<spdlog::logger> log)
      : journal_(journal),
        report_(std::move(report)),
        user_errors_(std::move(user_errors)),
        log_(std::move(log)) {}

  // Writes `batch` as described above. Returns the journal offset to sync to for durability (-1
  // when the batch had no journal line), or the journal's error.
  StatusOr<int64_t> Write(const Batch& batch);
  // The report, for rebuilding rows on resume (report_repair.h).
  ReportCsv& report() { return *report_; }

 private:
  Journal* journal_;
  std::unique_ptr<ReportCsv> report_;
  AppendFile user_errors_;
  std::shared_ptr<spdlog::logger> log_;
};

// The report row of an agent's result `r` from `node` (`accepted`: it is the one that counts).
ReportRow ReportRowOf(const protocol::AttemptResult& r, const std::string& node, bool accepted);

}  // namespace parallelrun::rt
