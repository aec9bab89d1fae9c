#include "runtime/agent/agent.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>

#include "runtime/agent/agent_impl.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/worker/worker_process.h"

namespace parallelrun::rt {

using protocol::RegisterResponse;
using std::chrono::milliseconds;
using std::chrono::seconds;

Agent::Impl::Impl(AgentOptions options, std::unique_ptr<protocol::CoordinatorClient> client,
                  WorkerFactory factory, const Clock& clock)
    : options_(std::move(options)),
      client_(std::move(client)),
      factory_(std::move(factory)),
      clock_(clock),
      log_(MakeStderrLogger("agent")) {}

void Agent::Impl::Stop() {
  MutexLock lock(mu_);
  stop_requested_ = true;
  // At once, not at the loop's next turn: a worker that frees up now must not take a lease.
  ApplyStopRequestLocked(clock_.SteadyNow());
  WakeLocked();
}

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
      MutexLock lock(mu_);
      if (stop_requested_) return 130;
    }
    auto resp = client_->Register(req);
    if (resp.ok() && resp->ended) {
      // Nothing is configured, so nothing is written in the output folder.
      log_->info(
          "node {}: the coordinator runs no job (it finished before or was refused); "
          "nothing to do",
          options_.node);
      return 0;
    }
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
    MutexLock lock(mu_);
    comm_cv_.WaitFor(mu_, backoff, [&]() REQUIRES(mu_) { return stop_requested_; });
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

  ConfigureWorkers(resp, settings, log_dir);
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
  MutexLock lock(mu_);
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

void Agent::Impl::ConfigureWorkers(const RegisterResponse& resp, const JobSettings& settings,
                                   const std::string& log_dir) {
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
  // ReadSettings checked that spec.spec is an object.
  const nlohmann::json column_types = ColumnTypes(resp.spec["spec"]);
  std::erase_if(base_config_.env,
                [](const std::string& e) { return e.rfind("PARALLELRUN_COLUMN_TYPES=", 0) == 0; });
  if (!column_types.empty()) {
    base_config_.env.push_back("PARALLELRUN_COLUMN_TYPES=" + column_types.dump());
  }
  // The agent makes part files durable itself, several per report (part_sync.cc): the host
  // only writes them, so a worker does not wait for the disk between two mini-batches.
  base_config_.agent_syncs_parts = true;
}

Status Agent::Impl::RegisterAgainLocked() {
  protocol::RegisterRequest req;
  req.node = options_.node;
  req.pid = ::getpid();
  // Finished attempts whose results wait to be accepted are still this node's: a restarted
  // coordinator must not hand them to another node before those results arrive.
  req.held = HeldLocked();
  for (const auto& [key, pending] : unacked_) req.held.push_back({key.first, key.second});
  mu_.unlock();
  auto resp = client_->Register(req);
  mu_.lock();
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
    MutexLock lock(mu_);
    slots_running_ = process_count_;
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
  work_cv_.NotifyAll();
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
