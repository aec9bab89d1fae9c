// The coordinator's planning: starting the planner (or not, for a complete plan), its callbacks,
// and retryFrom's comparison and carry-over as plan records arrive (the other parts:
// coordinator_impl.h).
#include "runtime/coordinator/coordinator_impl.h"

namespace parallelrun::rt {

void Coordinator::Impl::StartRetryFromLocked(
    const std::optional<std::pair<int64_t, PlanEntry>>& mismatch, bool plan_complete) {
  const EarlierRun& er = *earlier_;
  const JobCounts& c = state_.counts();
  const int64_t not_run = er.records() - er.completed() - er.failed();
  std::string line = "Retry of the earlier run in " + er.dir() + ": it completed " +
                     std::to_string(er.completed()) + " of " + std::to_string(er.records()) +
                     (er.plan_complete() ? "" : "+") + " mini batches (" +
                     std::to_string(er.failed()) + " failed, " + std::to_string(not_run) +
                     " not run); the completed ones are carried over from " + er.dir();
  if (!er.rows_from().empty()) line += " with their rows from " + er.rows_from();
  line += ", the others run again";
  if (er.without_rows() > 0) {
    line += "; " + std::to_string(er.without_rows()) +
            " completed ones have no rows there and run again too";
  }
  SayLocked(line);
  log_->info("retryFrom {}: {} mini-batches planned, {} completed ({} without rows), {} failed",
             er.dir(), er.records(), er.completed(), er.without_rows(), er.failed());
  if (mismatch) {
    EndRetryFromLocked(
        er.Check(mismatch->first, mismatch->second, *plan_reader_, opt_.spec).message());
  } else if (plan_complete && !er.CheckTotal(c.total).ok()) {
    EndRetryFromLocked(er.CheckTotal(c.total).message());
  } else {
    CarryOverLocked(0);
  }
}

void Coordinator::Impl::StartPlanningLocked(const LoadedPlan& plan) {
  // An input with no folder cannot be planned.
  for (size_t i = 0; i < input_dirs_.size(); ++i) {
    if (input_dirs_[i].empty()) {
      EndLocked(InvalidInputEnding("spec.inputs[" + std::to_string(i) + "] (\"" +
                                   opt_.spec.inputs[i].name +
                                   "\"): no folder was resolved for this input"));
    }
  }
  if (ending_) return;
  if (!plan.complete) {
    std::string inputs;
    for (size_t i = 0; i < opt_.spec.inputs.size(); ++i) {
      if (i) inputs += ", ";
      inputs += opt_.spec.inputs[i].name + " (" + input_dirs_[i] + ")";
    }
    SayLocked("Scheduling started: inputs " + inputs);
    StartPlanner(plan.records, plan.valid_bytes);
  } else if (state_.counts().total == 0) {
    OnPlanCompleteLocked();
  } else {
    CheckOutcomeLocked();
  }
}

void Coordinator::Impl::CarryOverLocked(int64_t first) {
  if (!earlier_ || ending_) return;
  const int64_t total = state_.counts().total;
  AttemptLog::Batch batch;
  for (int64_t id = first; id < total; ++id) {
    auto from = earlier_->Carried(id);
    if (!from || !state_.Carry(id, from->succeeded)) continue;
    ReportRow row;
    row.mini_batch_id = id;
    row.attempt = from->attempt;
    row.accepted = true;
    row.total = state_.items(id);
    row.succeeded = from->succeeded;
    row.failed = from->failed;
    row.status = "CARRIED_OVER";
    row.detail = "carried over from " + earlier_->dir();
    batch.Add(JournalCarriedLine(id, from->attempt, from->succeeded, from->failed), &row);
  }
  if (batch.empty()) return;
  // Not synced on its own: a carried record that is lost in a crash is decided again the same way
  // on restart (the earlier run is only read).
  (void)WriteLocked(batch);
  log_->debug("carried over {} mini-batches from {}", batch.rows(), earlier_->dir());
  last_progress_ = clock_->SteadyNow();
  CheckOutcomeLocked();
}

void Coordinator::Impl::StartPlanner(int64_t existing_records, int64_t valid_bytes) {
  plan_started_ = clock_->SteadyNow();
  PlannerOptions po;
  po.spec = opt_.spec;
  po.input_dirs = input_dirs_;
  po.plan_path = plan_path_;
  po.existing_records = existing_records;
  po.valid_bytes = valid_bytes;
  po.clock = clock_;
  po.on_durable = [this](std::vector<PlanEntry>&& entries) { OnDurable(std::move(entries)); };
  po.on_complete = [this] { OnPlanComplete(); };
  po.on_error = [this](const Status& st) { OnPlanError(st); };
  po.on_warning = [this](const std::string& warning) {
    MutexLock lock(mu_);
    WarnLocked(warning);
  };
  planner_ = std::make_unique<Planner>(std::move(po));
  planner_->Start();
}

void Coordinator::Impl::OnDurable(std::vector<PlanEntry>&& entries) {
  MutexLock lock(mu_);
  // Once the job ended the state is frozen (Finalize reads it without the lock).
  if (ending_ || interrupted_) return;
  int64_t first = state_.counts().total;
  for (const auto& e : entries) {
    // retryFrom: a record that differs from the earlier run's is never handed out.
    int64_t id = state_.counts().total;
    if (earlier_ && !earlier_->Matches(id, e)) {
      EndRetryFromLocked(earlier_->Check(id, e, *plan_reader_, opt_.spec).message());
      return;
    }
    state_.AddPlanned(e);
  }
  last_progress_ = clock_->SteadyNow();
  log_->debug("planned mini-batches {}..{}", first, state_.counts().total - 1);
  CarryOverLocked(first);
}

void Coordinator::Impl::OnPlanComplete() {
  MutexLock lock(mu_);
  if (ending_ || interrupted_) return;
  OnPlanCompleteLocked();
}

void Coordinator::Impl::OnPlanCompleteLocked() {
  const JobCounts& c = state_.counts();
  if (earlier_) {
    Status st = earlier_->CheckTotal(c.total);
    if (!st.ok()) {
      EndRetryFromLocked(st.message());
      return;
    }
  }
  state_.SetPlanComplete();
  SayLocked("Scheduling finished: " + std::to_string(c.total) + " mini batches, " +
            std::to_string(c.items_total) + " items in " +
            FormatDuration(Seconds(clock_->SteadyNow() - plan_started_)) +
            (earlier_ ? "; " + std::to_string(c.carried) + " of them carried over from " +
                            earlier_->dir() + ", " + std::to_string(c.total - c.carried) + " to run"
                      : std::string()));
  log_->info("plan complete: {} mini-batches, {} items", c.total, c.items_total);
  if (c.total == 0) {
    Ending e;
    e.reason = kReasonNoSucceeded;
    e.assemble = false;
    std::string what;
    for (size_t i = 0; i < opt_.spec.inputs.size(); ++i) {
      const Input& in = opt_.spec.inputs[i];
      if (i) what += "; ";
      what += "input \"" + in.name + "\" (" + input_dirs_[i] + ")";
      if (in.type == InputType::kFile) {
        what +=
            in.pattern.empty() ? " has no files" : " has no files matching \"" + in.pattern + "\"";
      } else {
        what += " has no rows";
      }
    }
    e.message = "no item to process: the inputs gave no mini-batches: " + what;
    e.look_first = {"the input folders named in the message"};
    EndLocked(std::move(e));
    return;
  }
  CheckOutcomeLocked();
}

void Coordinator::Impl::OnPlanError(const Status& status) {
  MutexLock lock(mu_);
  if (ending_ || interrupted_) return;
  EndLocked(InvalidInputEnding("cannot plan the job: " + status.message(),
                               {"the input named in the message", kHintMasterRole}));
}

}  // namespace parallelrun::rt
