#include "runtime/coordinator/report_repair.h"

#include "runtime/base/files.h"
#include "runtime/coordinator/line_file.h"

namespace parallelrun::rt {

void ReportTail::Add(const JournalRecord& r) {
  if (r.type != "result" && r.type != "expired" && r.type != "carried") return;
  ++rows_;
  records_.push_back(r);
  if (records_.size() > kKept) records_.pop_front();
}

ReportRow ReportRowFromJournal(const JournalRecord& r, const JobState& state) {
  ReportRow row;
  row.mini_batch_id = r.mini_batch_id;
  row.attempt = r.attempt;
  row.node = r.node;
  const bool planned = r.mini_batch_id >= 0 && r.mini_batch_id < state.counts().total;
  const int64_t items = planned ? state.items(r.mini_batch_id) : 0;
  constexpr const char* kRebuilt = "row rebuilt from the journal after a coordinator restart";
  if (r.type == "carried") {
    row.accepted = true;
    row.total = items;
    row.succeeded = r.succeeded;
    row.failed = r.failed;
    row.status = "CARRIED_OVER";
    row.detail = kRebuilt;
  } else if (r.type == "expired") {
    row.accepted = r.outcome == Outcome::kFailed;
    row.total = items;
    row.failed = r.outcome == Outcome::kFailed ? items : 0;
    row.status = AttemptStatusName(AttemptStatus::kLeaseExpired);
    row.error = "the lease was lost (" + std::string(OutcomeName(r.outcome)) + ")";
    row.detail = kRebuilt;
  } else {
    row.accepted = r.outcome == Outcome::kCompleted || r.outcome == Outcome::kFailed;
    row.process = r.process;
    row.start_utc = r.start_utc;
    row.total = r.items;
    row.succeeded = r.reported_succeeded;
    row.failed = r.reported_failed;
    row.elapsed_s = r.elapsed_s;
    row.cpu_s = r.cpu_s;
    row.run_s = r.run_s;
    row.status = r.status;
    row.error = r.error;
    row.detail = kRebuilt;
  }
  return row;
}

void RepairReport(const std::string& path, ReportCsv& report, const ReportTail& tail,
                  const JobState& state, spdlog::logger& log) {
  auto scan = ScanReportCsv(path);
  if (!scan.ok()) {
    log.warn("report: {}; rows lost in a crash are not rebuilt", scan.status().message());
    return;
  }
  if (scan->valid_bytes < scan->size) {
    // A row cut short by a crash: it is rebuilt below with the others.
    log.warn("report {}: cut a torn last row ({} bytes)", path, scan->size - scan->valid_bytes);
    if (Status st = TruncateFile(path, scan->valid_bytes); !st.ok()) {
      log.warn("report: {}", st.message());
      return;
    }
    if (scan->valid_bytes == 0) (void)report.AppendFormatted(std::string(kReportCsvHeader) + "\n");
  }
  const int64_t missing = tail.rows() - scan->rows;
  if (missing <= 0) return;
  const auto& records = tail.records();
  const auto kept = static_cast<int64_t>(records.size());
  // The journal's record just before the missing ones must be the report's last row.
  const bool matches =
      missing < kept
          ? scan->rows == 0 || (records[kept - missing - 1].mini_batch_id == scan->last_id &&
                                records[kept - missing - 1].attempt == scan->last_attempt)
          : missing == kept && scan->rows == 0;
  if (!matches) {
    log.warn("report {} has {} rows where the journal recorded {} results; not rebuilt", path,
             scan->rows, tail.rows());
    return;
  }
  std::string rows;
  for (int64_t i = kept - missing; i < kept; ++i) {
    rows += FormatReportRow(ReportRowFromJournal(records[i], state));
  }
  if (Status st = report.AppendFormatted(rows); !st.ok()) {
    log.warn("report: {}", st.message());
    return;
  }
  log.info(
      "report: rebuilt {} row(s) that the journal recorded before the last coordinator "
      "stopped",
      missing);
}

}  // namespace parallelrun::rt
