// How a job ends: the pure rules (job_end.h) and the coordinator's part that acts on them:
// reject, end, finalize (assembly, job_result.txt, result.json).
#include "runtime/coordinator/job_end.h"

#include <cstdio>

#include "runtime/base/files.h"
#include "runtime/coordinator/coordinator_impl.h"
#include "runtime/coordinator/progress_text.h"
#include "runtime/logs/log_layout.h"
#include "runtime/output/output_index.h"
#include "runtime/output/part_cleanup.h"

namespace parallelrun::rt {

// ---------------------------------------------------------------------------------------------
// The rules

Ending InvalidInputEnding(std::string message, std::vector<std::string> look_first) {
  Ending e;
  e.reason = kReasonInvalidInput;
  e.exit_code = kCoordinatorExitInvalid;
  e.early = true;
  e.assemble = false;
  e.message = std::move(message);
  e.look_first = std::move(look_first);
  return e;
}

namespace {

std::optional<Ending> ThresholdEnding(const JobSpec& s, const JobCounts& c, bool all_done,
                                      const std::string& last_error) {
  if (s.error_threshold >= 0 && c.items_failed > s.error_threshold) {
    Ending e;
    e.reason = kReasonErrorThreshold;
    e.early = !all_done;
    e.message = std::to_string(c.items_failed) + " failed items exceed errorThreshold " +
                std::to_string(s.error_threshold) + last_error;
    return e;
  }
  if (s.allowed_failed_count >= 0 && c.failed > s.allowed_failed_count) {
    Ending e;
    e.reason = kReasonErrorThreshold;
    e.early = !all_done;
    e.message = std::to_string(c.failed) + " failed mini-batches exceed allowedFailedCount " +
                std::to_string(s.allowed_failed_count) + last_error;
    return e;
  }
  return std::nullopt;
}

Ending SucceededEnding(const JobSpec& s, const JobCounts& c, const std::string& carried_from) {
  Ending e;
  e.succeeded = true;
  e.reason = kReasonCompleted;
  e.exit_code = kCoordinatorExitSucceeded;
  e.message = std::to_string(c.total) +
              " mini-batches processed: " + std::to_string(c.items_succeeded) + " of " +
              std::to_string(c.items_total) + " items succeeded";
  if (c.items_failed > 0) e.message += ", " + std::to_string(c.items_failed) + " failed";
  if (c.failed > 0) {
    e.message += " (" + std::to_string(c.failed) + " mini-batches failed after " +
                 std::to_string(s.run_max_try) + " tries)";
  }
  if (!carried_from.empty()) {
    e.message +=
        "; " + std::to_string(c.carried) + " mini-batches carried over from " + carried_from;
  }
  return e;
}

}  // namespace

std::optional<Ending> DecideOutcome(const JobSpec& s, const JobCounts& c, bool all_done,
                                    const std::string& last_error,
                                    const std::string& carried_from) {
  if (auto e = ThresholdEnding(s, c, all_done, last_error)) return e;
  if (!all_done || c.total == 0) return std::nullopt;
  Ending e;
  if (c.failed * 100 > static_cast<int64_t>(s.allowed_failed_percent) * c.total) {
    e.reason = kReasonFailedPercent;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%",
                  100.0 * static_cast<double>(c.failed) / static_cast<double>(c.total));
    e.message = std::to_string(c.failed) + " of " + std::to_string(c.total) +
                " mini-batches failed (" + pct + "), more than allowedFailedPercent " +
                std::to_string(s.allowed_failed_percent) + "%" + last_error;
    return e;
  }
  if (c.failed == c.total || (c.items_succeeded == 0 && s.error_threshold != -1)) {
    // Azure ML's rule: with errorThreshold -1 a job whose every mini-batch completed succeeds
    // even if run() returned fewer rows than items (training scripts return []).
    e.reason = kReasonNoSucceeded;
    e.message = (c.failed == c.total ? "no mini-batch completed: "
                                     : "no item succeeded (errorThreshold is not -1): ") +
                std::to_string(c.failed) + " of " + std::to_string(c.total) +
                " mini-batches failed and " + std::to_string(c.items_failed) + " of " +
                std::to_string(c.items_total) + " items failed" + last_error;
    return e;
  }
  return SucceededEnding(s, c, carried_from);
}

std::vector<std::string> DefaultLookFirst(const Ending& e, const JobCounts& c) {
  if (!e.succeeded) return {kHintUserErrors, kHintReport, kHintOverview};
  if (c.items_failed > 0) return {kHintUserErrors, kHintReport};
  return {};
}

JobResult MakeJobResult(const Ending& e, const JobCounts& c, const std::string& carried_from,
                        ResultTimes times, const std::string& log_dir) {
  JobResult r;
  r.succeeded = e.succeeded;
  r.reason = e.reason;
  r.message = e.message;
  r.exit_code = e.exit_code;
  r.mini_batches_total = c.total;
  r.mini_batches_succeeded = c.completed - c.failed;
  r.mini_batches_failed = c.failed;
  r.mini_batches_retried = c.retried;
  if (!carried_from.empty()) {
    r.mini_batches_carried_over = c.carried;
    r.carried_over_from = carried_from;
  }
  r.items_total = c.items_total;
  r.items_succeeded = c.items_succeeded;
  r.items_failed = c.items_failed;
  r.start_time = Iso8601Utc(times.start);
  r.completion_time = Iso8601Utc(times.end);
  r.duration_s = std::chrono::duration<double>(times.end - times.start).count();
  r.log_dir = log_dir;
  r.look_first = e.look_first;
  r.traceback = e.traceback;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reject, end

void Coordinator::Impl::Reject(const std::string& reason, const std::string& message,
                               std::vector<std::string> look_first) {
  mode_ = Mode::kRejected;
  MutexLock lock(mu_);
  JobResult r;
  r.reason = reason;
  r.exit_code = kCoordinatorExitInvalid;
  r.message = message;
  r.start_time = r.completion_time = Iso8601Utc(start_time_);
  r.log_dir = log_dir_;
  r.look_first = std::move(look_first);
  final_ = r;
  finished_ = true;
  exit_code_ = r.exit_code;
  last_line_ = OverviewLog::FormatLine(clock_->Now(), "Failed: " + r.reason + ": " + r.message);
  if (opt_.echo) opt_.echo(last_line_);
}

void Coordinator::Impl::EndLocked(Ending ending) {
  if (ending_) return;
  if (ending.look_first.empty()) ending.look_first = DefaultLookFirst(ending, state_.counts());
  if (ending.succeeded) {
    log_->info("job completed: {}", ending.message);
  } else {
    log_->error("job failed: {}: {}", ending.reason, ending.message);
  }
  if (ending.early) {
    SayLocked(ending.reason + ": " + ending.message +
              ". No more mini batches are handed out; running ones are cancelled");
  }
  ending_ = std::move(ending);
  if (planner_) planner_->Cancel();
  cv_.NotifyAll();
}

void Coordinator::Impl::EndRetryFromLocked(const std::string& problem) {
  std::string message = "spec.retryFrom (" + opt_.paths.retry_from_dir + "): " + problem;
  if (earlier_) {
    // A plan that differs: the inputs or the way they are cut changed since the earlier run.
    message +=
        ". A retry must plan exactly the mini-batches of the earlier run: use the same inputs, "
        "miniBatchSize and input settings, or run without retryFrom";
  }
  EndLocked(InvalidInputEnding(std::move(message), {kHintRetryFrom, kHintMasterRole}));
}

void Coordinator::Impl::EndDiskFullLocked(const std::string& what, const std::string& error) {
  if (ending_) return;
  log_->error("no space left on the disk: cannot write {}: {}", what, error);
  Ending e;
  e.reason = kReasonDiskFull;
  e.early = true;
  e.assemble = false;
  e.message = DiskFullMessage(what, error);
  e.look_first = {kHintMasterRole};
  EndLocked(std::move(e));
}

void Coordinator::Impl::CheckOutcomeLocked() {
  if (ending_) return;
  // Asked after every request: whether the job ends does not depend on the error text, which
  // (the most frequent error of up to ErrorDigest::kMaxGroups) is only worded when it does.
  if (!DecideOutcome(opt_.spec, state_.counts(), state_.AllDone(), "", carried_from_)) return;
  const std::string last_error = !errors_.empty()          ? MostFrequentErrorSuffix(errors_)
                                 : last_run_error_.empty() ? std::string()
                                                           : "; last error: " + last_run_error_;
  if (auto e =
          DecideOutcome(opt_.spec, state_.counts(), state_.AllDone(), last_error, carried_from_)) {
    EndLocked(std::move(*e));
  }
}

Ending Coordinator::Impl::OutputLostEnding() const {
  Ending e;
  e.reason = kReasonOutputLost;
  e.early = true;
  e.assemble = false;
  e.output_lost = true;
  e.message = "the output folder " + output_dir_ + " was deleted or replaced while the job ran (" +
              state_dir_ +
              " is gone): the journal and the rows written so far are lost, so the job cannot "
              "finish. Run it again";
  e.look_first = {"whatever removed " + output_dir_, kHintMasterRole};
  return e;
}

void Coordinator::Impl::FinishLocked(int exit_code) {
  exit_code_ = exit_code;
  finished_ = true;
  cv_.NotifyAll();
}

// ---------------------------------------------------------------------------------------------
// Finalize

RowSource Coordinator::Impl::FrozenPartSource(int64_t id) const {
  RowSource s = PartFileSource(
      JoinPath(parts_dir_, std::to_string(id) + "." + std::to_string(state_.accepted_attempt(id))));
  const size_t i = static_cast<size_t>(id);
  if (i < part_bytes_.size() && part_bytes_[i] >= 0) {
    s.expected_bytes = part_bytes_[i];
    s.expected_crc32 = part_crc32_[i];
  }
  return s;
}

void Coordinator::Impl::Finalize() {
  Ending e;
  {
    MutexLock lock(mu_);
    e = *ending_;
    space_reserve_.Release();
  }
  Status st = journal_->SyncAll();
  if (!st.ok()) log_->error("journal: {}", st.message());
  std::string output_file, warning;
  if (e.assemble && opt_.spec.output_action == OutputAction::kAppendRow &&
      !Assemble(e, output_file, warning)) {
    return;
  }
  WriteResult(e, output_file, warning);
}

bool Coordinator::Impl::Assemble(Ending& e, std::string& output_file, std::string& warning) {
  // The state is frozen once ending_ is set (no leases, results or expiries change it), so the
  // assembly reads it without the lock.
  const JobState& state = FrozenState();
  const int64_t parts = state.counts().completed - state.counts().failed;
  const int64_t carried = state.counts().carried;
  {
    MutexLock lock(mu_);
    status_message_ = "assembling output";
    SayLocked("Assembling output: " + std::to_string(parts - carried) + " parts" +
              (carried > 0 ? " and the rows of " + std::to_string(carried) +
                                 " mini batches carried over from " + carried_from_
                           : std::string()) +
              " into " + output_file_);
  }
  SteadyTime last = clock_->SteadyNow();
  AssemblyOptions ao;
  ao.output_file = output_file_;
  ao.header = opt_.spec.append_row_header;
  // Where each mini-batch's rows are, for a later retryFrom (parts/ is removed below).
  ao.index_file = JoinPath(state_dir_, kOutputIndexFile);
  ao.cancel = &cancel_assembly_;
  ao.on_progress = [&](int64_t done, int64_t bytes) {
    SteadyTime now = clock_->SteadyNow();
    if (now - last < kProgressLineEvery) return;
    last = now;
    MutexLock lock(mu_);
    SayLocked("Assembling output: " + std::to_string(done) + " of " + std::to_string(parts) +
              " parts, " + std::to_string(bytes) + " bytes");
  };
  auto stats = AssembleAppendRow(ao, state.counts().total, [&](int64_t id) -> RowSource {
    if (state.status(id) != MiniBatchStatus::kCompleted) return RowSource();
    if (state.carried(id)) return earlier_ ? earlier_->RowsOf(id) : RowSource();
    return FrozenPartSource(id);
  });
  MutexLock lock(mu_);
  if (!stats.ok()) {
    if (stats.status().code() == StatusCode::kAborted) {
      SayLocked(
          "Interrupted while assembling the output. Run the job again on the same "
          "output to finish");
      status_message_ = "interrupted; run again to resume";
      FinishLocked(kCoordinatorExitInterrupted);
      return false;
    }
    log_->error("output assembly failed: {}", stats.status().message());
    if (OutputFolderGone()) {
      e = OutputLostEnding();
    } else {
      e.succeeded = false;
      e.reason = kReasonAssemblyFailed;
      e.exit_code = kCoordinatorExitJobFailed;
      e.message = "cannot assemble the output: " + stats.status().message();
      const StatusCode code = stats.status().code();
      if (code == StatusCode::kNotFound || code == StatusCode::kFailedPrecondition) {
        // An accepted part was lost or changed: the others stay in parts/ for a retry.
        e.message +=
            ". To finish the job, run it on a new output folder with retryFrom: " + output_dir_ +
            " (only the mini-batches whose rows are lost or changed run again)";
      }
      e.look_first = {kHintMasterRole};
    }
    return true;
  }
  output_file = output_file_;
  SayLocked("Assembled output " + output_file_ + ": " + std::to_string(stats->parts) + " parts, " +
            std::to_string(stats->bytes) + " bytes");
  if (stats->missing_parts > 0) {
    warning = std::to_string(stats->missing_parts) +
              " accepted part files were missing and added no rows, e.g. " +
              stats->missing_examples.front();
    log_->warn("{}", warning);
  }
  return true;
}

void Coordinator::Impl::WriteResult(const Ending& e, const std::string& output_file,
                                    const std::string& warning) {
  JobResult r;
  {
    MutexLock lock(mu_);
    SayLocked(ProgressLineLocked(true));
    r = MakeJobResult(e, state_.counts(), carried_from_, {start_time_, clock_->Now()}, log_dir_);
    PutErrors(errors_, &r);
    r.output_file = output_file;
    r.warning = warning;
  }
  // A lost output folder gets its logs/ folder back, only to say why the job failed.
  if (e.output_lost) (void)MakeDirs(log_dir_);
  Status st = WriteFileAtomic(JoinPath(log_dir_, kJobResultFile), FormatJobResultText(r));
  if (!st.ok()) log_->error("{}", st.message());
  {
    MutexLock lock(mu_);
    SayLocked(JobResultHeadline(r) + (r.message.empty() ? "" : ": " + r.message) +
              ". Details: " + JoinPath(log_dir_, kJobResultFile));
  }
  // result.json last: it marks the job finished. A job rejected for its input (exit 1) stays
  // unfinished so that it runs once the input is fixed. Nor does a job whose output folder was
  // lost, or that ran out of disk space: it resumes once there is room.
  if (r.exit_code != kCoordinatorExitInvalid && !e.output_lost && r.reason != kReasonDiskFull) {
    st = WriteFileAtomic(result_json_path_, JobResultToJson(r).dump(2) + "\n");
    if (!st.ok()) {
      log_->error("{}", st.message());
    } else if (!output_file.empty()) {
      // The parts are in the output now (and its index says where). After a failed assembly they
      // stay: a retryFrom run can still take the rows from them.
      RemovePartsFolder(parts_dir_).IgnoreError("parts left behind take space, nothing else");
    }
  }
  log_->info("finished: {} (exit code {}); the journal took {} fdatasyncs in this run",
             JobResultHeadline(r), r.exit_code, journal_->syncs());
  MutexLock lock(mu_);
  final_ = r;
  FinishLocked(r.exit_code);
}

}  // namespace parallelrun::rt
