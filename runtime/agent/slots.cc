// The worker slot threads of the agent (see agent_impl.h): each starts its worker, takes leases
// from the local queue, runs attempts, keeps their results for the communication loop, and
// replaces a worker that died.
#include <algorithm>
#include <cstdio>
#include <utility>

#include "runtime/agent/agent_impl.h"
#include "runtime/base/files.h"
#include "runtime/base/log.h"
#include "runtime/output/part_file.h"

namespace parallelrun::rt {

using protocol::AttemptResult;
using protocol::Lease;
using protocol::LeaseRef;
using std::chrono::seconds;

namespace {

// The worker answered the attempt (or was not asked: its input changed), so it was alive then.
// Its liveness is not checked again after such an attempt (a system call per attempt): a death
// after its answer is found before its next attempt, as one while it waits for work.
bool Answered(AttemptStatus status) {
  return status == AttemptStatus::kRunDone || status == AttemptStatus::kRunException ||
         status == AttemptStatus::kRunWrongType;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Slots

int Agent::Impl::LiveLocked() const {
  int n = 0;
  for (const auto& s : slots_) n += s.worker != nullptr && s.ready;
  return n;
}

int Agent::Impl::RunningLocked() const {
  int n = 0;
  for (const auto& s : slots_) n += s.running.has_value();
  return n;
}

int Agent::Impl::WantLocked() const {
  if (ending_ != Ending::kNone) return 0;
  return std::max(
      0, PerWorkerLocked() * LiveLocked() - static_cast<int>(queue_.size()) - RunningLocked());
}

int Agent::Impl::PerWorkerLocked() const {
  // Each live worker runs one lease and has one queued; more while attempts are short (a round
  // trip to the coordinator then takes a sizeable part of one: the next completions must still
  // find work queued, and a round trip per attempt or two is most of the agent's CPU). Long
  // attempts keep one, so that other nodes are not left without work.
  if (attempt_seconds_avg_ < 0 || attempt_seconds_avg_ >= kShortAttemptSeconds) return 2;
  const double ahead = kLeaseAheadSeconds / std::max(attempt_seconds_avg_, 1e-4);
  return std::clamp(static_cast<int>(ahead), 3, kMaxLeasesPerWorker);
}

std::vector<LeaseRef> Agent::Impl::HeldLocked() const {
  std::vector<LeaseRef> held;
  for (const auto& s : slots_) {
    if (s.running) held.push_back(*s.running);
  }
  for (const auto& q : queue_) held.push_back({q.lease.mini_batch_id, q.lease.attempt});
  return held;
}

// The coordinator renews only what a lease call lists, until its own clock + lease_seconds;
// `renewed` is when the call was built, before the coordinator read its clock, so a lease is
// valid at least until renewed + lease_seconds. Calls are made at the latest renew_interval_
// (lease_seconds / 3) after a lease's last renewal (NextRenewalLocked, a deadline of the
// communication loop), and every call renews whatever is at least half that old, so leases
// granted at different times are renewed together by few calls, and most calls (refills of the
// queue every few attempts) list none.
std::vector<LeaseRef> Agent::Impl::RenewalsDueLocked(SteadyTime now) const {
  const SteadyTime cutoff = now - renew_interval_ / 2;
  std::vector<LeaseRef> due;
  for (const auto& s : slots_) {
    if (s.running && s.renewed <= cutoff) due.push_back(*s.running);
  }
  for (const auto& q : queue_) {
    if (q.renewed <= cutoff) due.push_back({q.lease.mini_batch_id, q.lease.attempt});
  }
  return due;
}

std::optional<SteadyTime> Agent::Impl::NextRenewalLocked() const {
  std::optional<SteadyTime> oldest;
  auto consider = [&](SteadyTime t) {
    if (!oldest || t < *oldest) oldest = t;
  };
  for (const auto& s : slots_) {
    if (s.running) consider(s.renewed);
  }
  for (const auto& q : queue_) consider(q.renewed);
  if (!oldest) return std::nullopt;
  return *oldest + renew_interval_;
}

void Agent::Impl::MarkRenewedLocked(const std::vector<LeaseRef>& renewed, SteadyTime at,
                                    const std::vector<LeaseRef>& cancelled) {
  // Slot threads may have moved a listed lease from the queue to a slot during the call.
  for (const LeaseRef& ref : renewed) {
    const AttemptKey key = KeyOf(ref);
    if (std::any_of(cancelled.begin(), cancelled.end(),
                    [&](const LeaseRef& c) { return KeyOf(c) == key; })) {
      continue;
    }
    bool found = false;
    for (auto& s : slots_) {
      if (s.running && KeyOf(*s.running) == key) {
        s.renewed = std::max(s.renewed, at);
        found = true;
      }
    }
    for (auto& q : queue_) {
      if (!found && KeyOf(q.lease) == key) q.renewed = std::max(q.renewed, at);
    }
  }
}

void Agent::Impl::RenewAllNowLocked() {
  for (auto& s : slots_) s.renewed = SteadyTime::min();
  for (auto& q : queue_) q.renewed = SteadyTime::min();
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
        MutexLock lock(mu_);
        work_cv_.Wait(mu_, [&]() REQUIRES(mu_) {
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
        MutexLock lock(mu_);
        const SteadyTime renewed = slots_[index].renewed;
        slots_[index].running.reset();
        if (ending_ == Ending::kNone || ending_ == Ending::kDone) {
          queue_.push_front({std::move(*lease), renewed});
          work_cv_.NotifyOne();
        } else if (ending_ == Ending::kSignal) {
          ReleaseLocked(*lease);
          WakeLocked();
        }
      }
      RetireDeadWorker(index, std::move(worker), "died while waiting for work");
      continue;
    }
    RunOutcome outcome = RunAttempt(index, *worker, logs, *lease);
    if (!Answered(outcome.status) && !worker->alive()) {
      RetireDeadWorker(index, std::move(worker), outcome.detail);
    }
  }
  if (worker) EndWorker(index, std::move(worker));
  MutexLock lock(mu_);
  --slots_running_;
  WakeLocked();
}

WorkerConfig Agent::Impl::SlotConfig(int index) {
  WorkerConfig config = base_config_;
  {
    MutexLock lock(mu_);
    config.process = ProcessName(next_process_++);
    if (!slots_[index].gpu.empty()) {
      config.env.push_back("CUDA_VISIBLE_DEVICES=" + slots_[index].gpu);
    }
  }
  const std::string process = config.process;
  config.init_progress = [this, process](pid_t pid, double running_s) {
    // stderr: `parallelrun run` and `kubectl logs` show it while the user waits.
    std::string line =
        fmt::format("init() still running on node {} {} (pid {}) for {:.0f} s (initTimeout {} s)",
                    options_.node, process, pid, running_s, init_timeout_.count());
    log_->warn("{}", line);
    std::fprintf(stderr, "parallelrun agent: %s\n", line.c_str());
  };
  return config;
}

std::unique_ptr<Worker> Agent::Impl::StartWorker(int index, ProcessLogs* logs) {
  WorkerConfig config = SlotConfig(index);
  const std::string process = config.process;
  std::string gpu;
  {
    MutexLock lock(mu_);
    gpu = slots_[index].gpu;
  }
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
      MutexLock lock(mu_);
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
    init.error = "the worker could not be created";
  }
  const double init_s = Seconds(clock_.SteadyNow() - t0);

  bool aborted = false;
  bool gave_up_now = false;
  int failures = 0;
  bool ready = false;
  {
    // One critical section for the outcome and the failure count, so a slot waiting to start
    // never sees this start neither in flight nor counted.
    MutexLock lock(mu_);
    ready = RecordInitLocked(index, process, init, pid, &aborted, &gave_up_now, &failures);
  }
  if (ready) {
    log_->info("{}: started, pid {}, init() took {:.1f} s", process, pid, init_s);
    logs->node->info("node={} pid={} started, init() took {:.3f}s", options_.node, pid, init_s);
    return worker;
  }
  if (worker) worker->Kill();
  if (aborted) {
    log_->info("{} (pid {}): init() interrupted: the agent is ending", process, pid);
    return nullptr;
  }
  LogInitFailure(process, pid, init, init_s, logs, gave_up_now, failures);
  return nullptr;
}

bool Agent::Impl::RecordInitLocked(int index, const std::string& process, const InitOutcome& init,
                                   pid_t pid, bool* aborted, bool* gave_up_now, int* failures) {
  const bool ready = init.ready;
  const bool timeout = init.failure == AttemptStatus::kInitTimeout;
  const std::string kind =
      AttemptStatusName(timeout ? AttemptStatus::kInitTimeout : AttemptStatus::kInitFailed);
  --inits_in_flight_;
  Slot& slot = slots_[index];
  *aborted = slot.aborting || kill_all_;
  work_cv_.NotifyAll();
  WakeLocked();
  if (ready && !*aborted) {
    slot.ready = true;
    consecutive_init_failures_ = 0;
    events_.push_back({process, pid, "WORKER_STARTED", "", ""});
    return true;
  }
  slot.worker = nullptr;
  if (*aborted) return false;
  events_.push_back({process, pid, kind, init.error, init.detail});
  *failures = ++consecutive_init_failures_;
  // A hung init() is not tried again: three more would cost 3 x initTimeout for nothing.
  if (timeout) *failures = consecutive_init_failures_ = init_failure_limit_;
  if ((*failures >= init_failure_limit_ || init.permanent) && !gave_up_) {
    gave_up_ = *gave_up_now = true;
    events_.push_back(
        {"", 0, "NODE_GAVE_UP",
         init.permanent ? "init() cannot succeed on any worker: " + init.error
         : timeout
             ? init.error
             : std::to_string(*failures) +
                   " consecutive init() failures (3 x processCountPerNode); last: " + init.error,
         init.detail});
  }
  return false;
}

void Agent::Impl::LogInitFailure(const std::string& process, pid_t pid, const InitOutcome& init,
                                 double init_s, ProcessLogs* logs, bool gave_up_now, int failures) {
  const bool timeout = init.failure == AttemptStatus::kInitTimeout;
  const std::string kind =
      AttemptStatusName(timeout ? AttemptStatus::kInitTimeout : AttemptStatus::kInitFailed);
  if (timeout) {
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
  if (gave_up_now && timeout) {
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
}

std::optional<Lease> Agent::Impl::NextLease(int index) {
  MutexLock lock(mu_);
  Slot& slot = slots_[index];
  if (queue_.empty()) {
    WakeLocked();  // a starved worker: the loop asks for leases at once
    work_cv_.Wait(mu_, [&]() REQUIRES(mu_) { return SlotMustEndLocked() || !queue_.empty(); });
  }
  if (ending_ != Ending::kNone && ending_ != Ending::kDone) return std::nullopt;
  if (queue_.empty()) return std::nullopt;
  Lease lease = std::move(queue_.front().lease);
  slot.renewed = queue_.front().renewed;
  queue_.pop_front();
  WakeForQueueLocked();  // the queue may now be short of work
  slot.running = LeaseRef{lease.mini_batch_id, lease.attempt};
  slot.cancel_requested = false;
  return lease;
}

RunOutcome Agent::Impl::RunAttempt(int index, Worker& worker, ProcessLogs& logs,
                                   const Lease& lease) {
  const SystemTime start_wall = clock_.Now();
  const SteadyTime t0 = clock_.SteadyNow();
  RunOutcome out;
  if (auto changed = InputChanged(lease)) {
    out.status = AttemptStatus::kRunException;
    out.failed = lease.items;
    out.error = *changed;
  } else {
    out = worker.Run(lease, seconds(run_timeout_s_));
  }
  const double elapsed = Seconds(clock_.SteadyNow() - t0);
  bool cancelled = false;
  {
    MutexLock lock(mu_);
    cancelled = slots_[index].cancel_requested;
  }
  // A run() that finished before the kill landed keeps its result.
  AttemptStatus status =
      cancelled && out.status != AttemptStatus::kRunDone ? AttemptStatus::kCancelled : out.status;
  AttemptResult r = MakeResult(lease, worker, out, &status, start_wall, elapsed);
  LogAttempt(logs, r, status);

  const bool dead = !Answered(out.status) && !worker.alive();
  MutexLock lock(mu_);
  Slot& slot = slots_[index];
  slot.running.reset();
  slot.cancel_requested = false;
  if (dead) slot.ready = false;  // no longer counts toward the leases to ask for
  attempt_seconds_avg_ =
      attempt_seconds_avg_ < 0 ? elapsed : 0.8 * attempt_seconds_avg_ + 0.2 * elapsed;
  PendingResult pending{std::move(r), SteadyTime::min(), 0};
  if (status == AttemptStatus::kRunDone && !lease.part_file.empty()) {
    // Made durable by the communication loop before it is first sent (part_sync.cc).
    pending.part_file = lease.part_file;
    pending.durable = false;
  }
  unacked_[{lease.mini_batch_id, lease.attempt}] = std::move(pending);
  worker_freed_ = true;
  WakeForResultLocked();
  return out;
}

AttemptResult Agent::Impl::MakeResult(const Lease& lease, const Worker& worker,
                                      const RunOutcome& out, AttemptStatus* status,
                                      SystemTime start_wall, double elapsed) {
  AttemptResult r;
  r.mini_batch_id = lease.mini_batch_id;
  r.attempt = lease.attempt;
  r.process = worker.config().process;
  r.pid = worker.pid();
  r.total = lease.items > 0 ? lease.items : std::max<int64_t>(0, out.succeeded + out.failed);
  if (*status == AttemptStatus::kRunDone) {
    r.succeeded = std::clamp<int64_t>(out.succeeded, 0, r.total);
  }
  r.failed = r.total - r.succeeded;
  r.start_utc = Iso8601Utc(start_wall);
  r.elapsed_s = elapsed;
  r.cpu_s = out.cpu_s;
  r.run_s = out.run_s;
  r.error = out.error;
  r.detail = out.detail;
  if (*status == AttemptStatus::kRunDone && !lease.part_file.empty()) {
    // What the assembly will check the part against (runtime/output/part_file.h).
    auto part = FingerprintFile(lease.part_file);
    if (part.ok()) {
      r.part_bytes = part->bytes;
      r.part_crc32 = part->crc32;
    } else {
      *status = AttemptStatus::kRunException;
      r.succeeded = 0;
      r.failed = r.total;
      r.error =
          "the part file of this attempt cannot be read after run(): " + part.status().message();
    }
  }
  r.status = AttemptStatusName(*status);
  return r;
}

void Agent::Impl::LogAttempt(ProcessLogs& logs, const AttemptResult& r, AttemptStatus status) {
  logs.node->info(
      "node={} pid={} mini_batch={} attempt={} items={} succeeded={} failed={} start={} "
      "duration={:.3f}s cpu={:.3f}s run={:.3f}s status={}",
      options_.node, r.pid, r.mini_batch_id, r.attempt, r.total, r.succeeded, r.failed, r.start_utc,
      r.elapsed_s, r.cpu_s, r.run_s, r.status);
  if (status == AttemptStatus::kRunDone) return;
  ErrorRecord(
      logs, r.status,
      "mini_batch=" + std::to_string(r.mini_batch_id) + " attempt=" + std::to_string(r.attempt),
      r.error, r.detail);
  if (echo_) echo_->Failed(r.mini_batch_id, r.attempt, r.process, r.status, r.error, r.detail);
  if (status == AttemptStatus::kRunTimeout) {
    log_->warn(
        "{} (pid {}): run() exceeded runInvocationTimeout ({} s) on mini-batch {} attempt {}; the "
        "worker was killed",
        r.process, r.pid, run_timeout_s_, r.mini_batch_id, r.attempt);
  } else if (status == AttemptStatus::kWorkerDied) {
    log_->warn("{} (pid {}): died during mini-batch {} attempt {}: {}", r.process, r.pid,
               r.mini_batch_id, r.attempt, r.detail);
  } else if (status == AttemptStatus::kCancelled) {
    log_->info("{} (pid {}): mini-batch {} attempt {} cancelled", r.process, r.pid, r.mini_batch_id,
               r.attempt);
  }
}

void Agent::Impl::RetireDeadWorker(int index, std::unique_ptr<Worker> worker,
                                   const std::string& detail) {
  const pid_t pid = worker->pid();
  const std::string process = worker->config().process;
  bool replace = false;
  {
    MutexLock lock(mu_);
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
    MutexLock lock(mu_);
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
    MutexLock lock(mu_);
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

}  // namespace parallelrun::rt
