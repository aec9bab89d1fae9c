// The coordinator's setup, resume, planner callbacks, supervisor, Wait/Stop and lock (the other
// parts: coordinator_impl.h).
#include "runtime/coordinator/coordinator.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/coordinator/coordinator_impl.h"
#include "runtime/coordinator/line_file.h"
#include "runtime/coordinator/progress_text.h"
#include "runtime/logs/job_result.h"
#include "runtime/logs/log_layout.h"
#include "runtime/logs/readme_text.h"
#include "runtime/logs/report_csv.h"

namespace parallelrun::rt {
namespace {

// The same folder, whether or not the paths are spelled alike.
bool SameFolder(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (std::filesystem::equivalent(a, b, ec) && !ec) return true;
  auto norm = [](const std::string& p) {
    std::string n = std::filesystem::path(p).lexically_normal().string();
    while (n.size() > 1 && n.back() == '/') n.pop_back();
    return n;
  };
  return norm(a) == norm(b);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Setup

Coordinator::Impl::Impl(CoordinatorOptions options)
    : opt_(std::move(options)),
      clock_(opt_.clock ? opt_.clock : &RealClock::Get()),
      state_(opt_.spec.run_max_try) {
  output_dir_ = opt_.paths.output_dir;
  state_dir_ = JoinPath(output_dir_, ".parallelrun");
  log_dir_ = LogDirOf(output_dir_);
  parts_dir_ = JoinPath(state_dir_, "parts");
  plan_path_ = JoinPath(state_dir_, "plan");
  journal_path_ = JoinPath(state_dir_, "journal");
  owner_path_ = JoinPath(state_dir_, "owner");
  result_json_path_ = JoinPath(state_dir_, "result.json");
  if (opt_.spec.output_action == OutputAction::kAppendRow) {
    output_file_ = JoinPath(output_dir_, opt_.spec.append_row_file_name);
  }
  lease_seconds_ = opt_.spec.run_invocation_timeout + 30;
  progress_timeout_s_ = opt_.spec.progress_update_timeout > 0
                            ? opt_.spec.progress_update_timeout
                            : 3 * (opt_.spec.run_invocation_timeout + 30);
  for (const auto& in : opt_.spec.inputs) {
    auto it = opt_.paths.inputs.find(in.name);
    input_dirs_.push_back(it == opt_.paths.inputs.end() ? std::string() : it->second);
  }
  {
    MutexLock lock(mu_);
    start_time_ = clock_->Now();
    last_progress_ = clock_->SteadyNow();
    last_line_at_ = last_progress_;
  }
  protocol::RegisterResponse& reg = register_reply_;
  reg.spec = ToJson(opt_.spec);
  reg.code_dir = opt_.paths.code_dir;
  reg.input_dirs = opt_.paths.inputs;
  reg.side_input_dirs = opt_.paths.side_inputs;
  reg.output_dir = output_dir_;
  reg.log_dir = log_dir_;
  reg.parts_dir = parts_dir_;
  reg.arguments = ExpandArguments(opt_.spec, opt_.paths);
  reg.lease_seconds = lease_seconds_;
}

Coordinator::Impl::~Impl() {
  {
    MutexLock lock(mu_);
    shutting_down_ = true;
    cancel_assembly_ = true;
    cv_.NotifyAll();
  }
  // Planner callbacks take mu_, so join without holding it.
  planner_.reset();
  if (supervisor_.joinable()) supervisor_.join();
}

Status Coordinator::Impl::Init() {
  // A retry of the output folder itself would write into the run it reads: refused before
  // anything is written.
  const std::string& retry_from = opt_.paths.retry_from_dir;
  if (!retry_from.empty() && SameFolder(retry_from, output_dir_)) {
    Reject(kReasonInvalidInput,
           "spec.retryFrom (" + retry_from + ") names this job's own output folder " + output_dir_ +
               "; nothing was changed in it. Give the new run another output folder and set "
               "retryFrom to the earlier run's output",
           {"spec.retryFrom and spec.output"});
    return Status::Ok();
  }
  // Ownership first, before anything is written.
  if (PathExists(owner_path_)) {
    PR_ASSIGN_OR_RETURN(std::string owner, ReadFile(owner_path_));
    while (!owner.empty() && std::isspace(static_cast<unsigned char>(owner.back()))) {
      owner.pop_back();
    }
    if (owner != opt_.owner_id) {
      Reject(kReasonOutputInUse,
             "the output folder " + output_dir_ + " belongs to another job (owner \"" + owner +
                 "\", this job is \"" + opt_.owner_id +
                 "\"); nothing was changed in it. Use another output folder, or remove it to "
                 "start over",
             {".parallelrun/owner in the output folder names the job that owns it"});
      return Status::Ok();
    }
  }
  // One run at a time per output folder, for the whole run (a finished job is only read, but
  // its result is not reported while another run may still be writing it).
  auto lock =
      OutputLock::Acquire(output_dir_, opt_.output_lock_wait, [this](const std::string& who) {
        MutexLock l(mu_);
        last_line_ = OverviewLog::FormatLine(
            clock_->Now(), "Waiting up to " + std::to_string(opt_.output_lock_wait.count()) +
                               " s for the output folder " + output_dir_ + ", held by " + who);
        if (opt_.echo) opt_.echo(last_line_);
      });
  if (!lock.ok()) {
    if (lock.status().code() != StatusCode::kFailedPrecondition) return lock.status();
    Reject(kReasonOutputInUse, lock.status().message(),
           {".parallelrun/lock in the output folder names the run that holds it"});
    return Status::Ok();
  }
  lock_.emplace(std::move(*lock));
  if (PathExists(owner_path_) && PathExists(result_json_path_)) {
    PR_ASSIGN_OR_RETURN(std::string text, ReadFile(result_json_path_));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    auto r = JobResultFromJson(j);
    if (!r.ok()) return r.status().WithContext(result_json_path_);
    mode_ = Mode::kFinished;
    MutexLock l(mu_);
    final_ = *r;
    finished_ = true;
    exit_code_ = r->exit_code;
    last_line_ = OverviewLog::FormatLine(
        clock_->Now(),
        "This job already finished at " + r->completion_time + ": " + JobResultHeadline(*r) +
            (r->message.empty() ? "" : " (" + r->message + ")") + "; see " +
            JoinPath(log_dir_, kJobResultFile) + ". Use another output folder to run it again");
    if (opt_.echo) opt_.echo(last_line_);
    return Status::Ok();
  }
  return InitRun();
}

Status Coordinator::Impl::InitRun() {
  PR_RETURN_IF_ERROR(MakeDirs(state_dir_));
  struct stat sd;
  if (::stat(state_dir_.c_str(), &sd) != 0) {
    return InternalError("cannot stat " + state_dir_ + ": " + std::strerror(errno));
  }
  state_dev_ = sd.st_dev;
  state_ino_ = sd.st_ino;
  if (!PathExists(owner_path_)) {
    PR_RETURN_IF_ERROR(WriteFileAtomic(owner_path_, opt_.owner_id + "\n"));
  }
  PR_RETURN_IF_ERROR(MakeDirs(parts_dir_));
  PR_RETURN_IF_ERROR(MakeDirs(JoinPath(log_dir_, "sys")));
  PR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(log_dir_, kLogsReadmeFile), LogsReadmeText()));

  const int start_index = NextMasterRoleIndex(log_dir_);
  log_ = MakeFileLogger("master_role", JoinPath(log_dir_, MasterRoleFile(start_index)));
  log_->set_level(ParseLogLevel(opt_.spec.logging_level));
  {
    MutexLock lock(mu_);
    overview_ = std::make_unique<OverviewLog>(log_dir_, clock_, opt_.echo);
  }
  PR_ASSIGN_OR_RETURN(auto report, ReportCsv::Open(JoinPath(log_dir_, kReportCsvFile)));
  PR_ASSIGN_OR_RETURN(auto user_errors,
                      AppendFile::Open(JoinPath(log_dir_, kUserErrorSummaryFile)));

  log_->info("coordinator {} started for job \"{}\" (owner {}), output {}", start_index,
             opt_.spec.name, opt_.owner_id, output_dir_);
  for (size_t i = 0; i < opt_.spec.inputs.size(); ++i) {
    log_->info("input {} \"{}\" ({}): {}", i, opt_.spec.inputs[i].name,
               InputTypeName(opt_.spec.inputs[i]), input_dirs_[i]);
  }
  return Resume(start_index, std::move(report), std::move(user_errors));
}

// ---------------------------------------------------------------------------------------------
// Resume

Status Coordinator::Impl::Resume(int start_index, std::unique_ptr<ReportCsv> report,
                                 AppendFile user_errors) {
  MutexLock lock(mu_);
  // retryFrom: the earlier run, read before this run's plan so that its records are compared as
  // they load. A problem with it ends the job below, once the logs say what happened.
  std::string retry_problem;
  if (!opt_.paths.retry_from_dir.empty()) {
    auto earlier = EarlierRun::Load(opt_.paths.retry_from_dir,
                                    opt_.spec.output_action == OutputAction::kAppendRow);
    if (earlier.ok()) {
      earlier_ = std::move(*earlier);
      carried_from_ = earlier_->dir();
    } else {
      retry_problem = earlier.status().message();
    }
  }
  // The plan written so far (empty for a new job). The callback runs here, under the lock.
  std::optional<std::pair<int64_t, PlanEntry>> mismatch;
  auto plan = LoadPlan(plan_path_, [&](const PlanEntry& e) NO_THREAD_SAFETY_ANALYSIS {
    int64_t id = state_.AddPlanned(e);
    if (earlier_ && !mismatch && !earlier_->Matches(id, e)) mismatch.emplace(id, e);
  });
  if (!plan.ok()) return plan.status();
  PR_RETURN_IF_ERROR(TruncateFile(plan_path_, plan->valid_bytes));
  if (!PathExists(plan_path_)) PR_RETURN_IF_ERROR(WriteFileAtomic(plan_path_, ""));
  PR_ASSIGN_OR_RETURN(plan_reader_, PlanReader::Open(plan_path_));
  if (plan->complete) state_.SetPlanComplete();

  // What earlier coordinators decided.
  std::unordered_map<int64_t, HeldAttempt> open;
  ReportTail tail;  // the last records that each wrote a report row, to rebuild rows
  PR_ASSIGN_OR_RETURN(int64_t valid, ReplayJournalLocked(open, tail));
  // Before Open cuts it off (and the start record follows).
  if (std::string torn = Journal::DescribeTornTail(journal_path_, valid); !torn.empty()) {
    WarnLocked(torn);
  }
  PR_ASSIGN_OR_RETURN(journal_, Journal::Open(journal_path_, valid));
  attempt_log_ =
      std::make_unique<AttemptLog>(journal_.get(), std::move(report), std::move(user_errors), log_);
  RepairReport(JoinPath(log_dir_, kReportCsvFile), attempt_log_->report(), tail, state_, *log_);
  if (Status st = space_reserve_.Create(JoinPath(state_dir_, "space-reserve"), kSpaceReserveBytes);
      !st.ok()) {
    if (IsDiskFullError(st.message())) return st.WithContext(kReasonDiskFull);
    log_->warn("{}", st.message());
  }
  PR_ASSIGN_OR_RETURN(
      int64_t off, journal_->Append(JournalStartLine(start_index, clock_->Now(), opt_.owner_id)));
  PR_RETURN_IF_ERROR(journal_->SyncTo(off));
  HoldOpenAttemptsLocked(open);

  SayStartedLocked(valid > 0 || plan->records > 0 ? start_index : -1, *plan);
  if (!retry_problem.empty()) {
    EndRetryFromLocked(retry_problem);
  } else if (earlier_) {
    StartRetryFromLocked(mismatch, plan->complete);
  }
  completed_at_start_ = state_.counts().completed - state_.counts().carried;
  StartPlanningLocked(*plan);
  supervisor_ = std::thread([this] { SupervisorLoop(); });
  return Status::Ok();
}

StatusOr<int64_t> Coordinator::Impl::ReplayJournalLocked(
    std::unordered_map<int64_t, HeldAttempt>& open, ReportTail& tail) {
  bool have_start = false;
  int64_t ignored = 0;
  // The callback runs here, under the lock.
  auto valid = Journal::Replay(
      journal_path_, [&](const JournalRecord& r) NO_THREAD_SAFETY_ANALYSIS -> Status {
        tail.Add(r);
        if (r.type == "start") {
          if (!have_start) {
            // The job started with the first coordinator; durations count from there.
            std::tm tm{};
            if (strptime(r.time.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) != nullptr) {
              start_time_ = std::chrono::system_clock::from_time_t(timegm(&tm));
            }
            have_start = true;
          }
          return Status::Ok();
        }
        if (r.mini_batch_id < 0 || r.mini_batch_id >= state_.counts().total) {
          ++ignored;
          return Status::Ok();
        }
        if (r.type == "lease") {
          open[r.mini_batch_id] = HeldAttempt{r.attempt, r.node};
        } else if (auto it = open.find(r.mini_batch_id);
                   it != open.end() && (r.type == "carried" || it->second.attempt == r.attempt)) {
          open.erase(it);
        }
        if (r.type == "lease" || r.type == "released") {
          state_.ReplayLease(r.mini_batch_id, r.attempt);
        } else if (r.type == "carried") {
          state_.Carry(r.mini_batch_id, r.succeeded);
        } else {
          state_.ReplayOutcome(r.mini_batch_id, r.attempt, r.outcome, r.succeeded);
          if (r.outcome == Outcome::kCompleted && r.part_bytes >= 0) {
            RecordPartLocked(r.mini_batch_id, r.part_bytes, r.part_crc32);
          }
        }
        return Status::Ok();
      });
  if (valid.ok() && ignored > 0) {
    log_->warn("journal: ignored {} records of mini-batches not in the plan", ignored);
  }
  return valid;
}

void Coordinator::Impl::SayStartedLocked(int resumed_as, const LoadedPlan& plan) {
  const JobCounts& c = state_.counts();
  if (resumed_as >= 0) {
    SayLocked("Coordinator restarted (logs/sys/" + MasterRoleFile(resumed_as).substr(4) +
              "): resuming job " + opt_.spec.name + ": " + std::to_string(c.completed) + " of " +
              std::to_string(c.total) + (plan.complete ? "" : "+") +
              " mini batches already processed (" + std::to_string(c.failed) +
              " failed); they do not run again");
    log_->info(
        "resumed: plan has {} records{}, {} completed, {} failed, {} retried, {} carried over",
        plan.records, plan.complete ? " and END" : "", c.completed, c.failed, c.retried, c.carried);
    return;
  }
  SayLocked("Job " + opt_.spec.name + " started: " + std::to_string(opt_.desired_nodes) +
            " node(s) x " + std::to_string(opt_.spec.process_count_per_node) +
            " process(es), output " + output_dir_);
}

// Attempts that were running when the previous coordinator ended keep running for one lease
// period: an agent that outlived the coordinator reclaims them when it registers again (or
// renews them), and no other agent gets those mini-batches meanwhile.
void Coordinator::Impl::HoldOpenAttemptsLocked(
    const std::unordered_map<int64_t, HeldAttempt>& open) {
  const SteadyTime until = clock_->SteadyNow() + std::chrono::seconds(lease_seconds_);
  if (size_t held = nodes_.Hold(state_, open, until); held > 0) {
    log_->info(
        "{} mini-batches were running when the previous coordinator ended; they are kept for "
        "their agents for up to {} s, then queued again without counting a try",
        held, lease_seconds_);
  }
}

// ---------------------------------------------------------------------------------------------
// Logging

void Coordinator::Impl::SayLocked(const std::string& text) {
  if (overview_) {
    last_line_ = overview_->Write(text);
  } else {
    last_line_ = OverviewLog::FormatLine(clock_->Now(), text);
    if (opt_.echo) opt_.echo(last_line_);
  }
}

void Coordinator::Impl::WarnLocked(const std::string& text) {
  log_->warn("{}", text);
  SayLocked("Warning: " + text);
  if (!opt_.echo) std::fprintf(stderr, "parallelrun coordinator: warning: %s\n", text.c_str());
}

std::string Coordinator::Impl::ProgressLineLocked(bool final_line) const {
  ProgressLineInput in;
  in.counts = state_.counts();
  in.plan_complete = state_.plan_complete();
  in.elapsed_s = std::chrono::duration<double>(clock_->Now() - start_time_).count();
  in.eta_s = EtaSeconds(in.counts, in.plan_complete, first_lease_, completed_at_start_,
                        clock_->SteadyNow());
  in.carried_from = carried_from_;
  in.final_line = final_line;
  return ProgressLine(in);
}

std::string Coordinator::Impl::RunningSummaryLocked() const {
  return RunningSummary(state_.Running(),
                        [this](const RunningAttempt& a)
                            NO_THREAD_SAFETY_ANALYSIS { return nodes_.NodeOf(a); });
}

// ---------------------------------------------------------------------------------------------
// The supervisor

void Coordinator::Impl::SupervisorLoop() {
  {
    MutexLock lock(mu_);
    while (!ending_ && !interrupted_ && !shutting_down_) {
      TickLocked();
      if (ending_) break;
      cv_.WaitUntil(mu_, std::chrono::steady_clock::now() + kSupervisorTick);
    }
    if (shutting_down_ || !ending_) {
      if (!shutting_down_) StopInterruptedLocked();
      return;
    }
  }
  Finalize();
}

void Coordinator::Impl::StopInterruptedLocked() {
  // Interrupted (SIGTERM) while running: the journal has everything; a new run resumes.
  const JobCounts& c = state_.counts();
  SayLocked("Interrupted: no more mini batches are handed out; " + std::to_string(c.completed) +
            " of " + std::to_string(c.total) + (state_.plan_complete() ? "" : "+") +
            " mini batches processed. Run the job again on the same output to resume");
  log_->warn("interrupted");
  Status st = journal_->SyncAll();
  if (!st.ok()) log_->error("journal: {}", st.message());
  status_message_ = "interrupted; run again to resume";
  FinishLocked(kCoordinatorExitInterrupted);
}

void Coordinator::Impl::TickLocked() {
  SteadyTime now = clock_->SteadyNow();
  if (OutputFolderGone()) EndLocked(OutputLostEnding());
  if (ending_) return;
  RecordExpiredLocked(state_.ExpireLeases(now));
  CheckOutcomeLocked();
  if (ending_) return;
  CheckNoProgressLocked(now);
  if (ending_) return;

  const int64_t completed = state_.counts().completed;
  auto since = now - last_line_at_;
  if ((completed != last_line_completed_ && since >= kProgressLineEvery) ||
      (first_lease_ && since >= kQuietProgressLineEvery)) {
    last_line_at_ = now;
    last_line_completed_ = completed;
    SayLocked(ProgressLineLocked(false));
  }
}

// No progress: no mini-batch completed (or planned) for progressUpdateTimeout, counted from the
// first mini-batch handed out (workers lease once init() is done).
void Coordinator::Impl::CheckNoProgressLocked(SteadyTime now) {
  if (!first_lease_) return;
  double idle = Seconds(now - std::max(last_progress_, *first_lease_));
  if (idle > progress_timeout_s_) {
    Ending e;
    e.reason = kReasonNoProgress;
    e.early = true;
    e.message = "no mini-batch completed in the last " + FormatDuration(idle) +
                " (progressUpdateTimeout " + std::to_string(progress_timeout_s_) + " s); " +
                RunningSummaryLocked();
    e.look_first = {kHintOverview, kHintNodes, kHintUserErrors};
    EndLocked(std::move(e));
    return;
  }
  if (idle > progress_timeout_s_ / 2.0 &&
      (!last_warning_at_ || Seconds(now - *last_warning_at_) >= progress_timeout_s_ / 4.0)) {
    last_warning_at_ = now;
    SayLocked("Warning: no mini batch completed in the last " + FormatDuration(idle) +
              "; the job fails with NoProgress after " + FormatDuration(progress_timeout_s_) +
              "; " + RunningSummaryLocked());
  }
}

bool Coordinator::Impl::OutputFolderGone() const {
  struct stat sd;
  return !(::stat(state_dir_.c_str(), &sd) == 0 && sd.st_dev == state_dev_ &&
           sd.st_ino == state_ino_);
}

void Coordinator::Impl::RecordPartLocked(int64_t id, int64_t bytes, uint32_t crc) {
  if (id < 0) return;
  const size_t i = static_cast<size_t>(id);
  if (part_bytes_.size() <= i) {
    part_bytes_.resize(i + 1, -1);
    part_crc32_.resize(i + 1, 0);
  }
  part_bytes_[i] = bytes;
  part_crc32_[i] = crc;
}

// ---------------------------------------------------------------------------------------------
// Wait, Stop

int Coordinator::Impl::Wait() {
  MutexLock lock(mu_);
  while (!finished_) cv_.Wait(mu_);
  return exit_code_;
}

bool Coordinator::Impl::WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  std::vector<std::string> waiting;  // nodes not told yet
  bool told = false;
  while (true) {
    waiting = nodes_.NotToldTheEnd(clock_->SteadyNow(), std::chrono::seconds(lease_seconds_));
    told = (finished_ || ending_) && waiting.empty();
    const auto now = std::chrono::steady_clock::now();
    if (told || now >= deadline) break;
    cv_.WaitUntil(mu_, deadline);
  }
  if (log_ && !nodes_.empty()) {
    std::string names;
    for (const auto& n : waiting) names += (names.empty() ? "" : ", ") + n;
    log_->info(
        "{} after {:.1f} s",
        told ? "every agent heard that the job ended" : "not told that the job ended: " + names,
        Seconds(std::chrono::steady_clock::now() - start));
  }
  return told;
}

void Coordinator::Impl::Stop() {
  MutexLock lock(mu_);
  if (finished_) return;
  interrupted_ = true;
  cancel_assembly_ = true;
  if (planner_) planner_->Cancel();
  cv_.NotifyAll();
}

// ---------------------------------------------------------------------------------------------

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() = default;

StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  PR_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

StatusOr<protocol::RegisterResponse> Coordinator::Register(const protocol::RegisterRequest& req) {
  return impl_->Register(req);
}
StatusOr<protocol::LeaseResponse> Coordinator::Lease(const protocol::LeaseRequest& req) {
  return impl_->Lease(req);
}
StatusOr<protocol::ResultsResponse> Coordinator::Report(const protocol::ResultsRequest& req) {
  return impl_->Report(req);
}
protocol::Progress Coordinator::GetProgress() const { return impl_->GetProgress(); }
int Coordinator::Wait() { return impl_->Wait(); }
bool Coordinator::WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout) {
  return impl_->WaitForAgentsToHearTheEnd(timeout);
}
void Coordinator::Stop() { impl_->Stop(); }

}  // namespace parallelrun::rt
