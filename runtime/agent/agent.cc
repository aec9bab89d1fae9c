#include "runtime/agent/agent.h"

#include <dirent.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "runtime/agent/user_log_echo.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/output/part_file.h"
#include "runtime/perf/resource_monitor.h"
#include "runtime/worker/worker_process.h"

namespace parallelrun::rt {
namespace {

using protocol::AttemptResult;
using protocol::Lease;
using protocol::LeaseRef;
using protocol::LeaseRequest;
using protocol::LeaseResponse;
using protocol::RegisterResponse;
using protocol::ResultsRequest;
using protocol::ResultsResponse;
using protocol::WorkerEvent;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Grace for workers' shutdown() once the coordinator says done.
constexpr seconds kShutdownGrace{10};
// After Stop(): how long running attempts may go on, then how long reporting may take.
constexpr seconds kStopGrace{10};
constexpr seconds kStopFlush{5};
// A result the coordinator answered without naming is sent again after this, at most this often.
constexpr seconds kResendAfter{1};
constexpr int kMaxUnnamedSends = 5;
// With nothing else to say, the agent still asks this often, to hear `done`, `stop` and cancels.
constexpr seconds kPollInterval{1};
// The coordinator gave less than asked and no retry_after_ms: ask again after this.
constexpr milliseconds kNoWorkRetry{250};
constexpr milliseconds kMinBackoff{100};
constexpr milliseconds kMaxBackoff{2000};
// The longest single wait of the communication loop (a safety net; every wake-up has a cause).
constexpr seconds kMaxWait{5};
// How long a result or a lease request may wait for company when no worker is starved.
constexpr milliseconds kBatchWindow{20};
constexpr int kInitFailuresPerProcess = 3;
constexpr int kMinInitTimeoutSeconds = 600;

using Key = std::pair<int64_t, int>;  // (mini_batch_id, attempt)
Key KeyOf(const Lease& l) { return {l.mini_batch_id, l.attempt}; }
Key KeyOf(const LeaseRef& r) { return {r.mini_batch_id, r.attempt}; }

std::string ProcessName(int number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "process%03d", number);
  return buf;
}

bool IsTransient(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
         s.code() == StatusCode::kInternal;
}

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }

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

FileStamp StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, st.st_ino, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_size)};
}

// 1 + the highest NNN of a processNNN.txt in `node_dir` (0 when there is none), so the names of
// an earlier agent on this node (a restart, a resumed job) are not reused.
int NextProcessNumber(const std::string& node_dir) {
  int next = 0;
  DIR* dir = ::opendir(node_dir.c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    int n = 0;
    int consumed = 0;
    if (std::sscanf(e->d_name, "process%d.txt%n", &n, &consumed) == 1 &&
        e->d_name[consumed] == '\0' && n >= 0) {
      next = std::max(next, n + 1);
    }
  }
  ::closedir(dir);
  return next;
}

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

StatusOr<JobSettings> ReadSettings(const RegisterResponse& resp) {
  const auto& cr = resp.spec;
  if (!cr.is_object() || !cr.contains("spec") || !cr["spec"].is_object()) {
    return InvalidArgumentError(
        "registration answer: field spec.spec: expected the job spec object");
  }
  const auto& spec = cr["spec"];
  JobSettings s;
  auto integer = [&](const char* name, int min, int* out) -> Status {
    auto it = spec.find(name);
    if (it == spec.end()) return Status::Ok();
    if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > 1000000000) {
      return InvalidArgumentError(std::string("registration answer: spec.") + name + ": got " +
                                  it->dump() + ", expected an integer >= " + std::to_string(min));
    }
    *out = it->get<int>();
    return Status::Ok();
  };
  auto string = [&](const char* name, std::string* out) -> Status {
    auto it = spec.find(name);
    if (it == spec.end()) return Status::Ok();
    if (!it->is_string()) {
      return InvalidArgumentError(std::string("registration answer: spec.") + name + ": got " +
                                  it->dump() + ", expected a string");
    }
    *out = it->get<std::string>();
    return Status::Ok();
  };
  PR_RETURN_IF_ERROR(integer("processCountPerNode", 1, &s.process_count));
  PR_RETURN_IF_ERROR(integer("runInvocationTimeout", 1, &s.run_timeout_s));
  PR_RETURN_IF_ERROR(integer("resourceMonitorInterval", 0, &s.resource_monitor_interval));
  PR_RETURN_IF_ERROR(integer("progressUpdateTimeout", 0, &s.progress_timeout_s));
  if (s.progress_timeout_s == 0) s.progress_timeout_s = 3 * (s.run_timeout_s + 30);
  PR_RETURN_IF_ERROR(integer("initTimeout", 1, &s.init_timeout_s));
  if (s.init_timeout_s == 0)
    s.init_timeout_s = std::max(kMinInitTimeoutSeconds, s.run_timeout_s + 30);
  PR_RETURN_IF_ERROR(string("loggingLevel", &s.logging_level));
  PR_RETURN_IF_ERROR(string("entryScript", &s.entry_script));
  if (s.entry_script.empty()) {
    return InvalidArgumentError("registration answer: spec.entryScript: expected a path");
  }
  if (auto it = spec.find("appendRowHeader"); it != spec.end()) {
    if (!it->is_boolean()) {
      return InvalidArgumentError("registration answer: spec.appendRowHeader: got " + it->dump() +
                                  ", expected true or false");
    }
    s.append_row_header = it->get<bool>();
  }
  if (auto it = spec.find("inputs"); it != spec.end() && it->is_array() && !it->empty()) {
    const auto& first = (*it)[0];
    if (first.is_object() && first.contains("type") && first["type"].is_string()) {
      s.input_type = first["type"].get<std::string>();
    }
  }
  return s;
}

// A worker's own log files: one line per attempt, and (opened on the first failure) one record
// per failed attempt or init.
struct ProcessLogs {
  std::shared_ptr<spdlog::logger> node;
  std::shared_ptr<spdlog::logger> error;
  std::string error_path;

  spdlog::logger& Error() {
    if (!error) error = MakeFileLogger("error", error_path);
    return *error;
  }
};

}  // namespace

std::vector<std::string> DetectGpus() {
  auto split = [](const std::string& list) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      std::string item = list.substr(start, comma - start);
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (!item.empty()) out.push_back(item);
      start = comma + 1;
    }
    return out;
  };
  if (const char* cuda = std::getenv("CUDA_VISIBLE_DEVICES")) return split(cuda);
  if (const char* nvidia = std::getenv("NVIDIA_VISIBLE_DEVICES")) {
    std::string v = nvidia;
    if (v == "none" || v == "void" || v.empty()) return {};
    if (v != "all") return split(v);
  }
  std::vector<std::string> gpus;
  if (DIR* dir = ::opendir("/proc/driver/nvidia/gpus")) {
    int n = 0;
    while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
    ::closedir(dir);
    for (int i = 0; i < n; ++i) gpus.push_back(std::to_string(i));
  }
  return gpus;
}

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string UtcOfNs(int64_t ns) {
  return Iso8601Utc(
      SystemTime(std::chrono::duration_cast<SystemTime::duration>(std::chrono::nanoseconds(ns))));
}

// A file input's files that are not what the planner saw (gone, or another size or mtime): the
// attempt would run on other data than the job planned. The reason naming them, or nullopt.
std::optional<std::string> FilesChanged(const Lease& lease) {
  if (lease.file_sizes.size() != lease.files.size() ||
      lease.file_mtimes_ns.size() != lease.files.size()) {
    return std::nullopt;  // not recorded (a plan from an older version)
  }
  std::vector<std::string> changed;
  for (size_t i = 0; i < lease.files.size(); ++i) {
    if (lease.file_sizes[i] < 0) continue;  // could not be stat'ed when planned
    struct stat st;
    std::string what;
    if (::stat(lease.files[i].c_str(), &st) != 0) {
      what = "cannot be read now: " + std::string(std::strerror(errno));
    } else if (st.st_size != lease.file_sizes[i] || MtimeNs(st) != lease.file_mtimes_ns[i]) {
      what = "size " + std::to_string(lease.file_sizes[i]) + " bytes, modified " +
             UtcOfNs(lease.file_mtimes_ns[i]) + " when planned; now " + std::to_string(st.st_size) +
             " bytes, modified " + UtcOfNs(MtimeNs(st));
    } else {
      continue;
    }
    if (changed.size() < 3)
      changed.push_back(lease.files[i] + " (" + what + ")");
    else if (changed.size() == 3)
      changed.push_back("...");
  }
  if (changed.empty()) return std::nullopt;
  std::string out = "input file(s) changed since the job was planned: ";
  for (size_t i = 0; i < changed.size(); ++i) out += (i ? ", " : "") + changed[i];
  return out +
         ". The mini-batch would run on other data than the job planned. Restore the files, or "
         "run the job again on a new output folder";
}

// A tabular input file that is not what the planner saw (its size or mtime differs) no longer
// matches the byte ranges of its mini-batches: rows would be lost or cut. The reason, or nullopt.
// File inputs: FilesChanged.
std::optional<std::string> InputChanged(const Lease& lease) {
  if (lease.input_type == "file") return FilesChanged(lease);
  if (lease.input_type != "tabular" || lease.file_size < 0) return std::nullopt;
  const std::string what = "input file " + lease.file + " changed since the job was planned (";
  struct stat st;
  if (::stat(lease.file.c_str(), &st) != 0) {
    return what + "it cannot be read now: " + std::strerror(errno) +
           "); the mini-batch's rows (bytes " + std::to_string(lease.begin) + ".." +
           std::to_string(lease.end) + ") are not there";
  }
  const int64_t mtime = MtimeNs(st);
  if (st.st_size == lease.file_size && mtime == lease.file_mtime_ns) return std::nullopt;
  return what + "size " + std::to_string(lease.file_size) + " bytes, modified " +
         UtcOfNs(lease.file_mtime_ns) + " when planned; now " + std::to_string(st.st_size) +
         " bytes, modified " + UtcOfNs(mtime) +
         "): its mini-batches no longer match the file. Restore the file, or run the job again "
         "on a new output folder";
}

class Agent::Impl {
 public:
  Impl(AgentOptions options, std::unique_ptr<protocol::CoordinatorClient> client,
       WorkerFactory factory, const Clock& clock)
      : options_(std::move(options)),
        client_(std::move(client)),
        factory_(std::move(factory)),
        clock_(clock),
        log_(MakeStderrLogger("agent")) {}

  int Run();
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    // At once, not at the loop's next turn: a worker that frees up now must not take a lease.
    ApplyStopRequestLocked(clock_.SteadyNow());
    WakeLocked();
  }

 private:
  // Why the agent is ending; kNone while it runs.
  enum class Ending { kNone, kDone, kCoordinatorStop, kSignal, kFatal };

  // One worker slot. Written by its thread and the communication loop under mu_.
  struct Slot {
    std::string gpu;                  // "" = no pinning
    Worker* worker = nullptr;         // the slot thread's worker while it has one (for Kill())
    bool ready = false;               // init() finished
    bool idle = false;                // waiting for a lease
    bool aborting = false;            // killed during init() because the agent is ending
    std::optional<LeaseRef> running;  // the attempt it runs
    bool cancel_requested = false;    // the running attempt was killed on purpose
  };

  struct PendingResult {
    AttemptResult result;
    SteadyTime next_send;
    int unnamed_sends = 0;
  };

  // Registration and setup; returns an exit code when the agent must end there.
  std::optional<int> RegisterAndConfigure();
  Status Configure(const RegisterResponse& resp);
  // Registers again after the coordinator was unreachable (it may be a new one, restarted on the
  // same address), naming the attempts this node holds. Called and returns with `lock` held.
  Status RegisterAgainLocked(std::unique_lock<std::mutex>& lock);
  // The coordinator this agent registered with has ended (not merely restarting): it said `done`
  // or `stop`, or it wrote the job's job_result.txt since this agent registered.
  bool CoordinatorEndedLocked() const;
  // The job is over: workers are killed, nothing more is sent, and the agent exits 0.
  void JobOverLocked(const Status& last_error);

  // Slot threads.
  void SlotMain(int index);
  std::unique_ptr<Worker> StartWorker(int index, ProcessLogs* logs);
  std::optional<Lease> NextLease(int index);
  RunOutcome RunAttempt(int index, Worker& worker, ProcessLogs& logs, const Lease& lease);
  void RetireDeadWorker(int index, std::unique_ptr<Worker> worker, const std::string& detail);
  void EndWorker(int index, std::unique_ptr<Worker> worker);
  void ErrorRecord(ProcessLogs& logs, const std::string& status, const std::string& what,
                   const std::string& error, const std::string& detail);

  // Communication loop (the thread that called Run()).
  int CommLoop();
  void HandleLeaseLocked(const LeaseResponse& resp, int asked, SteadyTime now);
  void HandleReportLocked(const ResultsResponse& resp, const std::vector<Key>& sent,
                          size_t events_sent, SteadyTime now);
  void ApplyStopRequestLocked(SteadyTime now);
  void ReleaseLocked(const Lease& lease) {
    released_.push_back({lease.mini_batch_id, lease.attempt});
  }
  void CancelLocked(const LeaseRef& ref);
  void CoordinatorStopLocked();
  void FatalLocked(const std::string& why);
  void KillAllLocked();
  void AbortInitializingLocked();
  SteadyTime NextWakeLocked(SteadyTime now) const;

  int LiveLocked() const;
  bool AnyIdleLocked() const;
  int RunningLocked() const;
  int WantLocked() const;
  std::vector<LeaseRef> HeldLocked() const;
  bool MayStartWorkerLocked() const;
  bool SlotMustEndLocked() const;
  void WakeLocked() {
    comm_wake_ = true;
    comm_cv_.notify_one();
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
  seconds init_timeout_{kMinInitTimeoutSeconds};
  milliseconds renew_interval_{30000};
  int init_failure_limit_ = kInitFailuresPerProcess;
  int unreachable_limit_s_ = 60;  // after registration: how long the coordinator may be away
  nlohmann::json job_spec_;       // the registration answer's spec: the job this agent runs
  std::string job_output_dir_;
  std::string job_result_file_;  // <logs>/job_result.txt, written once the job ended
  FileStamp job_result_at_register_;
  ResourceMonitorOptions perf_options_;
  UserLogEcho* echo_ = nullptr;  // --echo-user-logs: set before the slot threads start

  std::mutex mu_;
  std::condition_variable comm_cv_;  // the communication loop: something to send or decide
  std::condition_variable work_cv_;  // slots: a lease arrived, or the agent is ending
  bool comm_wake_ = false;
  bool stop_requested_ = false;
  Ending ending_ = Ending::kNone;
  bool job_over_ = false;  // the coordinator ended (CoordinatorEndedLocked): exit 0
  bool kill_all_ = false;
  SteadyTime stop_deadline_{};
  std::vector<Slot> slots_;
  int slots_running_ = 0;
  std::deque<Lease> queue_;
  std::vector<LeaseRef> released_;  // leases to give back unrun (after Stop())
  std::map<Key, PendingResult> unacked_;
  std::vector<WorkerEvent> events_;
  int next_process_ = 0;
  int consecutive_init_failures_ = 0;
  int inits_in_flight_ = 0;
  bool gave_up_ = false;
  bool worker_freed_ = false;                // an attempt ended since the last lease call
  std::optional<SteadyTime> pending_since_;  // something has been waiting to be sent since
  SteadyTime lease_not_before_{};
  SteadyTime renew_due_{};
  SteadyTime next_poll_{};
};

// ---------------------------------------------------------------------------------------------
// Registration

std::optional<int> Agent::Impl::RegisterAndConfigure() {
  protocol::RegisterRequest req;
  req.node = options_.node;
  req.pid = ::getpid();
  const SteadyTime start = clock_.SteadyNow();
  milliseconds backoff = kMinBackoff;
  SteadyTime last_warning = start;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_) return 130;
    }
    auto resp = client_->Register(req);
    if (resp.ok()) {
      Status st = Configure(*resp);
      if (!st.ok()) {
        log_->error("node {}: {}", options_.node, st.message());
        return 1;
      }
      return std::nullopt;
    }
    const Status& st = resp.status();
    SteadyTime now = clock_.SteadyNow();
    if (!IsTransient(st)) {
      log_->error("node {}: the coordinator rejected the registration: {}", options_.node,
                  st.ToString());
      return 1;
    }
    if (now - start >= seconds(options_.max_connect_seconds)) {
      log_->error(
          "node {}: coordinator unreachable for {:.0f} s (max_connect_seconds {}); giving up. Last "
          "error: {}",
          options_.node, Seconds(now - start), options_.max_connect_seconds, st.ToString());
      return 1;
    }
    if (now - last_warning >= seconds(10) || backoff == kMinBackoff) {
      log_->warn("node {}: coordinator not reachable yet ({}); retrying", options_.node,
                 st.ToString());
      last_warning = now;
    }
    std::unique_lock<std::mutex> lock(mu_);
    comm_cv_.wait_for(lock, backoff, [&] { return stop_requested_; });
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

Status Agent::Impl::Configure(const RegisterResponse& resp) {
  PR_ASSIGN_OR_RETURN(JobSettings settings, ReadSettings(resp));
  if (resp.code_dir.empty()) {
    return InvalidArgumentError("registration answer: code_dir: expected a folder");
  }
  const std::string log_dir =
      resp.log_dir.empty() ? JoinPath(resp.output_dir, "logs") : resp.log_dir;
  node_dir_ = JoinPath(log_dir, "sys/node/" + options_.node);
  job_result_file_ = JoinPath(log_dir, "job_result.txt");
  job_result_at_register_ = StampOf(job_result_file_);
  error_dir_ = JoinPath(log_dir, "sys/error/" + options_.node);

  auto main_log = MakeFileLogger("agent", JoinPath(node_dir_, "_main.txt"));
  main_log->set_level(ParseLogLevel(settings.logging_level));
  // Errors also go to stderr, where `parallelrun run` and `kubectl logs` show them.
  auto stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  stderr_sink->set_level(spdlog::level::err);
  stderr_sink->set_formatter(
      std::make_unique<spdlog::pattern_formatter>(kSysLogPattern, spdlog::pattern_time_type::utc));
  main_log->sinks().push_back(stderr_sink);

  base_config_.node = options_.node;
  base_config_.python = options_.python;
  base_config_.host_dir = options_.host_dir;
  base_config_.code_dir = resp.code_dir;
  base_config_.entry_script = AbsolutePath(settings.entry_script, resp.code_dir);
  base_config_.arguments = resp.arguments;
  base_config_.input_type = settings.input_type;
  base_config_.output_dir = resp.output_dir;
  base_config_.log_dir = log_dir;
  base_config_.logging_level = settings.logging_level;
  base_config_.append_row_header = settings.append_row_header;
  // inputs[].columnTypes reach the Python host as {input name: {column: type}}.
  nlohmann::json column_types = nlohmann::json::object();
  const nlohmann::json& job = resp.spec["spec"];  // ReadSettings checked it is an object
  if (job.contains("inputs") && job["inputs"].is_array()) {
    for (const auto& in : job["inputs"]) {
      if (in.is_object() && in.contains("columnTypes") && in.contains("name")) {
        column_types[in["name"].get<std::string>()] = in["columnTypes"];
      }
    }
  }
  std::erase_if(base_config_.env,
                [](const std::string& e) { return e.rfind("PARALLELRUN_COLUMN_TYPES=", 0) == 0; });
  if (!column_types.empty()) {
    base_config_.env.push_back("PARALLELRUN_COLUMN_TYPES=" + column_types.dump());
  }

  process_count_ = settings.process_count;
  perf_options_.node = options_.node;
  perf_options_.log_dir = log_dir;
  perf_options_.interval_seconds = settings.resource_monitor_interval;
  perf_options_.root_pid = ::getpid();
  perf_options_.log = main_log;
  run_timeout_s_ = settings.run_timeout_s;
  unreachable_limit_s_ = options_.max_unreachable_seconds >= 0
                             ? options_.max_unreachable_seconds
                             : std::max(options_.max_connect_seconds, settings.progress_timeout_s);
  job_spec_ = resp.spec;
  job_output_dir_ = resp.output_dir;
  init_timeout_ = seconds(settings.init_timeout_s);
  renew_interval_ = milliseconds(std::max(resp.lease_seconds, 1) * 1000 / 3);
  init_failure_limit_ = kInitFailuresPerProcess * process_count_;

  std::vector<std::string> gpus = options_.gpus ? *options_.gpus : DetectGpus();
  std::lock_guard<std::mutex> lock(mu_);
  log_ = main_log;  // under mu_: Stop() may be logging from another thread
  slots_.assign(process_count_, Slot{});
  if (static_cast<int>(gpus.size()) >= process_count_) {
    for (int i = 0; i < process_count_; ++i) slots_[i].gpu = gpus[i];
  } else if (!gpus.empty()) {
    log_->warn("{} GPUs for {} worker processes: the workers share all GPUs", gpus.size(),
               process_count_);
  }
  next_process_ = NextProcessNumber(node_dir_);
  log_->info(
      "node {} registered (agent pid {}): {} worker process(es), entry script {}, "
      "runInvocationTimeout {} s, init timeout {} s, lease {} s, output {}; gives up after the "
      "coordinator is unreachable for {} s",
      options_.node, ::getpid(), process_count_, base_config_.entry_script, run_timeout_s_,
      init_timeout_.count(), resp.lease_seconds, resp.output_dir, unreachable_limit_s_);
  return Status::Ok();
}

Status Agent::Impl::RegisterAgainLocked(std::unique_lock<std::mutex>& lock) {
  protocol::RegisterRequest req;
  req.node = options_.node;
  req.pid = ::getpid();
  // Finished attempts whose results wait to be accepted are still this node's: a restarted
  // coordinator must not hand them to another node before those results arrive.
  req.held = HeldLocked();
  for (const auto& [key, pending] : unacked_) req.held.push_back({key.first, key.second});
  lock.unlock();
  auto resp = client_->Register(req);
  lock.lock();
  if (!resp.ok()) return resp.status();
  if (resp->spec != job_spec_ || resp->output_dir != job_output_dir_) {
    return FailedPreconditionError(
        "another job now answers at the coordinator's address (its spec or output folder "
        "differs from the one this agent registered with)");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Run

int Agent::Impl::Run() {
  if (auto code = RegisterAndConfigure()) return *code;
  if (options_.reap_orphans && !BecomeSubreaper()) {
    log_->warn("cannot become a child subreaper ({}): daemons started by run() may outlive it",
               std::strerror(errno));
  }
  // logs/perf/<node>/ for this agent and its workers: the first sample (the node before any
  // worker) before the slot threads start, then one every resourceMonitorInterval.
  ResourceMonitor monitor(perf_options_, clock_);
  monitor.Start();
  std::optional<UserLogEcho> echo;
  if (options_.echo_user_logs) {
    echo.emplace(perf_options_.log_dir, options_.node);
    echo->Start();
    echo_ = &*echo;
  }
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    slots_running_ = process_count_;
    SteadyTime now = clock_.SteadyNow();
    renew_due_ = now + renew_interval_;
    next_poll_ = now;
  }
  threads.reserve(process_count_);
  for (int i = 0; i < process_count_; ++i) threads.emplace_back([this, i] { SlotMain(i); });
  int code = CommLoop();
  for (auto& t : threads) t.join();
  monitor.Stop();
  if (echo) echo->Stop();
  if (options_.reap_orphans) {
    if (int n = WorkerProcess::KillOrphans(); n > 0) {
      log_->info("killed {} leftover process(es) started by the workers", n);
    }
  }
  log_->info("agent on node {} exits with code {}", options_.node, code);
  log_->flush();
  return code;
}

// ---------------------------------------------------------------------------------------------
// Slots

int Agent::Impl::LiveLocked() const {
  int n = 0;
  for (const auto& s : slots_) n += s.worker != nullptr && s.ready;
  return n;
}

bool Agent::Impl::AnyIdleLocked() const {
  for (const auto& s : slots_) {
    if (s.idle) return true;
  }
  return false;
}

int Agent::Impl::RunningLocked() const {
  int n = 0;
  for (const auto& s : slots_) n += s.running.has_value();
  return n;
}

int Agent::Impl::WantLocked() const {
  if (ending_ != Ending::kNone) return 0;
  return std::max(0, 2 * LiveLocked() - static_cast<int>(queue_.size()) - RunningLocked());
}

std::vector<LeaseRef> Agent::Impl::HeldLocked() const {
  std::vector<LeaseRef> held;
  for (const auto& s : slots_) {
    if (s.running) held.push_back(*s.running);
  }
  for (const auto& l : queue_) held.push_back({l.mini_batch_id, l.attempt});
  return held;
}

bool Agent::Impl::MayStartWorkerLocked() const {
  if (gave_up_ || kill_all_) return false;
  return ending_ == Ending::kNone || (ending_ == Ending::kDone && !queue_.empty());
}

bool Agent::Impl::SlotMustEndLocked() const {
  return ending_ == Ending::kCoordinatorStop || ending_ == Ending::kSignal ||
         ending_ == Ending::kFatal || (ending_ == Ending::kDone && queue_.empty());
}

void Agent::Impl::SlotMain(int index) {
  std::unique_ptr<Worker> worker;
  ProcessLogs logs;
  while (true) {
    if (!worker) {
      {
        // Starts in flight count toward the init failure limit, so two slots starting at once
        // cannot overshoot it: a slot waits for the others' outcome instead.
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] {
          return !MayStartWorkerLocked() ||
                 consecutive_init_failures_ + inits_in_flight_ < init_failure_limit_;
        });
        if (!MayStartWorkerLocked()) break;
        ++inits_in_flight_;
      }
      worker = StartWorker(index, &logs);
      continue;
    }
    std::optional<Lease> lease = NextLease(index);
    if (!lease) break;
    if (!worker->alive()) {
      // It died while waiting for work: the lease goes back for the replacement (or another slot).
      {
        std::lock_guard<std::mutex> lock(mu_);
        slots_[index].running.reset();
        if (ending_ == Ending::kNone || ending_ == Ending::kDone) {
          queue_.push_front(std::move(*lease));
          work_cv_.notify_one();
        } else if (ending_ == Ending::kSignal) {
          ReleaseLocked(*lease);
          WakeLocked();
        }
      }
      RetireDeadWorker(index, std::move(worker), "died while waiting for work");
      continue;
    }
    RunOutcome outcome = RunAttempt(index, *worker, logs, *lease);
    if (!worker->alive()) RetireDeadWorker(index, std::move(worker), outcome.detail);
  }
  if (worker) EndWorker(index, std::move(worker));
  std::lock_guard<std::mutex> lock(mu_);
  --slots_running_;
  WakeLocked();
}

std::unique_ptr<Worker> Agent::Impl::StartWorker(int index, ProcessLogs* logs) {
  WorkerConfig config = base_config_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    config.process = ProcessName(next_process_++);
    if (!slots_[index].gpu.empty()) {
      config.env.push_back("CUDA_VISIBLE_DEVICES=" + slots_[index].gpu);
    }
  }
  const std::string process = config.process;
  const std::string gpu = slots_[index].gpu;  // set once in Configure()
  config.init_progress = [this, process](pid_t pid, double running_s) {
    // stderr: `parallelrun run` and `kubectl logs` show it while the user waits.
    std::string line =
        fmt::format("init() still running on node {} {} (pid {}) for {:.0f} s (initTimeout {} s)",
                    options_.node, process, pid, running_s, init_timeout_.count());
    log_->warn("{}", line);
    std::fprintf(stderr, "parallelrun agent: %s\n", line.c_str());
  };
  *logs = ProcessLogs{};
  logs->node = MakeFileLogger(process, JoinPath(node_dir_, process + ".txt"));
  logs->error_path = JoinPath(error_dir_, process + ".txt");
  log_->info("{}: starting (slot {}{})", process, index, gpu.empty() ? "" : ", GPU " + gpu);

  std::unique_ptr<Worker> worker = factory_(config);
  InitOutcome init;
  pid_t pid = -1;
  const SteadyTime t0 = clock_.SteadyNow();
  if (worker) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      Slot& slot = slots_[index];
      slot.worker = worker.get();
      slot.ready = false;
      slot.aborting = false;
      if (kill_all_) {
        slot.aborting = true;
        worker->Kill();
      }
    }
    init = worker->Start(init_timeout_);
    pid = worker->pid();
  } else {
    init = {"INIT_FAILED", "the worker could not be created", ""};
  }
  const double init_s = Seconds(clock_.SteadyNow() - t0);

  const bool ready = init.status == "READY";
  const std::string kind = init.status == "INIT_TIMEOUT" ? "INIT_TIMEOUT" : "INIT_FAILED";
  bool aborted = false;
  bool gave_up_now = false;
  int failures = 0;
  {
    // One critical section for the outcome and the failure count, so a slot waiting to start
    // never sees this start neither in flight nor counted.
    std::lock_guard<std::mutex> lock(mu_);
    --inits_in_flight_;
    Slot& slot = slots_[index];
    aborted = slot.aborting || kill_all_;
    if (ready && !aborted) {
      slot.ready = true;
      consecutive_init_failures_ = 0;
      events_.push_back({process, pid, "WORKER_STARTED", "", ""});
    } else {
      slot.worker = nullptr;
      if (!aborted) {
        events_.push_back({process, pid, kind, init.error, init.detail});
        failures = ++consecutive_init_failures_;
        // A hung init() is not tried again: three more would cost 3 x initTimeout for nothing.
        if (kind == "INIT_TIMEOUT") failures = consecutive_init_failures_ = init_failure_limit_;
        if ((failures >= init_failure_limit_ || init.permanent) && !gave_up_) {
          gave_up_ = gave_up_now = true;
          events_.push_back(
              {"", 0, "NODE_GAVE_UP",
               init.permanent ? "init() cannot succeed on any worker: " + init.error
               : kind == "INIT_TIMEOUT"
                   ? init.error
                   : std::to_string(failures) +
                         " consecutive init() failures (3 x processCountPerNode); last: " +
                         init.error,
               init.detail});
        }
      }
    }
    work_cv_.notify_all();
    WakeLocked();
  }
  if (ready && !aborted) {
    log_->info("{}: started, pid {}, init() took {:.1f} s", process, pid, init_s);
    logs->node->info("node={} pid={} started, init() took {:.3f}s", options_.node, pid, init_s);
    return worker;
  }
  if (worker) worker->Kill();
  if (aborted) {
    log_->info("{} (pid {}): init() interrupted: the agent is ending", process, pid);
    return nullptr;
  }
  if (kind == "INIT_TIMEOUT") {
    log_->error("{} (pid {}): {} after {:.1f} s: {}", process, pid, kind, init_s, init.error);
  } else {
    log_->error(
        "{} (pid {}): {} after {:.1f} s: {} ({} consecutive init failure(s) on this node, it "
        "gives up at {})",
        process, pid, kind, init_s, init.error, failures, init_failure_limit_);
  }
  logs->node->error("node={} pid={} {} after {:.3f}s: {}", options_.node, pid, kind, init_s,
                    init.error);
  ErrorRecord(*logs, kind, "init()", init.error, init.detail);
  if (echo_) echo_->Failed(-1, 0, process, kind, init.error, init.detail);
  if (gave_up_now && kind == "INIT_TIMEOUT") {
    log_->error(
        "giving up on this node: init() did not finish within initTimeout ({} s); no more "
        "workers start here",
        init_timeout_.count());
  } else if (gave_up_now) {
    log_->error(
        "giving up on this node: {} consecutive init() failures (3 x processCountPerNode); no more "
        "workers start here",
        failures);
  }
  return nullptr;
}

std::optional<Lease> Agent::Impl::NextLease(int index) {
  std::unique_lock<std::mutex> lock(mu_);
  Slot& slot = slots_[index];
  if (queue_.empty()) {
    slot.idle = true;
    WakeLocked();  // a starved worker: the loop asks for leases at once
    work_cv_.wait(lock, [&] { return SlotMustEndLocked() || !queue_.empty(); });
    slot.idle = false;
  }
  if (ending_ != Ending::kNone && ending_ != Ending::kDone) return std::nullopt;
  if (queue_.empty()) return std::nullopt;
  Lease lease = std::move(queue_.front());
  queue_.pop_front();
  slot.running = LeaseRef{lease.mini_batch_id, lease.attempt};
  slot.cancel_requested = false;
  return lease;
}

RunOutcome Agent::Impl::RunAttempt(int index, Worker& worker, ProcessLogs& logs,
                                   const Lease& lease) {
  const pid_t pid = worker.pid();
  const std::string& process = worker.config().process;
  const SystemTime start_wall = clock_.Now();
  const SteadyTime t0 = clock_.SteadyNow();
  RunOutcome out;
  if (auto changed = InputChanged(lease)) {
    out.status = "RUN_EXCEPTION";
    out.failed = lease.items;
    out.error = *changed;
  } else {
    out = worker.Run(lease, seconds(run_timeout_s_));
  }
  const double elapsed = Seconds(clock_.SteadyNow() - t0);
  bool cancelled = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = slots_[index].cancel_requested;
  }

  AttemptResult r;
  r.mini_batch_id = lease.mini_batch_id;
  r.attempt = lease.attempt;
  r.process = process;
  r.pid = pid;
  // A run() that finished before the kill landed keeps its result.
  r.status = cancelled && out.status != "RUN_DONE" ? "CANCELLED" : out.status;
  r.total = lease.items > 0 ? lease.items : std::max<int64_t>(0, out.succeeded + out.failed);
  if (r.status == "RUN_DONE") {
    r.succeeded = std::clamp<int64_t>(out.succeeded, 0, r.total);
  }
  r.failed = r.total - r.succeeded;
  r.start_utc = Iso8601Utc(start_wall);
  r.elapsed_s = elapsed;
  r.cpu_s = out.cpu_s;
  r.run_s = out.run_s;
  r.error = out.error;
  r.detail = out.detail;
  if (r.status == "RUN_DONE" && !lease.part_file.empty()) {
    // What the assembly will check the part against (runtime/output/part_file.h).
    auto part = FingerprintFile(lease.part_file);
    if (part.ok()) {
      r.part_bytes = part->bytes;
      r.part_crc32 = part->crc32;
    } else {
      r.status = "RUN_EXCEPTION";
      r.succeeded = 0;
      r.failed = r.total;
      r.error =
          "the part file of this attempt cannot be read after run(): " + part.status().message();
    }
  }

  logs.node->info(
      "node={} pid={} mini_batch={} attempt={} items={} succeeded={} failed={} start={} "
      "duration={:.3f}s cpu={:.3f}s run={:.3f}s status={}",
      options_.node, pid, r.mini_batch_id, r.attempt, r.total, r.succeeded, r.failed, r.start_utc,
      r.elapsed_s, r.cpu_s, r.run_s, r.status);
  if (r.status != "RUN_DONE") {
    ErrorRecord(
        logs, r.status,
        "mini_batch=" + std::to_string(r.mini_batch_id) + " attempt=" + std::to_string(r.attempt),
        r.error, r.detail);
    if (echo_) echo_->Failed(r.mini_batch_id, r.attempt, process, r.status, r.error, r.detail);
  }
  if (r.status == "RUN_TIMEOUT") {
    log_->warn(
        "{} (pid {}): run() exceeded runInvocationTimeout ({} s) on mini-batch {} attempt {}; the "
        "worker was killed",
        process, pid, run_timeout_s_, r.mini_batch_id, r.attempt);
  } else if (r.status == "WORKER_DIED") {
    log_->warn("{} (pid {}): died during mini-batch {} attempt {}: {}", process, pid,
               r.mini_batch_id, r.attempt, r.detail);
  } else if (r.status == "CANCELLED") {
    log_->info("{} (pid {}): mini-batch {} attempt {} cancelled", process, pid, r.mini_batch_id,
               r.attempt);
  }

  const bool dead = !worker.alive();
  std::lock_guard<std::mutex> lock(mu_);
  Slot& slot = slots_[index];
  slot.running.reset();
  slot.cancel_requested = false;
  if (dead) slot.ready = false;  // no longer counts toward the leases to ask for
  unacked_[{r.mini_batch_id, r.attempt}] = PendingResult{std::move(r), SteadyTime::min(), 0};
  worker_freed_ = true;
  WakeLocked();
  return out;
}

void Agent::Impl::RetireDeadWorker(int index, std::unique_ptr<Worker> worker,
                                   const std::string& detail) {
  const pid_t pid = worker->pid();
  const std::string process = worker->config().process;
  bool replace = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[index].worker = nullptr;
    slots_[index].ready = false;
    events_.push_back({process, pid, "WORKER_EXITED", "", detail});
    replace = MayStartWorkerLocked();
    WakeLocked();
  }
  log_->warn("{} (pid {}) exited ({}){}", process, pid, detail.empty() ? "no detail" : detail,
             replace ? "; starting a replacement" : "");
  worker.reset();
}

void Agent::Impl::EndWorker(int index, std::unique_ptr<Worker> worker) {
  bool kill = false;
  seconds grace = kShutdownGrace;
  {
    std::lock_guard<std::mutex> lock(mu_);
    kill = kill_all_ || ending_ == Ending::kCoordinatorStop || ending_ == Ending::kFatal;
    if (ending_ == Ending::kSignal) {
      auto left = std::chrono::duration_cast<seconds>(stop_deadline_ - clock_.SteadyNow());
      grace = std::max(seconds(1), left);
    }
  }
  const pid_t pid = worker->pid();
  const std::string process = worker->config().process;
  if (kill) {
    worker->Kill();
  } else {
    worker->Shutdown(grace);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[index].worker = nullptr;
    slots_[index].ready = false;
    events_.push_back({process, pid, "WORKER_EXITED", "", kill ? "killed" : "shut down"});
    WakeLocked();
  }
  log_->info("{} (pid {}): {}", process, pid, kill ? "killed" : "shut down");
}

void Agent::Impl::ErrorRecord(ProcessLogs& logs, const std::string& status, const std::string& what,
                              const std::string& error, const std::string& detail) {
  std::string record = "status=" + status + " " + what + " node=" + options_.node +
                       " error=" + (error.empty() ? "-" : error);
  if (!detail.empty()) record += "\n" + detail;
  logs.Error().error("{}", record);
}

// ---------------------------------------------------------------------------------------------
// Communication loop

int Agent::Impl::CommLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  bool unreachable = false;
  bool register_again = false;  // the coordinator was unreachable: it may be a new one
  SteadyTime unreachable_since{};
  milliseconds backoff = kMinBackoff;
  SteadyTime backoff_until{};
  // A call failed: true when the agent must end now. Otherwise the agent keeps its workers,
  // their results and its leases, and tries again with backoff (registering again first).
  auto failed = [&](const Status& failure, SteadyTime now) {
    // A coordinator that has ended answers no more (connection refused) or, while it closes,
    // 404: that is the end of the job, not an error, once it is known to have ended.
    const bool gone = IsTransient(failure) || failure.code() == StatusCode::kNotFound;
    if (gone && CoordinatorEndedLocked()) {
      JobOverLocked(failure);
      return true;
    }
    if (!IsTransient(failure) && failure.code() != StatusCode::kNotFound) {
      FatalLocked("the coordinator rejected the agent: " + failure.ToString());
      return true;
    }
    if (ending_ == Ending::kCoordinatorStop) {
      // The job is over and these are cancelled attempts: not worth waiting for.
      log_->warn("could not report {} result(s) after the coordinator's stop: {}", unacked_.size(),
                 failure.ToString());
      return true;
    }
    if (!unreachable) {
      unreachable = true;
      unreachable_since = now;
      log_->warn(
          "coordinator unreachable ({}); keeping {} running and {} queued attempt(s) and {} "
          "result(s), retrying for up to {} s",
          failure.ToString(), RunningLocked(), queue_.size(), unacked_.size(),
          unreachable_limit_s_);
    }
    register_again = true;
    // After `done` the coordinator may well have ended: no long wait for it then. After Stop()
    // the flush deadline bounds the wait instead (exit 130, resumable).
    const int limit = ending_ == Ending::kDone
                          ? std::min(unreachable_limit_s_, options_.max_connect_seconds)
                          : unreachable_limit_s_;
    if (ending_ != Ending::kSignal && now - unreachable_since >= seconds(limit)) {
      FatalLocked("coordinator unreachable for " + std::to_string(limit) +
                  " s; giving up. Last error: " + failure.ToString());
      return true;
    }
    backoff_until = now + backoff;
    backoff = std::min(backoff * 2, kMaxBackoff);
    return false;
  };
  while (true) {
    SteadyTime now = clock_.SteadyNow();
    comm_wake_ = false;
    ApplyStopRequestLocked(now);
    if (ending_ == Ending::kFatal || job_over_) break;
    const bool finishing = ending_ != Ending::kNone && slots_running_ == 0;
    if (finishing && unacked_.empty() && released_.empty()) {
      if (!events_.empty()) {
        // Best effort: the coordinator may already be gone after `done`.
        ResultsRequest last;
        last.node = options_.node;
        last.events = std::move(events_);
        events_.clear();
        lock.unlock();
        (void)client_->Report(last);
        lock.lock();
      }
      break;
    }
    if (ending_ == Ending::kSignal && now >= stop_deadline_ + kStopFlush) {
      log_->error("stopping with {} result(s) not accepted by the coordinator", unacked_.size());
      break;
    }
    if (now < backoff_until) {
      SteadyTime until = backoff_until;
      if (ending_ == Ending::kSignal && !kill_all_) until = std::min(until, stop_deadline_);
      comm_cv_.wait_for(lock, until - now, [&] {
        return stop_requested_ && ending_ != Ending::kSignal && ending_ != Ending::kFatal;
      });
      continue;
    }
    if (register_again) {
      Status st = RegisterAgainLocked(lock);
      now = clock_.SteadyNow();
      if (!st.ok()) {
        if (failed(st, now)) break;
        continue;
      }
      log_->info(
          "coordinator reachable again after {:.1f} s: registered again with {} running and {} "
          "queued attempt(s); reporting {} result(s)",
          Seconds(now - unreachable_since), RunningLocked(), queue_.size(), unacked_.size());
      register_again = false;
      unreachable = false;
      backoff = kMinBackoff;
      // Everything at once: renewals (the leases are this node's again) and the results.
      renew_due_ = now;
      for (auto& [key, pending] : unacked_) pending.next_send = now;
      continue;
    }

    // Whether to talk now. A free worker with nothing queued cannot wait; otherwise results and
    // lease requests are held up to kBatchWindow so that several share one round trip (workers
    // still have a queued lease each meanwhile). Renewals, polls and an ending agent go at once.
    bool results_due = false;
    for (const auto& [key, pending] : unacked_) results_due |= pending.next_send <= now;
    const bool report = results_due || !events_.empty() || !released_.empty();
    const int want = WantLocked();
    const bool lease_allowed = want > 0 && (now >= lease_not_before_ || worker_freed_);
    const bool lease_due = (RunningLocked() > 0 || !queue_.empty()) && now >= renew_due_;
    const bool poll_due = ending_ == Ending::kNone && now >= next_poll_;
    const bool starving = lease_allowed && (queue_.empty() || AnyIdleLocked());
    if ((report || lease_allowed) && !pending_since_) pending_since_ = now;
    const bool go = lease_due || poll_due || starving || ending_ != Ending::kNone ||
                    (pending_since_ && now >= *pending_since_ + kBatchWindow);
    if (!go || (!report && !lease_allowed && !lease_due && !poll_due)) {
      SteadyTime until = NextWakeLocked(now);
      if (pending_since_) until = std::min(until, *pending_since_ + kBatchWindow);
      if (until > now) comm_cv_.wait_for(lock, until - now, [&] { return comm_wake_; });
      continue;
    }
    pending_since_.reset();

    // What to say: every result due and every event; renewals and new leases.
    ResultsRequest rr;
    rr.node = options_.node;
    std::vector<Key> sent;
    for (const auto& [key, pending] : unacked_) {
      if (pending.next_send <= now) {
        rr.results.push_back(pending.result);
        sent.push_back(key);
      }
    }
    rr.events = events_;
    rr.released = released_;
    const size_t events_sent = events_.size();
    const size_t released_sent = released_.size();
    const bool ask = lease_allowed || lease_due || poll_due;
    LeaseRequest lr;
    if (ask) {
      lr.node = options_.node;
      lr.max = want;
      lr.renew = HeldLocked();
      worker_freed_ = false;
    }

    lock.unlock();
    Status failure;
    std::optional<StatusOr<ResultsResponse>> report_resp;
    std::optional<StatusOr<LeaseResponse>> lease_resp;
    if (report) {
      report_resp = client_->Report(rr);
      if (!report_resp->ok()) failure = report_resp->status();
    }
    // A coordinator that failed the report would fail the lease too; the next round retries both.
    if (ask && failure.ok()) {
      lease_resp = client_->Lease(lr);
      if (!lease_resp->ok()) failure = lease_resp->status();
    }
    lock.lock();
    now = clock_.SteadyNow();
    if (report_resp && !report_resp->ok() && report_resp->status().code() == StatusCode::kAborted) {
      // 409: every result refused (this node does not hold those leases); the events and
      // releases of the request were taken.
      log_->warn("the coordinator refused {} result(s): {}; dropped", sent.size(),
                 report_resp->status().message());
      for (const Key& key : sent) unacked_.erase(key);
      released_.erase(released_.begin(), released_.begin() + released_sent);
      events_.erase(events_.begin(), events_.begin() + std::min(events_sent, events_.size()));
      report_resp.reset();
      failure = Status::Ok();
      if (ask) {
        // The lease call was skipped for the failed report: next round.
        worker_freed_ = true;
      }
    }
    if (report_resp && report_resp->ok()) {
      if (released_sent > 0) {
        log_->info("gave {} unrun lease(s) back to the coordinator", released_sent);
      }
      released_.erase(released_.begin(), released_.begin() + released_sent);
      HandleReportLocked(**report_resp, sent, events_sent, now);
    }
    if (lease_resp && lease_resp->ok()) {
      log_->debug("lease: asked {}, got {}, renewed {}, cancelled {}{}{}", lr.max,
                  (*lease_resp)->leases.size(), lr.renew.size(), (*lease_resp)->cancel.size(),
                  (*lease_resp)->done ? ", done" : "", (*lease_resp)->stop ? ", stop" : "");
      HandleLeaseLocked(**lease_resp, lr.max, now);
    }
    if (failure.ok()) {
      backoff = kMinBackoff;
      continue;
    }
    if (failed(failure, now)) break;
  }

  if (job_over_) return 0;
  switch (ending_) {
    case Ending::kSignal:
      return 130;
    case Ending::kFatal:
      return 1;
    default:
      return 0;
  }
}

SteadyTime Agent::Impl::NextWakeLocked(SteadyTime now) const {
  SteadyTime t = now + kMaxWait;
  if (!queue_.empty() || RunningLocked() > 0) t = std::min(t, renew_due_);
  if (WantLocked() > 0) t = std::min(t, lease_not_before_);
  if (ending_ == Ending::kNone) t = std::min(t, next_poll_);
  for (const auto& [key, pending] : unacked_) t = std::min(t, pending.next_send);
  if (ending_ == Ending::kSignal) {
    t = std::min(t, kill_all_ ? stop_deadline_ + kStopFlush : stop_deadline_);
  }
  return t;
}

void Agent::Impl::HandleReportLocked(const ResultsResponse& resp, const std::vector<Key>& sent,
                                     size_t events_sent, SteadyTime now) {
  std::set<Key> accepted;
  for (const auto& ref : resp.accepted) accepted.insert(KeyOf(ref));
  for (const auto& ref : resp.refused) {
    // Fencing: the lease of that attempt is not this node's (it expired, or the attempt was
    // cancelled); the coordinator never counts it, so there is nothing to resend.
    log_->warn("the coordinator refused the result of mini-batch {} attempt {}; dropped",
               ref.mini_batch_id, ref.attempt);
    accepted.insert(KeyOf(ref));
  }
  for (const Key& key : accepted) unacked_.erase(key);
  for (const Key& key : sent) {
    if (accepted.count(key)) continue;
    auto it = unacked_.find(key);
    if (it == unacked_.end()) continue;
    it->second.next_send = now + kResendAfter;
    if (++it->second.unnamed_sends >= kMaxUnnamedSends) {
      log_->error(
          "the coordinator did not accept the result of mini-batch {} attempt {} after {} sends; "
          "dropping it (its lease expires on the coordinator)",
          key.first, key.second, kMaxUnnamedSends);
      unacked_.erase(it);
    }
  }
  events_.erase(events_.begin(), events_.begin() + std::min(events_sent, events_.size()));
  if (resp.stop) CoordinatorStopLocked();
}

void Agent::Impl::HandleLeaseLocked(const LeaseResponse& resp, int asked, SteadyTime now) {
  for (const auto& ref : resp.cancel) CancelLocked(ref);
  if (resp.stop) {
    CoordinatorStopLocked();
  } else {
    if (ending_ == Ending::kNone) {
      for (const auto& lease : resp.leases) queue_.push_back(lease);
      if (!resp.leases.empty()) work_cv_.notify_all();
    } else if (!resp.leases.empty() && ending_ == Ending::kSignal) {
      log_->info("giving back {} lease(s) that arrived after the stop request", resp.leases.size());
      for (const auto& lease : resp.leases) ReleaseLocked(lease);
    } else if (!resp.leases.empty()) {
      log_->warn("dropping {} lease(s) that arrived while ending; they expire on the coordinator",
                 resp.leases.size());
    }
    if (resp.done && ending_ == Ending::kNone) {
      ending_ = Ending::kDone;
      log_->info(
          "coordinator says done: finishing {} running and {} queued attempt(s), then shutting "
          "workers down",
          RunningLocked(), queue_.size());
      if (queue_.empty()) AbortInitializingLocked();
      work_cv_.notify_all();
    }
  }
  if (resp.retry_after_ms > 0) {
    lease_not_before_ = now + milliseconds(resp.retry_after_ms);
  } else if (asked > 0 && static_cast<int>(resp.leases.size()) < asked) {
    lease_not_before_ = now + kNoWorkRetry;
  } else {
    lease_not_before_ = now;
  }
  renew_due_ = now + renew_interval_;
  next_poll_ = now + kPollInterval;
}

void Agent::Impl::ApplyStopRequestLocked(SteadyTime now) {
  if (stop_requested_ && ending_ != Ending::kSignal && ending_ != Ending::kFatal) {
    ending_ = Ending::kSignal;
    stop_deadline_ = now + kStopGrace;
    const size_t given_back = queue_.size();
    for (const auto& lease : queue_) ReleaseLocked(lease);
    queue_.clear();
    log_->warn(
        "stop requested: no new leases, {} queued lease(s) given back to the coordinator, {} "
        "running attempt(s) get {} s to finish",
        given_back, RunningLocked(), kStopGrace.count());
    AbortInitializingLocked();
    work_cv_.notify_all();
  }
  if (ending_ == Ending::kSignal && !kill_all_ && now >= stop_deadline_) {
    if (RunningLocked() > 0) {
      log_->warn("stop grace of {} s is over: killing {} running attempt(s)", kStopGrace.count(),
                 RunningLocked());
    }
    KillAllLocked();
  }
}

void Agent::Impl::CancelLocked(const LeaseRef& ref) {
  const Key key = KeyOf(ref);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (KeyOf(*it) == key) {
      queue_.erase(it);
      log_->info("coordinator cancelled queued mini-batch {} attempt {}; dropped", key.first,
                 key.second);
      return;
    }
  }
  for (auto& slot : slots_) {
    if (slot.running && KeyOf(*slot.running) == key && !slot.cancel_requested) {
      slot.cancel_requested = true;
      if (slot.worker) {
        log_->info("coordinator cancelled mini-batch {} attempt {}: killing {} (pid {})", key.first,
                   key.second, slot.worker->config().process, slot.worker->pid());
        slot.worker->Kill();
      }
      return;
    }
  }
}

void Agent::Impl::CoordinatorStopLocked() {
  if (ending_ == Ending::kNone || ending_ == Ending::kDone) {
    ending_ = Ending::kCoordinatorStop;
    log_->warn("coordinator says stop: killing {} running attempt(s), dropping {} queued",
               RunningLocked(), queue_.size());
  }
  queue_.clear();
  KillAllLocked();
  work_cv_.notify_all();
}

bool Agent::Impl::CoordinatorEndedLocked() const {
  if (ending_ == Ending::kDone || ending_ == Ending::kCoordinatorStop) return true;
  if (job_result_file_.empty()) return false;
  FileStamp now = StampOf(job_result_file_);
  return now.exists && !(now == job_result_at_register_);
}

void Agent::Impl::JobOverLocked(const Status& last_error) {
  log_->info(
      "the coordinator has ended ({}); the job is over: {} running attempt(s) stopped, {} queued "
      "and {} unreported dropped",
      last_error.ToString(), RunningLocked(), queue_.size(), unacked_.size());
  job_over_ = true;
  if (ending_ != Ending::kSignal) ending_ = Ending::kCoordinatorStop;
  queue_.clear();
  KillAllLocked();
  work_cv_.notify_all();
}

void Agent::Impl::FatalLocked(const std::string& why) {
  log_->error("{}; exiting", why);
  // An interrupted agent still exits 130: its work is resumable whatever the coordinator said.
  if (ending_ != Ending::kSignal) ending_ = Ending::kFatal;
  queue_.clear();
  KillAllLocked();
  work_cv_.notify_all();
}

void Agent::Impl::KillAllLocked() {
  kill_all_ = true;
  for (auto& slot : slots_) {
    if (slot.running) slot.cancel_requested = true;
    if (!slot.ready) slot.aborting = true;
    if (slot.worker) slot.worker->Kill();
  }
}

void Agent::Impl::AbortInitializingLocked() {
  for (auto& slot : slots_) {
    if (slot.worker && !slot.ready) {
      slot.aborting = true;
      slot.worker->Kill();
    }
  }
}

// ---------------------------------------------------------------------------------------------

Agent::Agent(AgentOptions options, std::unique_ptr<protocol::CoordinatorClient> client,
             WorkerFactory factory, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(client), std::move(factory),
                                   clock)) {}
Agent::~Agent() = default;
int Agent::Run() { return impl_->Run(); }
void Agent::Stop() { impl_->Stop(); }

}  // namespace parallelrun::rt
