// Rebuilding report rows from the journal.
//
// The coordinator writes a decision to the journal first and its report row right after, in a
// second write. A coordinator killed between the two leaves results in the journal that the
// report (logs/sys/job_report/processed_mini-batches.csv) does not show. Both files are written
// in the same order, so on resume the report's missing rows are the journal's last records that
// write one: ReportTail keeps those while the journal is replayed.
#ifndef PARALLELRUN_RUNTIME_COORDINATOR_REPORT_REPAIR_H_
#define PARALLELRUN_RUNTIME_COORDINATOR_REPORT_REPAIR_H_

#include <spdlog/spdlog.h>

#include <cstdint>
#include <deque>
#include <string>

#include "runtime/coordinator/job_state.h"
#include "runtime/coordinator/journal.h"
#include "runtime/logs/report_csv.h"

namespace parallelrun::rt {

class ReportTail {
 public:
  // At most this many records are kept: far more than one request's results.
  static constexpr size_t kKept = 4096;

  // Counts `r` when it is a record that wrote a report row (result, expired, carried).
  void Add(const JournalRecord& r);
  // How many records wrote a row, in the whole journal.
  int64_t rows() const { return rows_; }
  // The last of them (at most kKept), oldest first.
  const std::deque<JournalRecord>& records() const { return records_; }

 private:
  int64_t rows_ = 0;
  std::deque<JournalRecord> records_;
};

// The report row that `r` wrote. Fields the journal does not keep (an error's detail, the reason
// a lease expired) say that the row was rebuilt.
ReportRow ReportRowFromJournal(const JournalRecord& r, const JobState& state);

// On resume: cuts a torn last row off the report at `path` (open as `report`) and appends the
// rows that the journal's records in `tail` wrote and the report lacks, when the report's last
// row is the journal's record just before them; otherwise (or on an error) only logs to `log`.
void RepairReport(const std::string& path, ReportCsv& report, const ReportTail& tail,
                  const JobState& state, spdlog::logger& log);

}  // namespace parallelrun::rt

#endif  // PARALLELRUN_RUNTIME_COORDINATOR_REPORT_REPAIR_H_
