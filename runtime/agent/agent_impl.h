// Agent::Impl, shared by the agent's source files (not part of the agent's interface):
//   agent.cc        registration, configuration, Run()
//   job_settings.cc what the agent reads from the registration answer; GPUs; input checks
//   slots.cc        the worker slot threads (start, run attempts, replace, end workers)
//   comm_loop.cc    the communication loop, driven by CommState (comm_state.h)
//   part_sync.cc    group commit of the part files of the results in one report
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/agent/agent.h"
#include "runtime/agent/comm_state.h"
#include "runtime/agent/user_log_echo.h"
#include "runtime/base/mutex.h"
#include "runtime/base/thread_annotations.h"
#include "runtime/perf/resource_monitor.h"

namespace parallelrun::rt {

// Grace for workers' shutdown() once the coordinator says done.
inline constexpr std::chrono::seconds kShutdownGrace{10};
// A result the coordinator answered without naming is sent again after this, at most this often.
inline constexpr std::chrono::seconds kResendAfter{1};
inline constexpr int kMaxUnnamedSends = 5;
inline constexpr int kInitFailuresPerProcess = 3;
inline constexpr int kMinInitTimeoutSeconds = 600;
// Attempts shorter than this (a moving average) get two queued leases per worker instead of one,
// so that a round trip to the coordinator never leaves a worker without its next mini-batch.
inline constexpr double kShortAttemptSeconds = 1.0;
// Short attempts: each live worker holds enough leases to cover this much work (at least three,
// at most kMaxLeasesPerWorker), and the queue is refilled when a quarter of it is gone, so that
// one round trip to the coordinator (a lease, then a report with its part files' group commit
// and the journal's fdatasync) serves several attempts instead of one or two, while a round's
// group commit stays short (on a busy disk, deeper queues refilled at half left workers idle
// during long group commits). Bounds what a node holds queued at the end of the job.
inline constexpr double kLeaseAheadSeconds = 0.5;
inline constexpr int kMaxLeasesPerWorker = 12;

using AttemptKey = std::pair<int64_t, int>;  // (mini_batch_id, attempt)
inline AttemptKey KeyOf(const protocol::Lease& l) { return {l.mini_batch_id, l.attempt}; }
inline AttemptKey KeyOf(const protocol::LeaseRef& r) { return {r.mini_batch_id, r.attempt}; }

std::string ProcessName(int number);
double Seconds(SteadyTime::duration d);

// What identifies one version of a file (compared, never ordered: no clock is shared with the
// node that wrote it).
struct FileStamp {
  bool exists = false;
  ino_t inode = 0;
  int64_t mtime_ns = 0;
  int64_t size = 0;
  bool operator==(const FileStamp& o) const {
    return exists == o.exists && inode == o.inode && mtime_ns == o.mtime_ns && size == o.size;
  }
};
FileStamp StampOf(const std::string& path);

// 1 + the highest NNN of a processNNN.txt in `node_dir` (0 when there is none), so the names of
// an earlier agent on this node (a restart, a resumed job) are not reused.
int NextProcessNumber(const std::string& node_dir);

// What the agent needs from the registration answer's spec (the CR form of the job spec).
struct JobSettings {
  int process_count = 1;
  int run_timeout_s = 60;
  std::string logging_level = "INFO";
  bool append_row_header = false;
  std::string input_type = "file";
  std::string entry_script;  // relative to code_dir, as written
  int resource_monitor_interval = 600;
  int progress_timeout_s = 0;  // progressUpdateTimeout; 0: 3 x (runInvocationTimeout + 30)
  int init_timeout_s = 0;      // initTimeout; 0: max(600, runInvocationTimeout + 30)
};
StatusOr<JobSettings> ReadSettings(const protocol::RegisterResponse& resp);
// inputs[].columnTypes as {input name: {column: type}} (empty object when there are none).
nlohmann::json ColumnTypes(const nlohmann::json& job_spec);

// A tabular input file that is not what the planner saw no longer matches the byte ranges of its
// mini-batches. The reason, or nullopt.
std::optional<std::string> InputChanged(const protocol::Lease& lease);

// A worker's own log files: one line per attempt, and (opened on the first failure) one record
// per failed attempt or init.
struct ProcessLogs {
  std::shared_ptr<spdlog::logger> node;
  std::shared_ptr<spdlog::logger> error;
  std::string error_path;

  spdlog::logger& Error();
};

class Agent::Impl {
 public:
  Impl(AgentOptions options, std::unique_ptr<protocol::CoordinatorClient> client,
       WorkerFactory factory, const Clock& clock);

  int Run() EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);

 private:
  // One worker slot. Written by its thread and the communication loop under mu_.
  struct Slot {
    std::string gpu;                            // "" = no pinning
    Worker* worker = nullptr;                   // the slot thread's worker (for Kill())
    bool ready = false;                         // init() finished
    bool aborting = false;                      // killed during init(): the agent is ending
    std::optional<protocol::LeaseRef> running;  // the attempt it runs
    SteadyTime renewed{};                       // when `running`'s lease was last renewed
    bool cancel_requested = false;              // the running attempt was killed on purpose
  };

  // A lease waiting for a worker, and when it was last renewed (or granted): the time its lease
  // call was built, which is before the coordinator set its expiry.
  struct QueuedLease {
    protocol::Lease lease;
    SteadyTime renewed;
  };

  struct PendingResult {
    protocol::AttemptResult result;
    SteadyTime next_send;
    int unnamed_sends = 0;
    std::string part_file;  // RUN_DONE with a part file: synced before the first send
    bool durable = true;
  };

  // What one round of the communication loop sends (built under mu_, sent without it).
  struct Talk {
    protocol::ResultsRequest report;
    std::vector<AttemptKey> sent;
    std::vector<std::string> to_sync;  // part files of the results, not yet durable
    size_t events_sent = 0;
    size_t released_sent = 0;
    bool do_report = false;
    bool ask = false;
    bool lease_first = false;  // ask in a call of its own before the report (see TalkLocked)
    protocol::LeaseRequest lease;
    SteadyTime built{};  // what a successful lease call counts as the renewal (and grant) time
  };

  // Registration and setup (agent.cc); returns an exit code when the agent must end there.
  std::optional<int> RegisterAndConfigure() EXCLUDES(mu_);
  Status Configure(const protocol::RegisterResponse& resp) EXCLUDES(mu_);
  void ConfigureWorkers(const protocol::RegisterResponse& resp, const JobSettings& settings,
                        const std::string& log_dir);
  // Registers again after the coordinator was unreachable, naming the attempts this node holds.
  // Called and returns with mu_ held (released during the call).
  Status RegisterAgainLocked() REQUIRES(mu_);
  // The coordinator this agent registered with has ended (not merely restarting).
  bool CoordinatorEndedLocked() const REQUIRES(mu_);
  // The job is over: workers are killed, nothing more is sent, and the agent exits 0.
  void JobOverLocked(const Status& last_error) REQUIRES(mu_);

  // Slot threads (slots.cc).
  void SlotMain(int index) EXCLUDES(mu_);
  std::unique_ptr<Worker> StartWorker(int index, ProcessLogs* logs) EXCLUDES(mu_);
  WorkerConfig SlotConfig(int index) EXCLUDES(mu_);
  // Records an init() outcome under mu_; true when the worker is ready (and was not aborted).
  bool RecordInitLocked(int index, const std::string& process, const InitOutcome& init, pid_t pid,
                        bool* aborted, bool* gave_up_now, int* failures) REQUIRES(mu_);
  void LogInitFailure(const std::string& process, pid_t pid, const InitOutcome& init, double init_s,
                      ProcessLogs* logs, bool gave_up_now, int failures);
  std::optional<protocol::Lease> NextLease(int index) EXCLUDES(mu_);
  RunOutcome RunAttempt(int index, Worker& worker, ProcessLogs& logs, const protocol::Lease& lease)
      EXCLUDES(mu_);
  protocol::AttemptResult MakeResult(const protocol::Lease& lease, const Worker& worker,
                                     const RunOutcome& out, AttemptStatus* status,
                                     SystemTime start_wall, double elapsed);
  void LogAttempt(ProcessLogs& logs, const protocol::AttemptResult& r, AttemptStatus status);
  void RetireDeadWorker(int index, std::unique_ptr<Worker> worker, const std::string& detail)
      EXCLUDES(mu_);
  void EndWorker(int index, std::unique_ptr<Worker> worker) EXCLUDES(mu_);
  void ErrorRecord(ProcessLogs& logs, const std::string& status, const std::string& what,
                   const std::string& error, const std::string& detail);

  // Communication loop (comm_loop.cc; the thread that called Run()).
  int CommLoop() EXCLUDES(mu_);
  CommSnapshot SnapshotLocked(SteadyTime now) const REQUIRES(mu_);
  Talk BuildTalkLocked(const CommDecision& d, SteadyTime now) REQUIRES(mu_);
  // Sends `talk` with mu_ released; applies the answers. Returns the failure, if any.
  Status TalkLocked(Talk& talk, CommState& state) REQUIRES(mu_);
  // The lease call alone, and a lease answer (alone or in a report's answer) applied.
  Status LeaseCallLocked(const Talk& talk, CommState& state) REQUIRES(mu_);
  void ApplyLeaseLocked(const Talk& talk, const protocol::LeaseResponse& resp, CommState& state)
      REQUIRES(mu_);
  // Makes the part files of `talk` durable (lock released); a result whose part cannot be
  // synced is reported as failed instead.
  void SyncPartsLocked(Talk& talk) REQUIRES(mu_);
  // Applies a failed call's verdict; true when the loop must end.
  bool OnFailureLocked(const Status& failure, CommState& state) REQUIRES(mu_);
  void RegisterAgainStepLocked(CommState& state, bool* end) REQUIRES(mu_);
  void FinishLocked() REQUIRES(mu_);
  // `granted_at`: when the call was built (the new leases' first renewal time).
  void HandleLeaseLocked(const protocol::LeaseResponse& resp, SteadyTime granted_at) REQUIRES(mu_);
  // The answer to a talk's report: 409 drops what was refused; another failure is returned.
  Status ApplyReportLocked(const Talk& talk, const StatusOr<protocol::ResultsResponse>& resp)
      REQUIRES(mu_);
  void HandleReportLocked(const protocol::ResultsResponse& resp,
                          const std::vector<AttemptKey>& sent, size_t events_sent, SteadyTime now)
      REQUIRES(mu_);
  void ApplyStopRequestLocked(SteadyTime now) REQUIRES(mu_);
  void ReleaseLocked(const protocol::Lease& lease) REQUIRES(mu_) {
    released_.push_back({lease.mini_batch_id, lease.attempt});
  }
  void CancelLocked(const protocol::LeaseRef& ref) REQUIRES(mu_);
  void CoordinatorStopLocked() REQUIRES(mu_);
  // The coordinator says `done` (a lease or a results answer): finish, then shut workers down.
  void CoordinatorDoneLocked() REQUIRES(mu_);
  void FatalLocked(const std::string& why) REQUIRES(mu_);
  void KillAllLocked() REQUIRES(mu_);
  void AbortInitializingLocked() REQUIRES(mu_);
  int ExitCodeLocked() const REQUIRES(mu_);

  int LiveLocked() const REQUIRES(mu_);
  int RunningLocked() const REQUIRES(mu_);
  int WantLocked() const REQUIRES(mu_);
  int PerWorkerLocked() const REQUIRES(mu_);  // leases a live worker holds, running and queued
  std::vector<protocol::LeaseRef> HeldLocked() const REQUIRES(mu_);
  // Renewals (slots.cc): a held lease is renewed by a lease call once half the renewal
  // interval has passed since its last renewal, and a call is made for it at the latest when the
  // whole interval has passed.
  std::vector<protocol::LeaseRef> RenewalsDueLocked(SteadyTime now) const REQUIRES(mu_);
  std::optional<SteadyTime> NextRenewalLocked() const REQUIRES(mu_);
  void MarkRenewedLocked(const std::vector<protocol::LeaseRef>& renewed, SteadyTime at,
                         const std::vector<protocol::LeaseRef>& cancelled) REQUIRES(mu_);
  void RenewAllNowLocked() REQUIRES(mu_);
  bool MayStartWorkerLocked() const REQUIRES(mu_);
  bool SlotMustEndLocked() const REQUIRES(mu_);
  void WakeLocked() REQUIRES(mu_) {
    comm_wake_ = true;
    comm_cv_.NotifyOne();
  }
  // An attempt ended / a worker took a lease: wakes the loop only when its wait said so
  // (CommDecision::wake_on_result, wake_queue_below), one wake-up per mini-batch saved.
  void WakeForResultLocked() REQUIRES(mu_) {
    if (comm_wake_on_result_) WakeLocked();
  }
  void WakeForQueueLocked() REQUIRES(mu_) {
    if (static_cast<int>(queue_.size()) < comm_wake_queue_below_) WakeLocked();
  }

  const AgentOptions options_;
  const std::unique_ptr<protocol::CoordinatorClient> client_;
  const WorkerFactory factory_;
  const Clock& clock_;

  // Set by Configure() before the slot threads start; read-only afterwards.
  std::shared_ptr<spdlog::logger> log_;  // _main.txt (stderr until registered)
  WorkerConfig base_config_;
  std::string node_dir_;
  std::string error_dir_;
  int process_count_ = 1;
  int run_timeout_s_ = 60;
  std::chrono::seconds init_timeout_{kMinInitTimeoutSeconds};
  std::chrono::milliseconds renew_interval_{30000};
  int init_failure_limit_ = kInitFailuresPerProcess;
  int unreachable_limit_s_ = 60;  // after registration: how long the coordinator may be away
  nlohmann::json job_spec_;       // the registration answer's spec: the job this agent runs
  std::string job_output_dir_;
  std::string job_result_file_;  // <logs>/job_result.txt, written once the job ended
  FileStamp job_result_at_register_;
  ResourceMonitorOptions perf_options_;
  UserLogEcho* echo_ = nullptr;  // --echo-user-logs: set before the slot threads start

  Mutex mu_;
  CondVar comm_cv_;  // the communication loop: something to send or decide
  CondVar work_cv_;  // slots: a lease arrived, or the agent is ending
  bool comm_wake_ GUARDED_BY(mu_) = false;
  // What may wake the loop's current wait (see CommDecision); while it is not waiting, anything.
  bool comm_wake_on_result_ GUARDED_BY(mu_) = true;
  int comm_wake_queue_below_ GUARDED_BY(mu_) = std::numeric_limits<int>::max();
  bool stop_requested_ GUARDED_BY(mu_) = false;
  Ending ending_ GUARDED_BY(mu_) = Ending::kNone;
  bool job_over_ GUARDED_BY(mu_) = false;  // the coordinator ended (CoordinatorEndedLocked): exit 0
  bool kill_all_ GUARDED_BY(mu_) = false;
  SteadyTime stop_deadline_ GUARDED_BY(mu_){};
  std::vector<Slot> slots_ GUARDED_BY(mu_);
  int slots_running_ GUARDED_BY(mu_) = 0;
  std::deque<QueuedLease> queue_ GUARDED_BY(mu_);
  std::vector<protocol::LeaseRef> released_ GUARDED_BY(mu_);  // leases to give back unrun
  std::map<AttemptKey, PendingResult> unacked_ GUARDED_BY(mu_);
  std::vector<protocol::WorkerEvent> events_ GUARDED_BY(mu_);
  int next_process_ GUARDED_BY(mu_) = 0;
  int consecutive_init_failures_ GUARDED_BY(mu_) = 0;
  int inits_in_flight_ GUARDED_BY(mu_) = 0;
  bool gave_up_ GUARDED_BY(mu_) = false;
  bool worker_freed_ GUARDED_BY(mu_) = false;  // an attempt ended since the last lease call
  // Moving average of attempts' durations (< 0: none yet).
  double attempt_seconds_avg_ GUARDED_BY(mu_) = -1;
};

}  // namespace parallelrun::rt
