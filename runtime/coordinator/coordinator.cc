#include "runtime/coordinator/coordinator.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/coordinator/error_digest.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/coordinator/journal.h"
#include "runtime/coordinator/line_file.h"
#include "runtime/coordinator/plan_file.h"
#include "runtime/coordinator/planner.h"
#include "runtime/coordinator/report_repair.h"
#include "runtime/coordinator/retry_from.h"
#include "runtime/logs/disk_full.h"
#include "runtime/logs/error_summary.h"
#include "runtime/logs/job_result.h"
#include "runtime/logs/log_layout.h"
#include "runtime/logs/overview.h"
#include "runtime/logs/readme_text.h"
#include "runtime/logs/report_csv.h"
#include "runtime/output/assembler.h"
#include "runtime/output/output_index.h"
#include "runtime/output/output_lock.h"

namespace parallelrun::rt {
namespace {

using protocol::HttpRequest;
using protocol::HttpResponse;

constexpr int kMaxLeasesPerRequest = 1000;
constexpr int kRetryAfterMs = 200;
// Real-time period of the supervisor thread (lease expiry, no-progress, periodic lines); what it
// compares against is the injected clock.
constexpr std::chrono::milliseconds kTick{100};
constexpr std::chrono::seconds kProgressLineEvery{5};
constexpr std::chrono::seconds kQuietProgressLineEvery{60};
constexpr size_t kMaxRunningNamed = 10;

// Reasons (the ParallelRunJob condition reasons of SPEC.md §6, plus InvalidInput for inputs that
// cannot be planned and OutputAssemblyFailed).
constexpr const char* kReasonCompleted = "Completed";
constexpr const char* kReasonInvalidInput = "InvalidInput";
constexpr const char* kReasonOutputInUse = "OutputInUse";
constexpr const char* kReasonErrorThreshold = "ErrorThresholdExceeded";
constexpr const char* kReasonFailedPercent = "AllowedFailedPercentExceeded";
constexpr const char* kReasonNoSucceeded = "NoSucceededItems";
constexpr const char* kReasonNoProgress = "NoProgress";
constexpr const char* kReasonInitFailed = "InitFailed";
constexpr const char* kReasonAssemblyFailed = "OutputAssemblyFailed";
constexpr const char* kReasonOutputLost = "OutputLost";

constexpr const char* kHintUserErrors =
    "logs/user/error.txt (one line per failed attempt), then the tracebacks in "
    "logs/user/error/<node>/<process>.txt";
constexpr const char* kHintReport =
    "logs/sys/job_report/processed_mini-batches.csv (one row per attempt of every mini-batch)";
constexpr const char* kHintOverview =
    "logs/job_progress_overview.<yyyymmddhh>.txt (the newest file: what ran where)";
constexpr const char* kHintNodes =
    "logs/sys/node/<node>/_main.txt (worker starts and exits) and logs/sys/error/<node>/";
constexpr const char* kHintMasterRole = "logs/sys/master_role.<n>.txt (the coordinator's log)";
constexpr const char* kHintRetryFrom =
    "spec.retryFrom and the earlier run's output folder it names (its .parallelrun/plan, "
    "journal and output_index)";
constexpr const char* kHintStderr =
    "logs/user/stderr/<node>/<process>.stderr.txt (what init() printed)";

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

HttpResponse Error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}};
  return r;
}

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

std::string InputTypeName(const Input& in) {
  return in.type == InputType::kFile ? "file" : "tabular";
}

struct NodeInfo {
  std::string name;
  int64_t pid = 0;
  SteadyTime last_seen;
  bool gave_up = false;
  bool told_end = false;  // answered with done or stop after the job ended
};

// An attempt that was running when the previous coordinator ended.
struct HeldAttempt {
  int attempt = 0;
  std::string node;
};

// How the job ended (decided once).
struct Ending {
  bool succeeded = false;
  std::string reason;
  std::string message;
  int exit_code = kCoordinatorExitJobFailed;
  bool early = false;        // stopped before every mini-batch was done: agents must stop now
  bool assemble = true;      // assemble the accepted parts
  bool output_lost = false;  // the output folder went away: no result.json, logs made again
  std::string traceback;     // InitFailed
  std::vector<std::string> look_first;
};

}  // namespace

class Coordinator::Impl {
 public:
  explicit Impl(CoordinatorOptions options);
  ~Impl();

  Status Init();
  HttpResponse Handle(const HttpRequest& request);
  protocol::Progress GetProgress() const;
  int Wait();
  bool WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout);
  void Stop();

 private:
  // kRejected: the job was refused before anything was written (OutputInUse, a retryFrom naming
  // the output folder itself).
  enum class Mode { kRun, kRejected, kFinished };

  void Reject(const std::string& reason, const std::string& message,
              std::vector<std::string> look_first);
  Status InitRun();
  Status Resume(int start_index);
  void RepairReportLocked(const ReportTail& tail);
  // retryFrom: ends the job with InvalidInput for a problem with the earlier run.
  void EndRetryFromLocked(const std::string& problem);
  // retryFrom: carries over the mini-batches [first, total) that completed in the earlier run.
  void CarryOverLocked(int64_t first);
  void StartPlanner(int64_t existing_records, int64_t valid_bytes);

  HttpResponse HandleRegister(const nlohmann::json& body);
  HttpResponse HandleLease(const nlohmann::json& body);
  HttpResponse HandleResults(const nlohmann::json& body);

  // All *Locked methods require mu_.
  uint32_t TouchNodeLocked(const std::string& name, SteadyTime now);
  const std::string& NodeNameLocked(const RunningAttempt& a) const;
  void HoldOpenAttemptsLocked(const std::unordered_map<int64_t, HeldAttempt>& open);
  void ReclaimLocked(const std::string& node, uint32_t index,
                     const std::vector<protocol::LeaseRef>& held, SteadyTime now);
  void SayLocked(const std::string& text);
  // A warning for the user: the log, the overview, and stderr (when the overview is not echoed),
  // since a progress display may skip overview lines.
  void WarnLocked(const std::string& text);
  void EndLocked(Ending ending);
  // A write under the output folder failed for lack of space: the job ends with DiskFull (once,
  // one log line) and stays resumable.
  void EndDiskFullLocked(const std::string& what, const std::string& error);
  void CheckOutcomeLocked();
  std::string LastRunErrorLocked() const;
  void TickLocked();
  // Leases lost (expired, or dropped when their agent registered again: `why` says which).
  void RecordExpiredLocked(const std::vector<ExpiredLease>& expired, const std::string& why = "");
  // Fencing: empty when `node` (index `index`) holds live attempt (id, attempt), else why not.
  std::string FenceLocked(int64_t id, int attempt, uint32_t index, const std::string& node) const;
  void OnDurable(std::vector<PlanEntry>&& entries);
  void OnPlanComplete();
  void OnPlanCompleteLocked();
  void OnPlanError(const Status& status);
  std::string ProgressTextLocked(bool final_line) const;
  std::optional<double> EtaSecondsLocked(SteadyTime now) const;
  std::string RunningSummaryLocked() const;

  void SupervisorLoop();
  // The output folder was deleted or replaced under the running job: .parallelrun/ is not the
  // folder InitRun made. Checked every tick, and again when the assembly misses a part (the folder
  // can go between two ticks).
  bool OutputFolderGone() const;
  Ending OutputLostEnding() const;
  void CheckOutputFolderLocked();
  void RecordPartLocked(int64_t id, int64_t bytes, uint32_t crc);
  RowSource PartSource(int64_t id) const;
  void Finalize();
  JobResult MakeResultLocked(const Ending& ending) const;
  StatusOr<protocol::Lease> MakeLease(const LeaseGrant& grant) const;

  CoordinatorOptions opt_;
  const Clock* clock_;
  std::optional<OutputLock> lock_;  // held from Init on, while the job may write the output
  Mode mode_ = Mode::kRun;
  std::string output_dir_, state_dir_, log_dir_, parts_dir_;
  std::string plan_path_, journal_path_, owner_path_, result_json_path_, output_file_;
  std::vector<std::string> input_dirs_;
  int lease_seconds_ = 90;
  int progress_timeout_s_ = 270;
  nlohmann::json register_body_;

  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<OverviewLog> overview_;
  std::unique_ptr<Journal> journal_;
  SpaceReserve space_reserve_;  // freed at the end so that job_result.txt fits on a full disk
  std::unique_ptr<ReportCsv> report_;
  AppendFile user_errors_;
  std::unique_ptr<PlanReader> plan_reader_;
  std::unique_ptr<Planner> planner_;
  std::unique_ptr<EarlierRun> earlier_;  // retryFrom; read only after InitRun
  std::thread supervisor_;
  std::atomic<bool> cancel_assembly_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  JobState state_;
  std::vector<NodeInfo> nodes_;
  std::unordered_map<std::string, uint32_t> node_index_;
  std::optional<Ending> ending_;
  bool interrupted_ = false;
  bool finished_ = false;
  bool shutting_down_ = false;
  int exit_code_ = -1;
  std::optional<JobResult> final_;
  std::string status_message_;  // Progress.message while running
  SystemTime start_time_;
  SteadyTime plan_started_;
  std::optional<SteadyTime> first_lease_;
  SteadyTime last_progress_;
  int64_t completed_at_start_ = 0;  // not counting carried-over mini-batches
  SteadyTime last_line_at_;
  int64_t last_line_completed_ = -1;
  std::optional<SteadyTime> last_warning_at_;
  std::string last_line_;
  std::string last_init_error_;
  // The last failed attempt's error ("mini-batch 3 attempt 2: ..."), quoted in a failed job's
  // message so that it says why and not only how many.
  std::string last_run_error_;
  ErrorDigest errors_{opt_.paths.code_dir};  // the user errors of failed attempts, grouped
  std::string last_init_traceback_;
  // Attempts handed out before a restart and held for their agents (JobState::Hold), by
  // mini-batch: an entry may outlive its hold (it is then ignored); cleared per node when the
  // node registers and when the hold ends.
  std::unordered_map<int64_t, HeldAttempt> held_;
  // .parallelrun/ as InitRun made it (device, inode).
  dev_t state_dev_ = 0;
  ino_t state_ino_ = 0;
  // append_row: the accepted part of each mini-batch as its agent reported it (size -1: unknown),
  // by id; what the assembly verifies.
  std::vector<int64_t> part_bytes_;
  std::vector<uint32_t> part_crc32_;
};

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
  start_time_ = clock_->Now();
  last_progress_ = clock_->SteadyNow();
  last_line_at_ = last_progress_;

  protocol::RegisterResponse reg;
  reg.spec = ToJson(opt_.spec);
  reg.code_dir = opt_.paths.code_dir;
  reg.input_dirs = opt_.paths.inputs;
  reg.side_input_dirs = opt_.paths.side_inputs;
  reg.output_dir = output_dir_;
  reg.log_dir = log_dir_;
  reg.parts_dir = parts_dir_;
  reg.arguments = ExpandArguments(opt_.spec, opt_.paths);
  reg.lease_seconds = lease_seconds_;
  register_body_ = reg;
}

Coordinator::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    cancel_assembly_ = true;
    cv_.notify_all();
  }
  // Planner callbacks take mu_, so join without holding it.
  planner_.reset();
  if (supervisor_.joinable()) supervisor_.join();
}

void Coordinator::Impl::Reject(const std::string& reason, const std::string& message,
                               std::vector<std::string> look_first) {
  mode_ = Mode::kRejected;
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
  if (PathExists(owner_path_)) {
    if (PathExists(result_json_path_)) {
      PR_ASSIGN_OR_RETURN(std::string text, ReadFile(result_json_path_));
      nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
      auto r = JobResultFromJson(j);
      if (!r.ok()) return r.status().WithContext(result_json_path_);
      mode_ = Mode::kFinished;
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
  overview_ = std::make_unique<OverviewLog>(log_dir_, clock_, opt_.echo);
  PR_ASSIGN_OR_RETURN(report_, ReportCsv::Open(JoinPath(log_dir_, kReportCsvFile)));
  PR_ASSIGN_OR_RETURN(user_errors_, AppendFile::Open(JoinPath(log_dir_, kUserErrorSummaryFile)));

  log_->info("coordinator {} started for job \"{}\" (owner {}), output {}", start_index,
             opt_.spec.name, opt_.owner_id, output_dir_);
  for (size_t i = 0; i < opt_.spec.inputs.size(); ++i) {
    log_->info("input {} \"{}\" ({}): {}", i, opt_.spec.inputs[i].name,
               InputTypeName(opt_.spec.inputs[i]), input_dirs_[i]);
  }
  return Resume(start_index);
}

Status Coordinator::Impl::Resume(int start_index) {
  std::lock_guard<std::mutex> lock(mu_);
  // retryFrom: the earlier run, read before this run's plan so that its records are compared as
  // they load. A problem with it ends the job below, once the logs say what happened.
  std::string retry_problem;
  if (!opt_.paths.retry_from_dir.empty()) {
    auto earlier = EarlierRun::Load(opt_.paths.retry_from_dir,
                                    opt_.spec.output_action == OutputAction::kAppendRow);
    if (earlier.ok()) {
      earlier_ = std::move(*earlier);
    } else {
      retry_problem = earlier.status().message();
    }
  }
  // The plan written so far (empty for a new job).
  std::optional<std::pair<int64_t, PlanEntry>> mismatch;
  auto plan = LoadPlan(plan_path_, [&](const PlanEntry& e) {
    int64_t id = state_.AddPlanned(e);
    if (earlier_ && !mismatch && !earlier_->Matches(id, e)) mismatch.emplace(id, e);
  });
  if (!plan.ok()) return plan.status();
  PR_RETURN_IF_ERROR(TruncateFile(plan_path_, plan->valid_bytes));
  if (!PathExists(plan_path_)) PR_RETURN_IF_ERROR(WriteFileAtomic(plan_path_, ""));
  PR_ASSIGN_OR_RETURN(plan_reader_, PlanReader::Open(plan_path_));
  if (plan->complete) state_.SetPlanComplete();

  // What earlier coordinators decided.
  bool have_start = false;
  int64_t ignored = 0;
  // Attempts handed out with no outcome (yet) in the journal: at the end, those still running
  // when the previous coordinator ended.
  std::unordered_map<int64_t, HeldAttempt> open;
  // The last records that each wrote a report row, to rebuild rows a crash cut off.
  ReportTail tail;
  auto valid = Journal::Replay(journal_path_, [&](const JournalRecord& r) -> Status {
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
  if (!valid.ok()) return valid.status();
  // Before Open cuts it off (and the start record follows).
  if (std::string torn = Journal::DescribeTornTail(journal_path_, *valid); !torn.empty()) {
    WarnLocked(torn);
  }
  PR_ASSIGN_OR_RETURN(journal_, Journal::Open(journal_path_, *valid));
  RepairReportLocked(tail);
  if (Status st = space_reserve_.Create(JoinPath(state_dir_, "space-reserve"), kSpaceReserveBytes);
      !st.ok()) {
    if (IsDiskFullError(st.message())) return st.WithContext(kReasonDiskFull);
    log_->warn("{}", st.message());
  }
  PR_ASSIGN_OR_RETURN(
      int64_t off, journal_->Append(JournalStartLine(start_index, clock_->Now(), opt_.owner_id)));
  PR_RETURN_IF_ERROR(journal_->SyncTo(off));
  if (ignored > 0) {
    log_->warn("journal: ignored {} records of mini-batches not in the plan", ignored);
  }
  HoldOpenAttemptsLocked(open);

  const JobCounts& c = state_.counts();
  std::string inputs;
  for (size_t i = 0; i < opt_.spec.inputs.size(); ++i) {
    if (i) inputs += ", ";
    inputs += opt_.spec.inputs[i].name + " (" + input_dirs_[i] + ")";
  }
  if (*valid > 0 || plan->records > 0) {
    SayLocked("Coordinator restarted (logs/sys/" + MasterRoleFile(start_index).substr(4) +
              "): resuming job " + opt_.spec.name + ": " + std::to_string(c.completed) + " of " +
              std::to_string(c.total) + (plan->complete ? "" : "+") +
              " mini batches already processed (" + std::to_string(c.failed) +
              " failed); they do not run again");
    log_->info(
        "resumed: plan has {} records{}, {} completed, {} failed, {} retried, {} carried over",
        plan->records, plan->complete ? " and END" : "", c.completed, c.failed, c.retried,
        c.carried);
  } else {
    SayLocked("Job " + opt_.spec.name + " started: " + std::to_string(opt_.desired_nodes) +
              " node(s) x " + std::to_string(opt_.spec.process_count_per_node) +
              " process(es), output " + output_dir_);
  }

  if (!retry_problem.empty()) {
    EndRetryFromLocked(retry_problem);
  } else if (earlier_) {
    const EarlierRun& er = *earlier_;
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
    } else if (plan->complete && !er.CheckTotal(c.total).ok()) {
      EndRetryFromLocked(er.CheckTotal(c.total).message());
    } else {
      CarryOverLocked(0);
    }
  }
  completed_at_start_ = c.completed - c.carried;

  // An input with no folder cannot be planned.
  for (size_t i = 0; i < input_dirs_.size(); ++i) {
    if (input_dirs_[i].empty()) {
      Ending e;
      e.reason = kReasonInvalidInput;
      e.exit_code = kCoordinatorExitInvalid;
      e.early = true;
      e.assemble = false;
      e.message = "spec.inputs[" + std::to_string(i) + "] (\"" + opt_.spec.inputs[i].name +
                  "\"): no folder was resolved for this input";
      EndLocked(std::move(e));
    }
  }
  if (!ending_) {
    if (!plan->complete) {
      SayLocked("Scheduling started: inputs " + inputs);
      StartPlanner(plan->records, plan->valid_bytes);
    } else if (c.total == 0) {
      OnPlanCompleteLocked();
    } else {
      CheckOutcomeLocked();
    }
  }
  supervisor_ = std::thread([this] { SupervisorLoop(); });
  return Status::Ok();
}

void Coordinator::Impl::EndRetryFromLocked(const std::string& problem) {
  Ending e;
  e.reason = kReasonInvalidInput;
  e.exit_code = kCoordinatorExitInvalid;
  e.early = true;
  e.assemble = false;
  e.message = "spec.retryFrom (" + opt_.paths.retry_from_dir + "): " + problem;
  if (earlier_) {
    // A plan that differs: the inputs or the way they are cut changed since the earlier run.
    e.message +=
        ". A retry must plan exactly the mini-batches of the earlier run: use the same inputs, "
        "miniBatchSize and input settings, or run without retryFrom";
  }
  e.look_first = {kHintRetryFrom, kHintMasterRole};
  EndLocked(std::move(e));
}

void Coordinator::Impl::RepairReportLocked(const ReportTail& tail) {
  const std::string path = JoinPath(log_dir_, kReportCsvFile);
  auto scan = ScanReportCsv(path);
  if (!scan.ok()) {
    log_->warn("report: {}; rows lost in a crash are not rebuilt", scan.status().message());
    return;
  }
  if (scan->valid_bytes < scan->size) {
    // A row cut short by a crash: it is rebuilt below with the others.
    log_->warn("report {}: cut a torn last row ({} bytes)", path, scan->size - scan->valid_bytes);
    if (Status st = TruncateFile(path, scan->valid_bytes); !st.ok()) {
      log_->warn("report: {}", st.message());
      return;
    }
    if (scan->valid_bytes == 0)
      (void)report_->AppendFormatted(std::string(kReportCsvHeader) + "\n");
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
    log_->warn("report {} has {} rows where the journal recorded {} results; not rebuilt", path,
               scan->rows, tail.rows());
    return;
  }
  std::string rows;
  for (int64_t i = kept - missing; i < kept; ++i) {
    rows += FormatReportRow(ReportRowFromJournal(records[i], state_));
  }
  if (Status st = report_->AppendFormatted(rows); !st.ok()) {
    log_->warn("report: {}", st.message());
    return;
  }
  log_->info(
      "report: rebuilt {} row(s) that the journal recorded before the last coordinator "
      "stopped",
      missing);
}

void Coordinator::Impl::CarryOverLocked(int64_t first) {
  if (!earlier_ || ending_) return;
  const int64_t total = state_.counts().total;
  std::string journal_lines, report_rows;
  int64_t carried = 0;
  for (int64_t id = first; id < total; ++id) {
    auto from = earlier_->Carried(id);
    if (!from || !state_.Carry(id, from->succeeded)) continue;
    ++carried;
    journal_lines += JournalCarriedLine(id, from->attempt, from->succeeded, from->failed);
    ReportRow row;
    row.mini_batch_id = id;
    row.attempt = from->attempt;
    row.accepted = true;
    row.total = state_.items(id);
    row.succeeded = from->succeeded;
    row.failed = from->failed;
    row.status = "CARRIED_OVER";
    row.detail = "carried over from " + earlier_->dir();
    report_rows += FormatReportRow(row);
  }
  if (carried == 0) return;
  // Not synced on its own: a carried record that is lost in a crash is decided again the same way
  // on restart (the earlier run is only read).
  auto off = journal_->Append(journal_lines);
  if (!off.ok()) log_->error("journal: {}", off.status().message());
  Status st = report_->AppendFormatted(report_rows);
  if (!st.ok()) log_->error("report: {}", st.message());
  log_->debug("carried over {} mini-batches from {}", carried, earlier_->dir());
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
    std::lock_guard<std::mutex> lock(mu_);
    WarnLocked(warning);
  };
  planner_ = std::make_unique<Planner>(std::move(po));
  planner_->Start();
}

// ---------------------------------------------------------------------------------------------
// Planner callbacks

void Coordinator::Impl::OnDurable(std::vector<PlanEntry>&& entries) {
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  if (ending_ || interrupted_) return;
  Ending e;
  e.reason = kReasonInvalidInput;
  e.exit_code = kCoordinatorExitInvalid;
  e.early = true;
  e.assemble = false;
  e.message = "cannot plan the job: " + status.message();
  e.look_first = {"the input named in the message", kHintMasterRole};
  EndLocked(std::move(e));
}

// ---------------------------------------------------------------------------------------------
// Logging helpers

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

void Coordinator::Impl::EndLocked(Ending ending) {
  if (ending_) return;
  if (ending.look_first.empty()) {
    if (ending.succeeded) {
      if (state_.counts().items_failed > 0) ending.look_first = {kHintUserErrors, kHintReport};
    } else {
      ending.look_first = {kHintUserErrors, kHintReport, kHintOverview};
    }
  }
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
  cv_.notify_all();
}

std::string Coordinator::Impl::RunningSummaryLocked() const {
  auto running = state_.Running();
  if (running.empty()) return "none running";
  std::string s;
  size_t n = 0;
  for (const auto& r : running) {
    if (n == kMaxRunningNamed) {
      s += ", and " + std::to_string(running.size() - n) + " more";
      break;
    }
    if (n++) s += ", ";
    s += "mini-batch " + std::to_string(r.id) + " (attempt " + std::to_string(r.attempt) + ") on " +
         NodeNameLocked(r);
  }
  return "running: " + s;
}

std::optional<double> Coordinator::Impl::EtaSecondsLocked(SteadyTime now) const {
  if (!state_.plan_complete() || !first_lease_) return std::nullopt;
  const JobCounts& c = state_.counts();
  int64_t done_here = c.completed - c.carried - completed_at_start_;
  if (done_here <= 0) return std::nullopt;
  double elapsed = Seconds(now - *first_lease_);
  return elapsed * static_cast<double>(c.total - c.completed) / static_cast<double>(done_here);
}

std::string Coordinator::Impl::ProgressTextLocked(bool final_line) const {
  const JobCounts& c = state_.counts();
  std::string s =
      "Processed " + std::to_string(c.completed) + " of " + std::to_string(c.total) +
      (state_.plan_complete() ? "" : "+") + " mini batches in " +
      FormatDuration(std::chrono::duration<double>(clock_->Now() - start_time_).count());
  if (c.failed > 0) s += " (" + std::to_string(c.failed) + " failed)";
  if (final_line && earlier_) {
    s += ", " + std::to_string(c.carried) + " of them carried over from " + earlier_->dir();
  }
  if (!final_line && c.completed < c.total) {
    auto eta = EtaSecondsLocked(clock_->SteadyNow());
    if (eta) s += ", estimated " + FormatDuration(*eta) + " remaining";
  }
  return s;
}

uint32_t Coordinator::Impl::TouchNodeLocked(const std::string& name, SteadyTime now) {
  auto it = node_index_.find(name);
  if (it != node_index_.end()) {
    nodes_[it->second].last_seen = now;
    return it->second;
  }
  uint32_t index = static_cast<uint32_t>(nodes_.size());
  NodeInfo info;
  info.name = name;
  info.last_seen = now;
  nodes_.push_back(info);
  node_index_.emplace(name, index);
  return index;
}

const std::string& Coordinator::Impl::NodeNameLocked(const RunningAttempt& a) const {
  static const std::string kUnknown = "a node of the previous coordinator";
  if (a.node != kNoNode) return nodes_[a.node].name;
  auto it = held_.find(a.id);
  return it == held_.end() ? kUnknown : it->second.node;
}

// Attempts that were running when the previous coordinator ended keep running for one lease
// period: an agent that outlived the coordinator reclaims them when it registers again (or
// renews them), and no other agent gets those mini-batches meanwhile.
void Coordinator::Impl::HoldOpenAttemptsLocked(
    const std::unordered_map<int64_t, HeldAttempt>& open) {
  const SteadyTime until = clock_->SteadyNow() + std::chrono::seconds(lease_seconds_);
  for (const auto& [id, attempt] : open) {
    if (state_.Hold(id, attempt.attempt, until)) held_.emplace(id, attempt);
  }
  if (!held_.empty()) {
    log_->info(
        "{} mini-batches were running when the previous coordinator ended; they are kept for "
        "their agents for up to {} s, then queued again without counting a try",
        held_.size(), lease_seconds_);
  }
}

// A node registers: what it still runs from before a restart is its again; what it no longer
// has (a restarted agent) goes back to the queue at once, without counting a try.
void Coordinator::Impl::ReclaimLocked(const std::string& node, uint32_t index,
                                      const std::vector<protocol::LeaseRef>& held, SteadyTime now) {
  if (held_.empty()) return;
  std::set<std::pair<int64_t, int>> has;
  for (const auto& ref : held) has.emplace(ref.mini_batch_id, ref.attempt);
  const SteadyTime expiry = now + std::chrono::seconds(lease_seconds_);
  std::string journal_lines;
  int reclaimed = 0, released = 0;
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.node != node) {
      ++it;
      continue;
    }
    const int64_t id = it->first;
    const int attempt = it->second.attempt;
    if (has.count({id, attempt})) {
      reclaimed += state_.Renew(id, attempt, index, expiry) ? 1 : 0;
    } else if (state_.GiveBack(id, attempt, kNoNode)) {
      journal_lines += JournalReleasedLine(id, attempt, node);
      ++released;
    }
    it = held_.erase(it);
  }
  if (reclaimed + released == 0) return;
  log_->info(
      "node {} registered again: it still holds {} of the mini-batches it had before the restart; "
      "{} went back to the queue without counting a try",
      node, reclaimed, released);
  if (!journal_lines.empty()) {
    auto off = journal_->Append(journal_lines);
    if (!off.ok()) log_->error("journal: {}", off.status().message());
  }
}

std::string Coordinator::Impl::FenceLocked(int64_t id, int attempt, uint32_t index,
                                           const std::string& node) const {
  if (id < 0 || id >= state_.counts().total) return "it is not a planned mini-batch";
  auto holder = state_.Holder(id, attempt);
  if (!holder) {
    return state_.status(id) == MiniBatchStatus::kCompleted ||
                   state_.status(id) == MiniBatchStatus::kFailed
               ? "the mini-batch already ended"
               : "attempt " + std::to_string(attempt) + " is not the one on lease";
  }
  if (*holder == index) return "";
  if (*holder == kNoNode) {
    auto it = held_.find(id);
    if (it != held_.end() && it->second.attempt == attempt && it->second.node == node) return "";
    return "it is held for " + (it == held_.end() ? std::string("another node") : it->second.node);
  }
  return "it is on lease to " + nodes_[*holder].name;
}

// ---------------------------------------------------------------------------------------------
// HTTP

HttpResponse Coordinator::Impl::Handle(const HttpRequest& request) {
  struct Route {
    const char* path;
    const char* method;
  };
  static constexpr Route kRoutes[] = {{"/v1/register", "POST"},
                                      {"/v1/lease", "POST"},
                                      {"/v1/results", "POST"},
                                      {"/v1/progress", "GET"}};
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (request.path == r.path) route = &r;
  }
  if (!route) {
    return Error(404, "unknown path " + request.path +
                          "; expected /v1/register, /v1/lease, /v1/results or /v1/progress");
  }
  if (request.method != route->method) {
    return Error(405, request.method + " " + request.path + ": use " + route->method);
  }
  if (request.path == std::string("/v1/progress")) {
    HttpResponse r;
    r.body = GetProgress();
    return r;
  }
  const std::string what = "body of " + request.method + " " + request.path;
  if (!request.body.is_object()) return Error(400, what + ": expected a JSON object");
  try {
    if (request.path == std::string("/v1/register")) return HandleRegister(request.body);
    if (request.path == std::string("/v1/lease")) return HandleLease(request.body);
    return HandleResults(request.body);
  } catch (const nlohmann::json::exception& e) {
    return Error(400, what + ": " + e.what());
  }
}

HttpResponse Coordinator::Impl::HandleRegister(const nlohmann::json& body) {
  auto req = body.get<protocol::RegisterRequest>();
  if (req.node.empty()) return Error(400, "body of POST /v1/register: node: required");
  if (mode_ == Mode::kRun) {
    std::lock_guard<std::mutex> lock(mu_);
    bool known = node_index_.count(req.node) > 0;
    uint32_t index = TouchNodeLocked(req.node, clock_->SteadyNow());
    NodeInfo& node = nodes_[index];
    bool restarted = known && node.pid != req.pid;
    node.pid = req.pid;
    if (restarted && node.gave_up) node.gave_up = false;  // a new agent tries again
    if (!known) {
      SayLocked("Node " + req.node + " joined (agent pid " + std::to_string(req.pid) + ")");
    } else if (restarted) {
      log_->info("node {} registered again (agent pid {})", req.node, req.pid);
    }
    // Once the job ended the state is frozen (Finalize reads it without the lock).
    if (!ending_ && !interrupted_) {
      ReclaimLocked(req.node, index, req.held, clock_->SteadyNow());
      if (known) {
        // What the node had on lease and its agent no longer has (a restarted agent has nothing;
        // one that lost a lease reply never got it) goes back now, not after the lease.
        std::vector<std::pair<int64_t, int>> keep;
        for (const auto& ref : req.held) keep.emplace_back(ref.mini_batch_id, ref.attempt);
        RecordExpiredLocked(state_.DropNodeAttempts(index, keep),
                            "the agent on " + req.node + " registered again (pid " +
                                std::to_string(req.pid) + ") without it");
        CheckOutcomeLocked();
      }
    }
  }
  HttpResponse r;
  r.body = register_body_;
  return r;
}

StatusOr<protocol::Lease> Coordinator::Impl::MakeLease(const LeaseGrant& grant) const {
  PR_ASSIGN_OR_RETURN(MiniBatch mb,
                      plan_reader_->Read(PlanEntry{grant.plan_offset, grant.plan_length, 0}));
  if (mb.id != grant.id || mb.input_index < 0 ||
      mb.input_index >= static_cast<int>(opt_.spec.inputs.size())) {
    return InternalError(plan_path_ + ": the record at byte " + std::to_string(grant.plan_offset) +
                         " is not mini-batch " + std::to_string(grant.id));
  }
  const Input& in = opt_.spec.inputs[static_cast<size_t>(mb.input_index)];
  const std::string& dir = input_dirs_[static_cast<size_t>(mb.input_index)];
  protocol::Lease l;
  l.mini_batch_id = grant.id;
  l.attempt = grant.attempt;
  l.input_name = in.name;
  l.input_type = InputTypeName(in);
  if (in.type == InputType::kFile) {
    l.files.reserve(mb.files.size());
    for (const auto& f : mb.files) l.files.push_back(JoinPath(dir, f));
    l.file_sizes = mb.file_sizes;
    l.file_mtimes_ns = mb.file_mtimes_ns;
  } else if (!mb.segments.empty()) {
    l.header = in.header;
    l.segments = LeaseSegments(dir, mb.segments);
  } else {
    l.file = JoinPath(dir, mb.file);
    l.format = mb.format == TabularFormat::kJsonl ? "jsonl" : "csv";
    l.header = in.header;
    l.header_end = mb.header_end;
    l.begin = mb.begin;
    l.end = mb.end;
    l.file_size = mb.file_size;
    l.file_mtime_ns = mb.file_mtime_ns;
  }
  l.items = mb.items;
  for (const auto& [key, value] : mb.partition_key_value) {
    l.partition_key_value.push_back({key, value});
  }
  if (opt_.spec.output_action == OutputAction::kAppendRow) {
    l.part_file =
        JoinPath(parts_dir_, std::to_string(grant.id) + "." + std::to_string(grant.attempt));
  }
  return l;
}

HttpResponse Coordinator::Impl::HandleLease(const nlohmann::json& body) {
  auto req = body.get<protocol::LeaseRequest>();
  if (req.node.empty()) return Error(400, "body of POST /v1/lease: node: required");
  if (req.max < 0) {
    return Error(400, "body of POST /v1/lease: max: got " + std::to_string(req.max) +
                          ", expected an integer >= 0");
  }
  protocol::LeaseResponse resp;
  std::vector<LeaseGrant> grants;
  if (mode_ != Mode::kRun) {
    // A finished job has nothing left to run; an output owned by another job must not be touched.
    resp.done = mode_ == Mode::kFinished;
    resp.stop = !resp.done;
    resp.cancel = req.renew;
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    SteadyTime now = clock_->SteadyNow();
    uint32_t node = TouchNodeLocked(req.node, now);
    if (ending_ || interrupted_) {
      // Nothing more will be handed out. Early ends cancel running work; after a normal end no
      // live attempt is left, so whatever the agent still renews is stale.
      resp.stop = interrupted_ || ending_->early;
      resp.done = !resp.stop;
      resp.cancel = req.renew;
      nodes_[node].told_end = true;
      cv_.notify_all();
    } else {
      SteadyTime expiry = now + std::chrono::seconds(lease_seconds_);
      for (const auto& ref : req.renew) {
        if (!FenceLocked(ref.mini_batch_id, ref.attempt, node, req.node).empty() ||
            !state_.Renew(ref.mini_batch_id, ref.attempt, node, expiry)) {
          resp.cancel.push_back(ref);
        } else if (auto it = held_.find(ref.mini_batch_id);
                   it != held_.end() && it->second.attempt == ref.attempt) {
          held_.erase(it);  // reclaimed by its renewal
        }
      }
      if (req.max > 0) {
        grants = state_.Lease(node, std::min(req.max, kMaxLeasesPerRequest), expiry);
      }
      if (!grants.empty()) {
        if (!first_lease_) {
          first_lease_ = now;
          last_progress_ = now;
          SayLocked("First mini batch handed out (to " + req.node + ")");
        }
        std::string lines;
        for (const auto& g : grants) {
          lines += JournalLeaseLine(g.id, g.attempt, req.node);
          log_->debug("lease mini-batch {} attempt {} to {}", g.id, g.attempt, req.node);
        }
        auto st = journal_->Append(lines);
        if (!st.ok()) log_->error("journal: {}", st.status().message());
      } else if (req.max > 0) {
        resp.retry_after_ms = kRetryAfterMs;
      }
    }
  }
  // Plan records are read outside the lock: the file is durable and only appended to.
  resp.leases.reserve(grants.size());
  for (const auto& g : grants) {
    auto lease = MakeLease(g);
    if (!lease.ok()) {
      // The attempt stays leased and expires; that is a failed try, not a lost mini-batch.
      std::lock_guard<std::mutex> lock(mu_);
      log_->error("cannot hand out mini-batch {}: {}", g.id, lease.status().message());
      continue;
    }
    resp.leases.push_back(std::move(*lease));
  }
  HttpResponse r;
  r.body = resp;
  return r;
}

HttpResponse Coordinator::Impl::HandleResults(const nlohmann::json& body) {
  auto req = body.get<protocol::ResultsRequest>();
  const std::string what = "body of POST /v1/results: ";
  if (req.node.empty()) return Error(400, what + "node: required");
  std::vector<AttemptStatus> statuses;
  statuses.reserve(req.results.size());
  for (size_t i = 0; i < req.results.size(); ++i) {
    const auto& r = req.results[i];
    auto st = ParseAttemptStatus(r.status);
    if (!st) {
      return Error(400, what + "results[" + std::to_string(i) + "].status: got \"" + r.status +
                            "\", expected one of RUN_DONE, RUN_EXCEPTION, RUN_TIMEOUT, "
                            "RUN_WRONG_TYPE, WORKER_DIED, CANCELLED, LEASE_EXPIRED, INIT_FAILED, "
                            "INIT_TIMEOUT");
    }
    if (r.attempt < 1) {
      return Error(400, what + "results[" + std::to_string(i) + "].attempt: got " +
                            std::to_string(r.attempt) + ", expected an integer >= 1");
    }
    statuses.push_back(*st);
  }

  protocol::ResultsResponse resp;
  int64_t sync_to = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (mode_ != Mode::kRun || ending_ || interrupted_) {
      // The job is over: these results can no longer change it.
      if (mode_ == Mode::kRun && !req.results.empty()) {
        log_->info("ignored {} results from {} after the job ended", req.results.size(), req.node);
      }
      if (mode_ == Mode::kRun) {
        nodes_[TouchNodeLocked(req.node, clock_->SteadyNow())].told_end = true;
        cv_.notify_all();
      }
      resp.stop = true;
      HttpResponse out;
      out.body = resp;
      return out;
    }
    const int64_t total = state_.counts().total;
    auto planned = [&](const char* field, size_t i, int64_t id) -> std::optional<HttpResponse> {
      if (id >= 0 && id < total) return std::nullopt;
      return Error(400, what + field + "[" + std::to_string(i) + "].mini_batch_id: got " +
                            std::to_string(id) + ", expected a planned mini-batch (0.." +
                            std::to_string(total - 1) + ")");
    };
    for (size_t i = 0; i < req.results.size(); ++i) {
      if (auto bad = planned("results", i, req.results[i].mini_batch_id)) return *bad;
    }
    for (size_t i = 0; i < req.released.size(); ++i) {
      if (auto bad = planned("released", i, req.released[i].mini_batch_id)) return *bad;
    }
    SteadyTime now = clock_->SteadyNow();
    SystemTime wall = clock_->Now();
    const uint32_t node = TouchNodeLocked(req.node, now);

    std::string journal_lines, report_rows, error_lines;
    // {what, error} when a worker could not write its results for lack of space.
    std::vector<std::string> disk_full;
    // Given back unrun (the agent is stopping): first in line again, no try counted, no report
    // row (nothing ran).
    int released = 0;
    for (const auto& ref : req.released) {
      if (!FenceLocked(ref.mini_batch_id, ref.attempt, node, req.node).empty()) continue;
      // A held attempt (kNoNode) given back by the node it was held for.
      const uint32_t holder = state_.Holder(ref.mini_batch_id, ref.attempt).value_or(node);
      if (!state_.GiveBack(ref.mini_batch_id, ref.attempt, holder)) continue;
      journal_lines += JournalReleasedLine(ref.mini_batch_id, ref.attempt, req.node);
      ++released;
    }
    if (released > 0) {
      log_->info("{} gave back {} lease(s) it had not run; they are queued again", req.node,
                 released);
    }
    for (size_t i = 0; i < req.results.size(); ++i) {
      const auto& r = req.results[i];
      AttemptStatus status = statuses[i];
      if (status == AttemptStatus::kRunDone &&
          state_.status(r.mini_batch_id) == MiniBatchStatus::kCompleted &&
          state_.accepted_attempt(r.mini_batch_id) == r.attempt) {
        // The accepted result sent again (its answer was lost): acknowledged, not counted again.
        resp.accepted.push_back(protocol::LeaseRef{r.mini_batch_id, r.attempt});
        continue;
      }
      // Fencing: only the node holding the lease of this very attempt may report it.
      if (std::string why = FenceLocked(r.mini_batch_id, r.attempt, node, req.node); !why.empty()) {
        log_->warn("refused the {} result of mini-batch {} attempt {} from {}: {}", r.status,
                   r.mini_batch_id, r.attempt, req.node, why);
        resp.refused.push_back(protocol::LeaseRef{r.mini_batch_id, r.attempt});
        continue;
      }
      if (auto it = held_.find(r.mini_batch_id);
          it != held_.end() && it->second.attempt == r.attempt) {
        held_.erase(it);  // reclaimed by its result
      }
      Decision d = state_.Apply(r.mini_batch_id, r.attempt, status, r.succeeded);
      journal_lines += JournalResultLine(r, req.node, d);
      if (d.accepted && d.outcome == Outcome::kCompleted && r.part_bytes >= 0) {
        RecordPartLocked(r.mini_batch_id, r.part_bytes, r.part_crc32);
      }
      ReportRow row;
      row.mini_batch_id = r.mini_batch_id;
      row.attempt = r.attempt;
      row.accepted = d.accepted;
      row.node = req.node;
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
      report_rows += FormatReportRow(row);
      if (disk_full.empty() && IsDiskFullError(r.error) &&
          r.error.find(output_dir_) != std::string::npos) {
        disk_full = {"mini-batch " + std::to_string(r.mini_batch_id) + "'s results (node " +
                         req.node + ", " + r.process + ")",
                     r.error};
      }
      if (d.outcome == Outcome::kCompleted || d.outcome == Outcome::kFailed) last_progress_ = now;
      if (status != AttemptStatus::kRunDone && status != AttemptStatus::kCancelled) {
        if (!r.error.empty()) {
          last_run_error_ = "mini-batch " + std::to_string(r.mini_batch_id) + " attempt " +
                            std::to_string(r.attempt) + ": " + r.error;
        }
        errors_.Add(r.error, r.detail, r.mini_batch_id, r.total, Iso8601Utc(wall));
        ErrorSummaryEntry e{wall,      req.node, r.process, r.mini_batch_id,
                            r.attempt, r.status, r.error};
        error_lines += FormatErrorSummaryLine(e);
        const std::string failed =
            fmt::format("mini-batch {} attempt {} on {} {}: {}: {} -> {}", r.mini_batch_id,
                        r.attempt, req.node, r.process, r.status, r.error, OutcomeName(d.outcome));
        log_->warn("{}", failed);
        if (opt_.echo) opt_.echo(failed);  // the pod log: one line per failed attempt
      } else {
        log_->debug("mini-batch {} attempt {} on {} {}: {} -> {}", r.mini_batch_id, r.attempt,
                    req.node, r.process, r.status, OutcomeName(d.outcome));
      }
      resp.accepted.push_back(protocol::LeaseRef{r.mini_batch_id, r.attempt});
    }

    for (const auto& ev : req.events) {
      if (ev.kind == "WORKER_STARTED") {
        log_->info("{} {} started (pid {})", req.node, ev.process, ev.pid);
      } else if (ev.kind == "WORKER_EXITED") {
        log_->info("{} {} exited (pid {}): {} {}", req.node, ev.process, ev.pid, ev.error,
                   ev.detail);
      } else if (ev.kind == "INIT_FAILED" || ev.kind == "INIT_TIMEOUT") {
        last_init_error_ = ev.error;
        if (!ev.detail.empty()) last_init_traceback_ = ev.detail;
        errors_.Add(ev.error, ev.detail, -1, 0, Iso8601Utc(wall));
        ErrorSummaryEntry e{wall, req.node, ev.process, -1, 0, ev.kind, ev.error};
        error_lines += FormatErrorSummaryLine(e);
        log_->warn("{} {} {}: {}", req.node, ev.process, ev.kind, ev.error);
      } else if (ev.kind == "NODE_GAVE_UP") {
        uint32_t index = TouchNodeLocked(req.node, now);
        if (!nodes_[index].gave_up) {
          nodes_[index].gave_up = true;
          SayLocked("Node " + req.node + " stopped starting workers after init() failures" +
                    (last_init_error_.empty() ? std::string() : ": " + last_init_error_));
        }
      } else {
        log_->warn("{}: unknown worker event \"{}\" ignored", req.node, ev.kind);
      }
    }

    if (!journal_lines.empty()) {
      auto off = journal_->Append(journal_lines);
      if (!off.ok()) {
        if (IsDiskFullError(off.status().message())) {
          EndDiskFullLocked("the journal " + journal_path_, off.status().message());
        }
        return Error(500, "cannot write the journal: " + off.status().message());
      }
      sync_to = *off;
    }
    if (!disk_full.empty()) EndDiskFullLocked(disk_full[0], disk_full[1]);
    Status st = report_->AppendFormatted(report_rows);
    if (!st.ok()) log_->error("report: {}", st.message());
    if (!error_lines.empty() && user_errors_.is_open()) {
      st = user_errors_.Append(error_lines);
      if (!st.ok()) log_->error("{}", st.message());
    }

    int64_t gave_up = 0;
    for (const auto& n : nodes_) gave_up += n.gave_up ? 1 : 0;
    if (gave_up >= opt_.desired_nodes && gave_up > 0 && !ending_) {
      Ending e;
      e.reason = kReasonInitFailed;
      e.early = true;
      e.message = "every node (" + std::to_string(gave_up) +
                  ") stopped starting workers after init() failures" +
                  (last_init_error_.empty() ? std::string() : "; last error: " + last_init_error_);
      e.traceback = last_init_traceback_;
      e.look_first = {kHintUserErrors, kHintStderr, kHintNodes};
      EndLocked(std::move(e));
    }
    CheckOutcomeLocked();
    resp.stop = ending_ && ending_->early;
    if (resp.stop) {
      nodes_[node].told_end = true;
      cv_.notify_all();
    }
  }
  if (sync_to >= 0) {
    Status st = journal_->SyncTo(sync_to);
    if (!st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      log_->error("journal: {}", st.message());
      if (IsDiskFullError(st.message())) {
        EndDiskFullLocked("the journal " + journal_path_, st.message());
      }
      return Error(500, "cannot sync the journal: " + st.message());
    }
  }
  HttpResponse out;
  out.body = resp;
  if (!req.results.empty() && resp.accepted.empty()) {
    // Every result refused: a conflict, so a client that does not read `refused` still sees it.
    out.status = 409;
    out.body["reason"] = "refused all " + std::to_string(req.results.size()) +
                         " result(s): " + req.node +
                         " does not hold the lease of those attempts (see refused)";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Outcome

std::string Coordinator::Impl::LastRunErrorLocked() const {
  if (!errors_.empty()) return MostFrequentErrorSuffix(errors_);
  return last_run_error_.empty() ? std::string() : "; last error: " + last_run_error_;
}

void Coordinator::Impl::CheckOutcomeLocked() {
  if (ending_) return;
  const JobSpec& s = opt_.spec;
  const JobCounts& c = state_.counts();
  if (s.error_threshold >= 0 && c.items_failed > s.error_threshold) {
    Ending e;
    e.reason = kReasonErrorThreshold;
    e.early = !state_.AllDone();
    e.message = std::to_string(c.items_failed) + " failed items exceed errorThreshold " +
                std::to_string(s.error_threshold) + LastRunErrorLocked();
    EndLocked(std::move(e));
    return;
  }
  if (s.allowed_failed_count >= 0 && c.failed > s.allowed_failed_count) {
    Ending e;
    e.reason = kReasonErrorThreshold;
    e.early = !state_.AllDone();
    e.message = std::to_string(c.failed) + " failed mini-batches exceed allowedFailedCount " +
                std::to_string(s.allowed_failed_count) + LastRunErrorLocked();
    EndLocked(std::move(e));
    return;
  }
  if (!state_.AllDone() || c.total == 0) return;
  Ending e;
  if (c.failed * 100 > static_cast<int64_t>(s.allowed_failed_percent) * c.total) {
    e.reason = kReasonFailedPercent;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%",
                  100.0 * static_cast<double>(c.failed) / static_cast<double>(c.total));
    e.message = std::to_string(c.failed) + " of " + std::to_string(c.total) +
                " mini-batches failed (" + pct + "), more than allowedFailedPercent " +
                std::to_string(s.allowed_failed_percent) + "%" + LastRunErrorLocked();
  } else if (c.failed == c.total || (c.items_succeeded == 0 && s.error_threshold != -1)) {
    // Azure ML's rule: with errorThreshold -1 a job whose every mini-batch completed succeeds
    // even if run() returned fewer rows than items (training scripts return []).
    e.reason = kReasonNoSucceeded;
    e.message = (c.failed == c.total ? "no mini-batch completed: "
                                     : "no item succeeded (errorThreshold is not -1): ") +
                std::to_string(c.failed) + " of " + std::to_string(c.total) +
                " mini-batches failed and " + std::to_string(c.items_failed) + " of " +
                std::to_string(c.items_total) + " items failed" + LastRunErrorLocked();
  } else {
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
    if (earlier_) {
      e.message +=
          "; " + std::to_string(c.carried) + " mini-batches carried over from " + earlier_->dir();
    }
  }
  EndLocked(std::move(e));
}

// ---------------------------------------------------------------------------------------------
// Timers

void Coordinator::Impl::RecordExpiredLocked(const std::vector<ExpiredLease>& expired,
                                            const std::string& why) {
  if (expired.empty()) return;
  std::string journal_lines, report_rows, error_lines;
  SystemTime wall = clock_->Now();
  for (const auto& x : expired) {
    const std::string node = NodeNameLocked(x.attempt);
    if (x.outcome == Outcome::kGivenBack) {
      // Held since the restart and not reclaimed: its agent ended with the old coordinator.
      journal_lines += JournalReleasedLine(x.attempt.id, x.attempt.attempt, node);
      log_->info(
          "mini-batch {} attempt {}, running on {} before the restart, was not reclaimed within "
          "{} s; queued again without counting a try",
          x.attempt.id, x.attempt.attempt, node, lease_seconds_);
      held_.erase(x.attempt.id);
      continue;
    }
    journal_lines += JournalExpiredLine(x.attempt.id, x.attempt.attempt, node, x.outcome);
    ReportRow row;
    row.mini_batch_id = x.attempt.id;
    row.attempt = x.attempt.attempt;
    row.accepted = x.outcome == Outcome::kFailed;
    row.node = node;
    row.total = x.items;
    row.failed = x.outcome == Outcome::kFailed ? x.items : 0;
    row.status = "LEASE_EXPIRED";
    row.error = !why.empty() ? why
                             : "no result or lease renewal from " + node + " within " +
                                   std::to_string(lease_seconds_) + " s";
    if (x.outcome == Outcome::kDisrupted) {
      row.error += "; not counted as a try (lost lease " + std::to_string(x.disruptions) + " of " +
                   std::to_string(kFreeDisruptions) + " that do not count)";
    }
    report_rows += FormatReportRow(row);
    if (x.outcome != Outcome::kDisrupted) {
      errors_.Add(row.error, "", x.attempt.id, x.items, Iso8601Utc(wall));
    }
    ErrorSummaryEntry e{wall, node, "", x.attempt.id, x.attempt.attempt, row.status, row.error};
    error_lines += FormatErrorSummaryLine(e);
    const std::string lost = fmt::format(
        "lease of mini-batch {} attempt {} on {} {} -> {}", x.attempt.id, x.attempt.attempt, node,
        why.empty() ? "expired" : "lost: " + why, OutcomeName(x.outcome));
    log_->warn("{}", lost);
    if (opt_.echo) opt_.echo(lost);
    if (x.outcome == Outcome::kFailed) last_progress_ = clock_->SteadyNow();
  }
  auto off = journal_->Append(journal_lines);
  if (off.ok()) {
    Status st = journal_->SyncTo(*off);
    if (!st.ok()) log_->error("journal: {}", st.message());
  } else {
    log_->error("journal: {}", off.status().message());
  }
  if (!report_rows.empty()) (void)report_->AppendFormatted(report_rows);
  if (!error_lines.empty() && user_errors_.is_open()) (void)user_errors_.Append(error_lines);
}

void Coordinator::Impl::TickLocked() {
  SteadyTime now = clock_->SteadyNow();
  CheckOutputFolderLocked();
  if (ending_) return;
  RecordExpiredLocked(state_.ExpireLeases(now));
  CheckOutcomeLocked();
  if (ending_) return;

  // No progress: no mini-batch completed (or planned) for progressUpdateTimeout, counted from the
  // first mini-batch handed out (workers lease once init() is done).
  if (first_lease_) {
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

  const int64_t completed = state_.counts().completed;
  auto since = now - last_line_at_;
  if ((completed != last_line_completed_ && since >= kProgressLineEvery) ||
      (first_lease_ && since >= kQuietProgressLineEvery)) {
    last_line_at_ = now;
    last_line_completed_ = completed;
    SayLocked(ProgressTextLocked(false));
  }
}

bool Coordinator::Impl::OutputFolderGone() const {
  struct stat sd;
  return !(::stat(state_dir_.c_str(), &sd) == 0 && sd.st_dev == state_dev_ &&
           sd.st_ino == state_ino_);
}

void Coordinator::Impl::CheckOutputFolderLocked() {
  if (OutputFolderGone()) EndLocked(OutputLostEnding());
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

RowSource Coordinator::Impl::PartSource(int64_t id) const {
  RowSource s = PartFileSource(
      JoinPath(parts_dir_, std::to_string(id) + "." + std::to_string(state_.accepted_attempt(id))));
  const size_t i = static_cast<size_t>(id);
  if (i < part_bytes_.size() && part_bytes_[i] >= 0) {
    s.expected_bytes = part_bytes_[i];
    s.expected_crc32 = part_crc32_[i];
  }
  return s;
}

void Coordinator::Impl::SupervisorLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!ending_ && !interrupted_ && !shutting_down_) {
    TickLocked();
    if (ending_) break;
    cv_.wait_for(lock, kTick);
  }
  if (shutting_down_) return;
  if (!ending_) {
    // Interrupted (SIGTERM) while running: the journal has everything; a new run resumes.
    const JobCounts& c = state_.counts();
    SayLocked("Interrupted: no more mini batches are handed out; " + std::to_string(c.completed) +
              " of " + std::to_string(c.total) + (state_.plan_complete() ? "" : "+") +
              " mini batches processed. Run the job again on the same output to resume");
    log_->warn("interrupted");
    Status st = journal_->SyncAll();
    if (!st.ok()) log_->error("journal: {}", st.message());
    status_message_ = "interrupted; run again to resume";
    exit_code_ = kCoordinatorExitInterrupted;
    finished_ = true;
    cv_.notify_all();
    return;
  }
  lock.unlock();
  Finalize();
}

// ---------------------------------------------------------------------------------------------
// The end

JobResult Coordinator::Impl::MakeResultLocked(const Ending& e) const {
  const JobCounts& c = state_.counts();
  JobResult r;
  r.succeeded = e.succeeded;
  r.reason = e.reason;
  r.message = e.message;
  r.exit_code = e.exit_code;
  r.mini_batches_total = c.total;
  r.mini_batches_succeeded = c.completed - c.failed;
  r.mini_batches_failed = c.failed;
  r.mini_batches_retried = c.retried;
  if (earlier_) {
    r.mini_batches_carried_over = c.carried;
    r.carried_over_from = earlier_->dir();
  }
  r.items_total = c.items_total;
  r.items_succeeded = c.items_succeeded;
  r.items_failed = c.items_failed;
  SystemTime now = clock_->Now();
  r.start_time = Iso8601Utc(start_time_);
  r.completion_time = Iso8601Utc(now);
  r.duration_s = std::chrono::duration<double>(now - start_time_).count();
  r.log_dir = log_dir_;
  r.look_first = e.look_first;
  r.traceback = e.traceback;
  PutErrors(errors_, &r);
  return r;
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

void Coordinator::Impl::Finalize() {
  Ending e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    e = *ending_;
    space_reserve_.Release();
  }
  Status st = journal_->SyncAll();
  if (!st.ok()) log_->error("journal: {}", st.message());

  // The state is frozen once ending_ is set (no leases, results or expiries change it), so the
  // assembly reads it without the lock.
  std::string output_file;
  std::string warning;
  if (e.assemble && opt_.spec.output_action == OutputAction::kAppendRow) {
    const int64_t total = state_.counts().total;
    const int64_t parts = state_.counts().completed - state_.counts().failed;
    const int64_t carried = state_.counts().carried;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_message_ = "assembling output";
      SayLocked("Assembling output: " + std::to_string(parts - carried) + " parts" +
                (carried > 0 ? " and the rows of " + std::to_string(carried) +
                                   " mini batches carried over from " + earlier_->dir()
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
      std::lock_guard<std::mutex> lock(mu_);
      SayLocked("Assembling output: " + std::to_string(done) + " of " + std::to_string(parts) +
                " parts, " + std::to_string(bytes) + " bytes");
    };
    auto stats = AssembleAppendRow(ao, total, [this](int64_t id) -> RowSource {
      if (state_.status(id) != MiniBatchStatus::kCompleted) return RowSource();
      if (state_.carried(id)) return earlier_ ? earlier_->RowsOf(id) : RowSource();
      return PartSource(id);
    });
    std::lock_guard<std::mutex> lock(mu_);
    if (!stats.ok()) {
      if (stats.status().code() == StatusCode::kAborted) {
        SayLocked(
            "Interrupted while assembling the output. Run the job again on the same "
            "output to finish");
        status_message_ = "interrupted; run again to resume";
        exit_code_ = kCoordinatorExitInterrupted;
        finished_ = true;
        cv_.notify_all();
        return;
      }
      log_->error("output assembly failed: {}", stats.status().message());
      if (OutputFolderGone()) {
        e = OutputLostEnding();
      } else {
        e.succeeded = false;
        e.reason = kReasonAssemblyFailed;
        e.exit_code = kCoordinatorExitJobFailed;
        e.message = "cannot assemble the output: " + stats.status().message();
        e.look_first = {kHintMasterRole};
      }
    } else {
      output_file = output_file_;
      SayLocked("Assembled output " + output_file_ + ": " + std::to_string(stats->parts) +
                " parts, " + std::to_string(stats->bytes) + " bytes");
      if (stats->missing_parts > 0) {
        warning = std::to_string(stats->missing_parts) +
                  " accepted part files were missing and added no rows, e.g. " +
                  stats->missing_examples.front();
        log_->warn("{}", warning);
      }
    }
  }

  JobResult r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SayLocked(ProgressTextLocked(true));
    r = MakeResultLocked(e);
    r.output_file = output_file;
    r.warning = warning;
  }
  // A lost output folder gets its logs/ folder back, only to say why the job failed.
  if (e.output_lost) (void)MakeDirs(log_dir_);
  st = WriteFileAtomic(JoinPath(log_dir_, kJobResultFile), FormatJobResultText(r));
  if (!st.ok()) log_->error("{}", st.message());
  {
    std::lock_guard<std::mutex> lock(mu_);
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
      std::error_code ec;
      std::filesystem::remove_all(parts_dir_, ec);
    }
  }
  log_->info("finished: {} (exit code {}); the journal took {} fdatasyncs in this run",
             JobResultHeadline(r), r.exit_code, journal_->syncs());
  std::lock_guard<std::mutex> lock(mu_);
  final_ = r;
  exit_code_ = r.exit_code;
  finished_ = true;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Progress, Wait, Stop

protocol::Progress Coordinator::Impl::GetProgress() const {
  std::lock_guard<std::mutex> lock(mu_);
  protocol::Progress p;
  p.logs = log_dir_;
  p.outputFile = output_file_;
  p.nodes.desired = opt_.desired_nodes;
  p.lastProgressLine = last_line_;
  if (final_) {
    const JobResult& r = *final_;
    p.phase = r.succeeded ? "Succeeded" : "Failed";
    p.reason = r.reason;
    p.message = r.message;
    p.startTime = r.start_time;
    p.completionTime = r.completion_time;
    p.miniBatches.total = r.mini_batches_total;
    p.miniBatches.completed = r.mini_batches_succeeded + r.mini_batches_failed;
    p.miniBatches.failed = r.mini_batches_failed;
    p.miniBatches.retried = r.mini_batches_retried;
    p.items.total = r.items_total;
    p.items.succeeded = r.items_succeeded;
    p.items.failed = r.items_failed;
    p.progress =
        std::to_string(p.miniBatches.completed) + "/" + std::to_string(p.miniBatches.total);
    p.outputFile = r.output_file;
    p.planned = mode_ != Mode::kRejected;
    p.exitCode = r.exit_code;
    p.eta = "0:00:00";
    PutErrors(r, &p);
    if (mode_ == Mode::kRun) {
      // Nodes are still known while the coordinator runs on after the end.
      SteadyTime now = clock_->SteadyNow();
      for (const auto& n : nodes_) {
        if (now - n.last_seen <= std::chrono::seconds(lease_seconds_)) ++p.nodes.ready;
      }
    }
    return p;
  }
  const JobCounts& c = state_.counts();
  SteadyTime now = clock_->SteadyNow();
  p.phase = nodes_.empty() ? "Pending" : "Running";
  p.startTime = Iso8601Utc(start_time_);
  p.miniBatches.total = c.total;
  p.miniBatches.completed = c.completed;
  p.miniBatches.failed = c.failed;
  p.miniBatches.running =
      state_.RunningOnWorkers(opt_.spec.process_count_per_node, opt_.desired_nodes);
  p.miniBatches.retried = c.retried;
  p.items.total = c.items_total;
  p.items.succeeded = c.items_succeeded;
  p.items.failed = c.items_failed;
  for (const auto& n : nodes_) {
    if (now - n.last_seen <= std::chrono::seconds(lease_seconds_)) ++p.nodes.ready;
  }
  p.progress = std::to_string(c.completed) + "/" + std::to_string(c.total);
  p.planned = state_.plan_complete();
  PutErrors(errors_, &p);
  if (ending_) {
    p.reason = ending_->reason;
    p.message = ending_->message;
    if (!status_message_.empty()) p.message = status_message_ + ": " + p.message;
  } else {
    p.message = status_message_;
    auto eta = EtaSecondsLocked(now);
    if (eta) {
      p.eta = FormatDuration(*eta);
      p.estimatedCompletionTime = Iso8601Utc(
          clock_->Now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(*eta)));
    }
  }
  if (finished_) p.exitCode = exit_code_;
  return p;
}

int Coordinator::Impl::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return finished_; });
  return exit_code_;
}

bool Coordinator::Impl::WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<std::string> waiting;  // nodes not told yet
  auto all_told = [&] {
    waiting.clear();
    const SteadyTime now = clock_->SteadyNow();
    for (const auto& n : nodes_) {
      if (!n.told_end && now - n.last_seen <= std::chrono::seconds(lease_seconds_)) {
        waiting.push_back(n.name);
      }
    }
    return (finished_ || ending_) && waiting.empty();
  };
  const auto start = std::chrono::steady_clock::now();
  const bool told = cv_.wait_for(lock, timeout, all_told);
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
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  interrupted_ = true;
  cancel_assembly_ = true;
  if (planner_) planner_->Cancel();
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() = default;

StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  PR_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

protocol::HttpResponse Coordinator::Handle(const protocol::HttpRequest& request) {
  return impl_->Handle(request);
}
protocol::Progress Coordinator::GetProgress() const { return impl_->GetProgress(); }
int Coordinator::Wait() { return impl_->Wait(); }
bool Coordinator::WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout) {
  return impl_->WaitForAgentsToHearTheEnd(timeout);
}
void Coordinator::Stop() { impl_->Stop(); }

}  // namespace parallelrun::rt
