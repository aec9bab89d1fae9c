#include "runtime/coordinator/attempt_log.h"

namespace parallelrun::rt {

void AttemptLog::Batch::Add(std::string_view journal_line, const ReportRow* row,
                            const ErrorSummaryEntry* error) {
  journal_ += journal_line;
  if (row) {
    rows_ += FormatReportRow(*row);
    ++row_count_;
  }
  if (error) errors_ += FormatErrorSummaryLine(*error);
}

void AttemptLog::Batch::AddError(const ErrorSummaryEntry& error) {
  errors_ += FormatErrorSummaryLine(error);
}

StatusOr<int64_t> AttemptLog::Write(const Batch& batch) {
  int64_t sync_to = -1;
  if (!batch.journal_.empty()) {
    auto off = journal_->Append(batch.journal_);
    if (!off.ok()) {
      log_->error("journal: {}", off.status().message());
      return off.status();
    }
    sync_to = *off;
  }
  if (!batch.rows_.empty()) {
    if (Status st = report_->AppendFormatted(batch.rows_); !st.ok()) {
      log_->error("report: {}", st.message());
    }
  }
  if (!batch.errors_.empty() && user_errors_.is_open()) {
    if (Status st = user_errors_.Append(batch.errors_); !st.ok()) log_->error("{}", st.message());
  }
  return sync_to;
}

ReportRow ReportRowOf(const protocol::AttemptResult& r, const std::string& node, bool accepted) {
  ReportRow row;
  row.mini_batch_id = r.mini_batch_id;
  row.attempt = r.attempt;
  row.accepted = accepted;
  row.node = node;
  row.process = r.process;
  row.start_utc = r.start_utc;
  row.total = r.total;
  row.succeeded = r.succeeded;
  row.failed = r.failed;
  row.elapsed_s = r.elapsed_s;
  row.cpu_s = r.cpu_s;
  row.run_s = r.run_s;
  row.status = r.status;
  row.error = r.error;
  row.detail = r.detail;
  return row;
}

}  // namespace parallelrun::rt
