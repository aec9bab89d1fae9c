// A host program seen from the agent: spawns it and speaks the line protocol of
// runtime/hosts/python/README.md.

#include "runtime/worker/host_worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/worker/worker.h"
#include "runtime/worker/worker_process.h"

namespace parallelrun::rt {
namespace {

using json = nlohmann::json;
using std::chrono::steady_clock;

// How long a process that has closed its pipe or announced its end gets to exit by itself
// before it is killed (so its exit code, not our SIGKILL, is what gets reported).
constexpr std::chrono::seconds kExitGrace{5};
// Bytes of the worker's stderr quoted in the detail of a death.
constexpr int64_t kStderrTailBytes = 2000;
// Bytes of a malformed reply quoted in an error.
constexpr size_t kQuoteBytes = 300;

double SecondsSince(steady_clock::time_point t) {
  return std::chrono::duration<double>(steady_clock::now() - t).count();
}

std::string Quote(const std::string& s) {
  if (s.size() <= kQuoteBytes) return s;
  return s.substr(0, kQuoteBytes) + "...";
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_size);
}

// The last `max_bytes` of `path` after offset `from` (what a worker wrote since it started),
// starting at a line boundary when one is in reach.
std::string ReadTail(const std::string& path, int64_t from, int64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string out;
  if (::fstat(fd, &st) == 0 && st.st_size > from) {
    int64_t begin = std::max(from, static_cast<int64_t>(st.st_size) - max_bytes);
    out.resize(static_cast<size_t>(st.st_size - begin));
    ssize_t n = ::pread(fd, out.data(), out.size(), begin);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    if (begin > from) {
      auto nl = out.find('\n');
      if (nl != std::string::npos && nl + 1 < out.size()) out.erase(0, nl + 1);
    }
  }
  ::close(fd);
  return out;
}

// "PYTHONPATH" from "PYTHONPATH=..."; empty when there is no '='.
std::string EnvKey(const std::string& entry) {
  auto eq = entry.find('=');
  return eq == std::string::npos ? std::string() : entry.substr(0, eq);
}

class HostWorker final : public Worker {
 public:
  HostWorker(WorkerConfig config, HostProgram program)
      : config_(std::move(config)), program_(std::move(program)) {
    std::string tail = config_.node + "/" + config_.process;
    stdout_path_ = JoinPath(config_.log_dir, "user/stdout/" + tail + ".stdout.txt");
    stderr_path_ = JoinPath(config_.log_dir, "user/stderr/" + tail + ".stderr.txt");
    working_dir_ = JoinPath(config_.output_dir, ".parallelrun/work/" + tail);
  }

  ~HostWorker() override = default;  // WorkerProcess kills and reaps

  InitOutcome Start(std::chrono::seconds init_timeout) override;
  RunOutcome Run(const protocol::Lease& lease, std::chrono::seconds timeout) override;
  void Shutdown(std::chrono::seconds grace) override;
  void Kill() override;
  bool alive() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return process_ != nullptr && !process_->exited();
  }
  pid_t pid() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return process_ != nullptr ? process_->pid() : -1;
  }
  const WorkerConfig& config() const override { return config_; }

 private:
  std::vector<std::string> Environment() const;
  static std::string RunRequest(const protocol::Lease& lease, const std::string& input_type);
  // The outcome the host's first line (ready / init_failed / anything else) says.
  InitOutcome InitReply(const std::string& line);
  // ExitInfo of a child that is ending (closed pipe, said goodbye): lets it exit by itself first.
  ExitInfo ReapEnding();
  // Reads the first line of the host (ready / init_failed) before `deadline`, calling
  // config_.init_progress while it waits.
  WorkerProcess::ReadResult WaitForInit(std::chrono::seconds init_timeout,
                                        steady_clock::time_point deadline, std::string* line);
  // "exit code 3", plus what the worker wrote to stderr since it started.
  std::string DeathDetail(const ExitInfo& info) const;
  // "exit code 3", "signal 9 (Killed)"; a SIGKILL that nobody here sent comes with the worker's
  // peak RSS and, when the kernel's OOM-kill counter rose since oom_kills_before_, says so.
  std::string DeathCause(const ExitInfo& info) const;
  void FillDeath(RunOutcome* out, steady_clock::time_point start);
  void FillTimeout(RunOutcome* out, std::chrono::seconds timeout, steady_clock::time_point start);
  void FillProtocolError(RunOutcome* out, const std::string& what, steady_clock::time_point start);
  double CpuSinceLastReply() const { return std::max(0.0, process_->cpu_s() - cpu_total_s_); }

  const WorkerConfig config_;
  const HostProgram program_;
  std::string stdout_path_;
  std::string stderr_path_;
  std::string working_dir_;
  int64_t stderr_start_ = 0;  // size of the stderr log when this worker started
  bool started_ = false;
  bool ready_ = false;
  double cpu_total_s_ = 0;        // the host's CPU time as of its last reply
  int64_t oom_kills_before_ = 0;  // OomKillCount() when init() or the current run() started
  steady_clock::time_point oom_read_at_{};  // when oom_kills_before_ was read

  mutable std::mutex mu_;  // guards process_ (set once, read by Kill()/pid() from other threads)
  std::unique_ptr<WorkerProcess> process_;
  std::atomic<bool> kill_requested_{false};
};

std::vector<std::string> HostWorker::Environment() const {
  std::vector<std::string> env = program_.env;
  env.insert(
      env.end(),
      {
          "PARALLELRUN_CONTROL_IN_FD=" + std::to_string(WorkerProcess::kChildControlInFd),
          "PARALLELRUN_CONTROL_OUT_FD=" + std::to_string(WorkerProcess::kChildControlOutFd),
          "PARALLELRUN_ENTRY_SCRIPT=" + config_.entry_script,
          "PARALLELRUN_NODE=" + config_.node,
          "PARALLELRUN_PROCESS=" + config_.process,
          "PARALLELRUN_OUTPUT_DIR=" + config_.output_dir,
          "PARALLELRUN_LOG_DIR=" + config_.log_dir,
          "PARALLELRUN_WORKING_DIR=" + working_dir_,
          "PARALLELRUN_LOGGING_LEVEL=" + config_.logging_level,
          "PARALLELRUN_INPUT_TYPE=" + config_.input_type,
          std::string("PARALLELRUN_APPEND_ROW_HEADER=") + (config_.append_row_header ? "1" : "0"),
      });
  if (config_.agent_syncs_parts) env.push_back("PARALLELRUN_PART_SYNC=agent");
  // Extra variables may not redefine the host's or the protocol's: a duplicate key would be read
  // differently by getenv (first) and os.environ (last).
  for (const auto& e : config_.env) {
    std::string key = EnvKey(e);
    bool ours = false;
    for (const auto& o : env) ours = ours || EnvKey(o) == key;
    if (!key.empty() && !ours) env.push_back(e);
  }
  return env;
}

WorkerProcess::ReadResult HostWorker::WaitForInit(std::chrono::seconds init_timeout,
                                                  steady_clock::time_point deadline,
                                                  std::string* line) {
  const auto start = steady_clock::now();
  const auto interval = InitProgressInterval(init_timeout);
  auto next_report = start + interval;
  while (true) {
    auto until = config_.init_progress ? std::min(deadline, next_report) : deadline;
    WorkerProcess::ReadResult r = process_->ReadLine(until, line);
    if (r != WorkerProcess::ReadResult::kTimeout || until >= deadline) return r;
    config_.init_progress(process_->pid(), SecondsSince(start));
    next_report += interval;
  }
}

InitOutcome HostWorker::Start(std::chrono::seconds init_timeout) {
  InitOutcome out;
  if (started_) {
    out.error = "Start() called twice on worker " + config_.process;
    return out;
  }
  started_ = true;
  for (const auto& [path, error] : program_.required_files) {
    if (!PathExists(path)) {
      out.error = error;
      return out;
    }
  }
  for (const std::string& dir : {Dirname(stdout_path_), Dirname(stderr_path_), working_dir_}) {
    Status st = MakeDirs(dir);
    if (!st.ok()) {
      out.error = "cannot create the worker's folder " + dir + ": " + st.message();
      return out;
    }
  }
  stderr_start_ = FileSize(stderr_path_);
  oom_kills_before_ = OomKillCount();
  oom_read_at_ = steady_clock::now();

  SpawnOptions spawn;
  spawn.argv = program_.argv;
  spawn.argv.insert(spawn.argv.end(), config_.arguments.begin(), config_.arguments.end());
  spawn.env = Environment();
  spawn.stdout_path = stdout_path_;
  spawn.stderr_path = stderr_path_;
  spawn.cwd = config_.code_dir.empty() ? Dirname(config_.entry_script) : config_.code_dir;
  spawn.die_with_parent = true;
  auto deadline = steady_clock::now() + init_timeout;
  StatusOr<std::unique_ptr<WorkerProcess>> process = WorkerProcess::Start(spawn);
  if (!process.ok()) {
    out.error = "cannot start " + program_.name + " (" + program_.argv.at(0) +
                "): " + process.status().message();
    return out;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    process_ = std::move(process).value();
    if (kill_requested_) process_->Kill();
  }

  std::string line;
  WorkerProcess::ReadResult read = WaitForInit(init_timeout, deadline, &line);
  switch (read) {
    case WorkerProcess::ReadResult::kLine:
      break;
    case WorkerProcess::ReadResult::kTimeout:
      process_->KillAndReap();
      out.failure = AttemptStatus::kInitTimeout;
      out.error = "init() did not finish within initTimeout (" +
                  std::to_string(init_timeout.count()) + " s); a hung init() is not retried";
      out.detail = "the worker process (pid " + std::to_string(process_->pid()) + ") was killed";
      return out;
    case WorkerProcess::ReadResult::kClosed: {
      ExitInfo info = ReapEnding();
      out.error = kill_requested_
                      ? "the worker was killed during start-up"
                      : "the worker process exited before init() finished: " + DeathCause(info);
      out.detail = DeathDetail(info);
      return out;
    }
    case WorkerProcess::ReadResult::kTooLong:
      process_->KillAndReap();
      out.error = "the worker sent a message longer than " +
                  std::to_string(WorkerProcess::kMaxLineBytes) + " bytes during start-up";
      return out;
  }

  return InitReply(line);
}

InitOutcome HostWorker::InitReply(const std::string& line) {
  InitOutcome out;
  json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
  std::string event = msg.is_object() && msg.contains("event") && msg["event"].is_string()
                          ? msg["event"].get<std::string>()
                          : std::string();
  if (event == "ready") {
    if (msg.contains("cpu_total_s") && msg["cpu_total_s"].is_number()) {
      cpu_total_s_ = msg["cpu_total_s"].get<double>();
    }
    ready_ = true;
    out.ready = true;
    return out;
  }
  if (event == "init_failed") {
    auto str = [&](const char* key) {
      return msg.contains(key) && msg[key].is_string() ? msg[key].get<std::string>()
                                                       : std::string();
    };
    out.error = str("error");
    out.detail = str("detail");
    out.permanent =
        msg.contains("permanent") && msg["permanent"].is_boolean() && msg["permanent"].get<bool>();
    if (out.error.empty()) out.error = "init() failed (the host gave no reason)";
    ReapEnding();  // the host exits 1 after init_failed
    return out;
  }
  process_->KillAndReap();
  out.error =
      "the worker sent an unexpected message during start-up (expected a ready or "
      "init_failed event): " +
      Quote(line);
  return out;
}

std::string HostWorker::RunRequest(const protocol::Lease& lease,
                                   const std::string& default_input_type) {
  const std::string& input_type = lease.input_type.empty() ? default_input_type : lease.input_type;
  json req = {{"op", "run"},
              {"mini_batch_id", lease.mini_batch_id},
              {"attempt", lease.attempt},
              {"input_type", input_type},
              {"input_name", lease.input_name},
              {"part_file", lease.part_file}};
  if (!lease.partition_key_value.empty()) req["partition_key_value"] = lease.partition_key_value;
  if (input_type == "tabular" && !lease.segments.empty()) {
    req["segments"] = lease.segments;
    req["header"] = lease.header;
    req["items"] = lease.items;
  } else if (input_type == "tabular") {
    req["file"] = lease.file;
    req["format"] = lease.format.empty() ? "csv" : lease.format;
    req["header"] = lease.header;
    req["header_end"] = lease.header_end;
    req["begin"] = lease.begin;
    req["end"] = lease.end;
    req["items"] = lease.items;
  } else {
    req["files"] = lease.files;
  }
  // Invalid UTF-8 in a path (file names are bytes on Linux) is replaced rather than thrown on.
  std::string text = req.dump(-1, ' ', false, json::error_handler_t::replace);
  text += '\n';
  return text;
}

RunOutcome HostWorker::Run(const protocol::Lease& lease, std::chrono::seconds timeout) {
  RunOutcome out;
  auto start = steady_clock::now();
  auto deadline = start + timeout;
  if (kill_requested_) {
    out.status = AttemptStatus::kCancelled;
    out.error = "the worker was stopped before run() was called";
    return out;
  }
  if (!ready_ || process_ == nullptr || process_->reaped()) {
    out.status = AttemptStatus::kWorkerDied;
    out.error = "the worker is not running (it did not start, or it already ended)";
    return out;
  }

  // Read at most once a second (it costs two /proc and cgroup files per mini-batch otherwise): an
  // OOM kill elsewhere in the second before run() could at worst be named as this death's likely
  // cause, while a kill of this worker is always seen.
  if (start - oom_read_at_ >= std::chrono::seconds(1)) {
    oom_kills_before_ = OomKillCount();
    oom_read_at_ = start;
  }
  Status sent = process_->Send(RunRequest(lease, config_.input_type), deadline);
  if (sent.code() == StatusCode::kDeadlineExceeded) {
    FillTimeout(&out, timeout, start);
    return out;
  }
  if (!sent.ok()) {
    FillDeath(&out, start);
    return out;
  }

  std::string line;
  switch (process_->ReadLine(deadline, &line)) {
    case WorkerProcess::ReadResult::kLine:
      break;
    case WorkerProcess::ReadResult::kTimeout:
      FillTimeout(&out, timeout, start);
      return out;
    case WorkerProcess::ReadResult::kClosed:
      FillDeath(&out, start);
      return out;
    case WorkerProcess::ReadResult::kTooLong:
      FillProtocolError(
          &out, "a reply longer than " + std::to_string(WorkerProcess::kMaxLineBytes) + " bytes",
          start);
      return out;
  }

  json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
  try {
    if (!msg.is_object() || msg.value("event", "") != "result") {
      FillProtocolError(&out, "a reply that is not a result event: " + Quote(line), start);
      return out;
    }
    const std::optional<AttemptStatus> status =
        ParseAttemptStatus(msg.at("status").get<std::string>());
    if (status != AttemptStatus::kRunDone && status != AttemptStatus::kRunException &&
        status != AttemptStatus::kRunWrongType) {
      FillProtocolError(&out, "a result with an unknown status: " + Quote(line), start);
      return out;
    }
    out.status = *status;
    out.succeeded = msg.at("succeeded").get<int64_t>();
    out.failed = msg.at("failed").get<int64_t>();
    out.run_s = msg.value("run_s", 0.0);
    out.cpu_s = msg.value("cpu_s", 0.0);
    out.error = msg.value("error", "");
    out.detail = msg.value("detail", "");
    cpu_total_s_ = msg.value("cpu_total_s", cpu_total_s_);
  } catch (const json::exception& e) {
    out = RunOutcome();
    FillProtocolError(&out, std::string("a malformed result (") + e.what() + "): " + Quote(line),
                      start);
  }
  return out;
}

void HostWorker::FillTimeout(RunOutcome* out, std::chrono::seconds timeout,
                             steady_clock::time_point start) {
  process_->KillAndReap();
  out->run_s = SecondsSince(start);
  out->cpu_s = CpuSinceLastReply();
  if (kill_requested_) {
    out->status = AttemptStatus::kCancelled;
    out->error = "run() was cancelled: the worker was killed";
    return;
  }
  out->status = AttemptStatus::kRunTimeout;
  out->error = "run() did not return within " + std::to_string(timeout.count()) + " s";
  out->detail = "the worker process (pid " + std::to_string(process_->pid()) + ") was killed";
}

void HostWorker::FillDeath(RunOutcome* out, steady_clock::time_point start) {
  ExitInfo info = ReapEnding();
  out->run_s = SecondsSince(start);
  out->cpu_s = CpuSinceLastReply();
  out->detail = DeathDetail(info);
  if (kill_requested_) {
    out->status = AttemptStatus::kCancelled;
    out->error = "run() was cancelled: the worker was killed";
    return;
  }
  out->status = AttemptStatus::kWorkerDied;
  out->error = "the worker process died during run(): " + DeathCause(info);
}

void HostWorker::FillProtocolError(RunOutcome* out, const std::string& what,
                                   steady_clock::time_point start) {
  // A worker that garbles the protocol cannot be trusted with another mini-batch.
  process_->KillAndReap();
  out->status = kill_requested_ ? AttemptStatus::kCancelled : AttemptStatus::kWorkerDied;
  out->run_s = SecondsSince(start);
  out->cpu_s = CpuSinceLastReply();
  out->error = "the worker sent " + what.substr(0, what.find('\n'));
  out->detail = "the worker process (pid " + std::to_string(process_->pid()) +
                ") was killed after a protocol error; its reply was: " + Quote(what);
}

ExitInfo HostWorker::ReapEnding() {
  process_->WaitExit(steady_clock::now() + kExitGrace);
  return process_->KillAndReap();
}

std::string HostWorker::DeathCause(const ExitInfo& info) const {
  std::string text = info.ToString();
  if (info.exited || info.signal != SIGKILL || kill_requested_) return text;
  const int64_t rss_mib = (process_->max_rss_kib() + 1023) / 1024;
  if (OomKillCount() > oom_kills_before_) {
    return text + ", likely by the kernel's out-of-memory killer (its oom_kill counter rose; " +
           "the worker's peak RSS was " + std::to_string(rss_mib) + " MiB)";
  }
  return text + " (the worker's peak RSS was " + std::to_string(rss_mib) + " MiB)";
}

std::string HostWorker::DeathDetail(const ExitInfo& info) const {
  std::string detail = DeathCause(info);
  std::string tail = ReadTail(stderr_path_, stderr_start_, kStderrTailBytes);
  if (!tail.empty()) detail += "\nlast lines of " + stderr_path_ + ":\n" + tail;
  return detail;
}

void HostWorker::Shutdown(std::chrono::seconds grace) {
  if (process_ == nullptr || process_->reaped()) return;
  auto deadline = steady_clock::now() + grace;
  if (!process_->exited() && process_->Send("{\"op\":\"shutdown\"}\n", deadline).ok()) {
    std::string line;
    while (process_->ReadLine(deadline, &line) == WorkerProcess::ReadResult::kLine) {
      if (line.find("\"bye\"") != std::string::npos) break;
    }
    process_->WaitExit(deadline);
  }
  process_->KillAndReap();
}

void HostWorker::Kill() {
  std::lock_guard<std::mutex> lock(mu_);
  kill_requested_ = true;
  if (process_ != nullptr) process_->Kill();
}

}  // namespace

std::chrono::seconds InitProgressInterval(std::chrono::seconds init_timeout) {
  return std::clamp(init_timeout / 3, std::chrono::seconds(1), std::chrono::seconds(30));
}

std::unique_ptr<Worker> MakeHostWorker(WorkerConfig config, HostProgram program) {
  return std::make_unique<HostWorker>(std::move(config), std::move(program));
}

}  // namespace parallelrun::rt
