// Coordinator::Impl, shared by the coordinator's parts (private to runtime/coordinator):
//   coordinator.cc  setup, resume, the supervisor, Wait/Stop and the lock;
//   requests.cc     the CoordinatorService requests (register, lease, results, progress), lost
//                   leases, and writing decisions (WriteLocked: AttemptLog);
//   planning.cc     the planner, its callbacks, retryFrom's carry-over;
//   job_end.cc      reject, end, finalize (assembly, job_result.txt, result.json).
// They use NodeTable (node_table.h), AttemptLog (attempt_log.h), progress_text.h and job_end.h.
//
// Locking: one Mutex, mu_. Members marked GUARDED_BY(mu_) are read and written only with it held,
// and *Locked methods require it (clang's -Wthread-safety checks both). The others are set before
// any other thread runs (in the constructor, Init, InitRun) and only read afterwards, or are
// thread-safe themselves (the journal's SyncTo, the plan reader, the logger, atomics). Once
// ending_ is set the job state is frozen (no lease, result or expiry changes it): Finalize then
// reads it without the lock, through Frozen*().
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/base/mutex.h"
#include "runtime/base/thread_annotations.h"
#include "runtime/coordinator/attempt_log.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/coordinator/error_digest.h"
#include "runtime/coordinator/job_end.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/coordinator/journal.h"
#include "runtime/coordinator/node_table.h"
#include "runtime/coordinator/plan_file.h"
#include "runtime/coordinator/planner.h"
#include "runtime/coordinator/report_repair.h"
#include "runtime/coordinator/retry_from.h"
#include "runtime/logs/disk_full.h"
#include "runtime/logs/overview.h"
#include "runtime/output/assembler.h"
#include "runtime/output/output_lock.h"

namespace parallelrun::rt {

// Real-time period of the supervisor thread (lease expiry, no-progress, periodic lines); what it
// compares against is the injected clock.
inline constexpr std::chrono::milliseconds kSupervisorTick{100};
inline constexpr std::chrono::seconds kProgressLineEvery{5};
inline constexpr std::chrono::seconds kQuietProgressLineEvery{60};

inline double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

inline std::string InputTypeName(const Input& in) {
  return in.type == InputType::kFile ? "file" : "tabular";
}

class Coordinator::Impl {
 public:
  explicit Impl(CoordinatorOptions options);
  ~Impl();

  Status Init() EXCLUDES(mu_);
  StatusOr<protocol::RegisterResponse> Register(const protocol::RegisterRequest& req) EXCLUDES(mu_);
  StatusOr<protocol::LeaseResponse> Lease(const protocol::LeaseRequest& req) EXCLUDES(mu_);
  StatusOr<protocol::ResultsResponse> Report(const protocol::ResultsRequest& req) EXCLUDES(mu_);
  protocol::Progress GetProgress() const EXCLUDES(mu_);
  int Wait() EXCLUDES(mu_);
  bool WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout) EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);

 private:
  // kRejected: the job was refused before anything was written (OutputInUse, a retryFrom naming
  // the output folder itself).
  enum class Mode { kRun, kRejected, kFinished };

  // --- coordinator.cc: setup and resume
  Status InitRun() EXCLUDES(mu_);
  Status Resume(int start_index, std::unique_ptr<ReportCsv> report, AppendFile user_errors)
      EXCLUDES(mu_);
  // Replays the journal into state_; fills `open` (attempts handed out with no outcome) and
  // `tail` (the records that wrote report rows). Returns the journal's valid bytes.
  StatusOr<int64_t> ReplayJournalLocked(std::unordered_map<int64_t, HeldAttempt>& open,
                                        ReportTail& tail) REQUIRES(mu_);
  // `resumed_as`: the index of this coordinator when it resumes an earlier run, else -1.
  void SayStartedLocked(int resumed_as, const LoadedPlan& plan) REQUIRES(mu_);
  void StartRetryFromLocked(const std::optional<std::pair<int64_t, PlanEntry>>& mismatch,
                            bool plan_complete) REQUIRES(mu_);
  void StartPlanningLocked(const LoadedPlan& plan) REQUIRES(mu_);
  void HoldOpenAttemptsLocked(const std::unordered_map<int64_t, HeldAttempt>& open) REQUIRES(mu_);
  // retryFrom: carries over the mini-batches [first, total) that completed in the earlier run.
  void CarryOverLocked(int64_t first) REQUIRES(mu_);
  void StartPlanner(int64_t existing_records, int64_t valid_bytes) REQUIRES(mu_);
  void OnDurable(std::vector<PlanEntry>&& entries) EXCLUDES(mu_);
  void OnPlanComplete() EXCLUDES(mu_);
  void OnPlanCompleteLocked() REQUIRES(mu_);
  void OnPlanError(const Status& status) EXCLUDES(mu_);

  // --- coordinator.cc: logging and the supervisor
  void SayLocked(const std::string& text) REQUIRES(mu_);
  // A warning for the user: the log, the overview, and stderr (when the overview is not echoed),
  // since a progress display may skip overview lines.
  void WarnLocked(const std::string& text) REQUIRES(mu_);
  std::string ProgressLineLocked(bool final_line) const REQUIRES(mu_);
  std::string RunningSummaryLocked() const REQUIRES(mu_);
  void SupervisorLoop() EXCLUDES(mu_);
  // Interrupted (SIGTERM) while running: says so, syncs the journal, Wait() returns 130.
  void StopInterruptedLocked() REQUIRES(mu_);
  void TickLocked() REQUIRES(mu_);
  void CheckNoProgressLocked(SteadyTime now) REQUIRES(mu_);
  // The output folder was deleted or replaced under the running job: .parallelrun/ is not the
  // folder InitRun made. Checked every tick, and again when the assembly misses a part (the folder
  // can go between two ticks).
  bool OutputFolderGone() const;
  void RecordPartLocked(int64_t id, int64_t bytes, uint32_t crc) REQUIRES(mu_);

  // --- requests.cc
  // Leases lost (expired, or dropped when their agent registered again: `why` says which).
  void RecordExpiredLocked(const std::vector<ExpiredLease>& expired, const std::string& why = "")
      REQUIRES(mu_);
  // Writes `batch` (AttemptLog); a journal that cannot be written ends the job with DiskFull
  // when the disk is full. Returns what AttemptLog::Write returned.
  StatusOr<int64_t> WriteLocked(const AttemptLog::Batch& batch) REQUIRES(mu_);
  // The journal could not be written or synced: DiskFull when the disk is full.
  void JournalFailedLocked(const Status& st) REQUIRES(mu_);
  // The job is over (or not running here): the answer to a results request.
  protocol::ResultsResponse ResultsAfterEndLocked(const protocol::ResultsRequest& req)
      REQUIRES(mu_);
  Status CheckPlannedLocked(const protocol::ResultsRequest& req) const REQUIRES(mu_);
  void ReleaseLocked(const protocol::ResultsRequest& req, uint32_t node, AttemptLog::Batch& batch)
      REQUIRES(mu_);
  // One result; appends to `resp` and `batch`. `disk_full`: {what, error} for the first result
  // that could not be written for lack of space in the output folder.
  void ApplyResultLocked(const protocol::AttemptResult& r, AttemptStatus status,
                         const std::string& node_name, uint32_t node, SystemTime wall,
                         AttemptLog::Batch& batch, protocol::ResultsResponse& resp,
                         std::vector<std::string>& disk_full) REQUIRES(mu_);
  void ApplyEventsLocked(const protocol::ResultsRequest& req, SystemTime wall,
                         AttemptLog::Batch& batch) REQUIRES(mu_);
  void CheckInitFailedLocked() REQUIRES(mu_);
  void RenewLocked(const protocol::LeaseRequest& req, uint32_t node, SteadyTime expiry,
                   protocol::LeaseResponse& resp) REQUIRES(mu_);
  std::vector<LeaseGrant> GrantLocked(const protocol::LeaseRequest& req, uint32_t node,
                                      SteadyTime now, SteadyTime expiry) REQUIRES(mu_);
  void ReclaimLocked(const std::string& node, uint32_t index,
                     const std::vector<protocol::LeaseRef>& held, SteadyTime now) REQUIRES(mu_);
  // The lease of `grant`, from its plan record (read by the caller).
  StatusOr<protocol::Lease> MakeLease(const LeaseGrant& grant, std::string_view record) const;

  // --- job_end.cc
  void Reject(const std::string& reason, const std::string& message,
              std::vector<std::string> look_first) EXCLUDES(mu_);
  void EndLocked(Ending ending) REQUIRES(mu_);
  // retryFrom: ends the job with InvalidInput for a problem with the earlier run.
  void EndRetryFromLocked(const std::string& problem) REQUIRES(mu_);
  // A write under the output folder failed for lack of space: the job ends with DiskFull (once,
  // one log line) and stays resumable.
  void EndDiskFullLocked(const std::string& what, const std::string& error) REQUIRES(mu_);
  void CheckOutcomeLocked() REQUIRES(mu_);
  Ending OutputLostEnding() const;
  void Finalize() EXCLUDES(mu_);
  // Assembles the output file for `e`; false when interrupted (the job then ends with 130).
  bool Assemble(Ending& e, std::string& output_file, std::string& warning) EXCLUDES(mu_);
  void WriteResult(const Ending& e, const std::string& output_file, const std::string& warning)
      EXCLUDES(mu_);
  void FinishLocked(int exit_code) REQUIRES(mu_);
  // Readers of the frozen state (see above): only once ending_ is set.
  const JobState& FrozenState() const NO_THREAD_SAFETY_ANALYSIS { return state_; }
  RowSource FrozenPartSource(int64_t id) const NO_THREAD_SAFETY_ANALYSIS;

  // Set before other threads run, read-only afterwards.
  CoordinatorOptions opt_;
  const Clock* clock_;
  std::optional<OutputLock> lock_;  // held from Init on, while the job may write the output
  Mode mode_ = Mode::kRun;
  std::string output_dir_, state_dir_, log_dir_, parts_dir_;
  std::string plan_path_, journal_path_, owner_path_, result_json_path_, output_file_;
  std::vector<std::string> input_dirs_;
  int lease_seconds_ = 90;
  int progress_timeout_s_ = 270;
  protocol::RegisterResponse register_reply_;
  dev_t state_dev_ = 0;  // .parallelrun/ as InitRun made it
  ino_t state_ino_ = 0;
  std::unique_ptr<EarlierRun> earlier_;  // retryFrom
  std::string carried_from_;             // earlier_->dir(), empty without retryFrom

  // Thread-safe themselves (set before other threads run).
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Journal> journal_;  // appended through attempt_log_ (under mu_); SyncTo anywhere
  std::unique_ptr<PlanReader> plan_reader_;  // reads durable records, any thread
  std::unique_ptr<Planner> planner_;         // its callbacks take mu_: reset without it
  std::thread supervisor_;
  std::atomic<bool> cancel_assembly_{false};

  mutable Mutex mu_;
  CondVar cv_;  // finished_, ending_, told_end, shutting_down_, interrupted_
  std::unique_ptr<OverviewLog> overview_ PT_GUARDED_BY(mu_);
  std::unique_ptr<AttemptLog> attempt_log_ PT_GUARDED_BY(mu_);
  SpaceReserve space_reserve_ GUARDED_BY(mu_);  // freed at the end: job_result.txt fits
  JobState state_ GUARDED_BY(mu_);
  NodeTable nodes_ GUARDED_BY(mu_);
  std::optional<Ending> ending_ GUARDED_BY(mu_);
  bool interrupted_ GUARDED_BY(mu_) = false;
  bool finished_ GUARDED_BY(mu_) = false;
  bool shutting_down_ GUARDED_BY(mu_) = false;
  int exit_code_ GUARDED_BY(mu_) = -1;
  std::optional<JobResult> final_ GUARDED_BY(mu_);
  std::string status_message_ GUARDED_BY(mu_);  // Progress.message while running
  SystemTime start_time_ GUARDED_BY(mu_);
  SteadyTime plan_started_ GUARDED_BY(mu_);
  std::optional<SteadyTime> first_lease_ GUARDED_BY(mu_);
  SteadyTime last_progress_ GUARDED_BY(mu_);
  int64_t completed_at_start_ GUARDED_BY(mu_) = 0;  // not counting carried-over mini-batches
  SteadyTime last_line_at_ GUARDED_BY(mu_);
  int64_t last_line_completed_ GUARDED_BY(mu_) = -1;
  std::optional<SteadyTime> last_warning_at_ GUARDED_BY(mu_);
  std::string last_line_ GUARDED_BY(mu_);
  std::string last_init_error_ GUARDED_BY(mu_);
  // The last failed attempt's error ("mini-batch 3 attempt 2: ..."), quoted in a failed job's
  // message so that it says why and not only how many.
  std::string last_run_error_ GUARDED_BY(mu_);
  std::string last_init_traceback_ GUARDED_BY(mu_);
  ErrorDigest errors_ GUARDED_BY(mu_){opt_.paths.code_dir};  // user errors of failed attempts
  // append_row: the accepted part of each mini-batch as its agent reported it (size -1: unknown),
  // by id; what the assembly verifies. Frozen with the state.
  std::vector<int64_t> part_bytes_ GUARDED_BY(mu_);
  std::vector<uint32_t> part_crc32_ GUARDED_BY(mu_);
};

}  // namespace parallelrun::rt
