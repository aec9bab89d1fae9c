#include "runtime/coordinator/report_repair.h"

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
    row.status = "LEASE_EXPIRED";
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

}  // namespace parallelrun::rt
