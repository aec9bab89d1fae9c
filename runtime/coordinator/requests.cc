// The coordinator's side of the agents' requests (protocol::CoordinatorService): register,
// lease, results, progress; and the leases lost (expired, or dropped by a registration), with the
// writing of every decision through AttemptLog. The HTTP adapter is
// runtime/protocol/coordinator_service.h.
#include <algorithm>

#include "runtime/base/files.h"
#include "runtime/coordinator/coordinator_impl.h"
#include "runtime/coordinator/progress_text.h"

namespace parallelrun::rt {
namespace {

constexpr int kMaxLeasesPerRequest = 1000;
constexpr int kRetryAfterMs = 200;
constexpr int64_t kMaxPlanSpanBytes = int64_t{1} << 20;

// One past the last byte of a grant's plan record (its newline follows).
int64_t RecordEnd(const LeaseGrant& g) { return g.plan_offset + g.plan_length; }

// The statuses of `req`'s results, or InvalidArgument naming the first bad field.
StatusOr<std::vector<AttemptStatus>> CheckResults(const protocol::ResultsRequest& req) {
  if (req.node.empty()) return InvalidArgumentError("node: required");
  std::vector<AttemptStatus> statuses;
  statuses.reserve(req.results.size());
  for (size_t i = 0; i < req.results.size(); ++i) {
    const auto& r = req.results[i];
    auto st = ParseAttemptStatus(r.status);
    if (!st) {
      return InvalidArgumentError("results[" + std::to_string(i) + "].status: got \"" + r.status +
                                  "\", expected one of " + AttemptStatusNames());
    }
    if (r.attempt < 1) {
      return InvalidArgumentError("results[" + std::to_string(i) + "].attempt: got " +
                                  std::to_string(r.attempt) + ", expected an integer >= 1");
    }
    statuses.push_back(*st);
  }
  return statuses;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Register

StatusOr<protocol::RegisterResponse> Coordinator::Impl::Register(
    const protocol::RegisterRequest& req) {
  if (req.node.empty()) return InvalidArgumentError("node: required");
  if (mode_ != Mode::kRun) {
    // A finished or refused job: the agent has nothing to do here (and must not write its logs
    // into an output folder that another job owns).
    protocol::RegisterResponse ended = register_reply_;
    ended.ended = true;
    return ended;
  }
  MutexLock lock(mu_);
  const SteadyTime now = clock_->SteadyNow();
  const NodeTable::Registration reg = nodes_.Register(req.node, req.pid, now);
  if (!reg.known) {
    SayLocked("Node " + req.node + " joined (agent pid " + std::to_string(req.pid) + ")");
  } else if (reg.restarted) {
    log_->info("node {} registered again (agent pid {})", req.node, req.pid);
  }
  // Once the job ended the state is frozen (Finalize reads it without the lock).
  if (!ending_ && !interrupted_) {
    ReclaimLocked(req.node, reg.index, req.held, now);
    if (reg.known) {
      // What the node had on lease and its agent no longer has (a restarted agent has nothing;
      // one that lost a lease reply never got it) goes back now, not after the lease.
      std::vector<std::pair<int64_t, int>> keep;
      for (const auto& ref : req.held) keep.emplace_back(ref.mini_batch_id, ref.attempt);
      RecordExpiredLocked(state_.DropNodeAttempts(reg.index, keep),
                          "the agent on " + req.node + " registered again (pid " +
                              std::to_string(req.pid) + ") without it");
      CheckOutcomeLocked();
    }
  }
  return register_reply_;
}

// A node registers: what it still runs from before a restart is its again; what it no longer
// has (a restarted agent) goes back to the queue at once, without counting a try.
void Coordinator::Impl::ReclaimLocked(const std::string& node, uint32_t index,
                                      const std::vector<protocol::LeaseRef>& held, SteadyTime now) {
  if (!nodes_.holding()) return;
  NodeTable::Reclaim r =
      nodes_.ReclaimFor(state_, node, index, held, now + std::chrono::seconds(lease_seconds_));
  if (r.kept == 0 && r.released.empty()) return;
  log_->info(
      "node {} registered again: it still holds {} of the mini-batches it had before the restart; "
      "{} went back to the queue without counting a try",
      node, r.kept, r.released.size());
  AttemptLog::Batch batch;
  for (const auto& ref : r.released) {
    batch.Add(JournalReleasedLine(ref.mini_batch_id, ref.attempt, node));
  }
  (void)WriteLocked(batch);
}

// ---------------------------------------------------------------------------------------------
// Lease

StatusOr<protocol::LeaseResponse> Coordinator::Impl::Lease(const protocol::LeaseRequest& req) {
  if (req.node.empty()) return InvalidArgumentError("node: required");
  if (req.max < 0) {
    return InvalidArgumentError("max: got " + std::to_string(req.max) +
                                ", expected an integer >= 0");
  }
  protocol::LeaseResponse resp;
  std::vector<LeaseGrant> grants;
  if (mode_ != Mode::kRun) {
    // A finished job has nothing left to run; an output owned by another job must not be touched.
    resp.done = mode_ == Mode::kFinished;
    resp.stop = !resp.done;
    resp.cancel = req.renew;
    return resp;
  }
  {
    MutexLock lock(mu_);
    const SteadyTime now = clock_->SteadyNow();
    const uint32_t node = nodes_.Touch(req.node, now);
    if (ending_ || interrupted_) {
      // Nothing more will be handed out. Early ends cancel running work; after a normal end no
      // live attempt is left, so whatever the agent still renews is stale.
      resp.stop = interrupted_ || ending_->early;
      resp.done = !resp.stop;
      resp.cancel = req.renew;
      nodes_.MarkToldEnd(node);
      cv_.NotifyAll();
      return resp;
    }
    const SteadyTime expiry = now + std::chrono::seconds(lease_seconds_);
    RenewLocked(req, node, expiry, resp);
    grants = GrantLocked(req, node, now, expiry);
    if (grants.empty() && req.max > 0) resp.retry_after_ms = kRetryAfterMs;
  }
  // Plan records are read outside the lock: the file is durable and only appended to.
  resp.leases.reserve(grants.size());
  for (size_t i = 0; i < grants.size();) {
    // Records that lie back to back (new mini-batches, handed out in plan order) are read with
    // one pread, up to kMaxPlanSpanBytes.
    const int64_t begin = grants[i].plan_offset;
    size_t j = i + 1;
    while (j < grants.size() && grants[j].plan_offset == RecordEnd(grants[j - 1]) + 1 &&
           RecordEnd(grants[j]) - begin <= kMaxPlanSpanBytes) {
      ++j;
    }
    auto span =
        plan_reader_->ReadSpan(begin, static_cast<size_t>(RecordEnd(grants[j - 1]) - begin));
    for (; i < j; ++i) {
      const LeaseGrant& g = grants[i];
      auto lease =
          span.ok() ? MakeLease(g, std::string_view(*span).substr(
                                       static_cast<size_t>(g.plan_offset - begin), g.plan_length))
                    : StatusOr<protocol::Lease>(span.status());
      if (!lease.ok()) {
        // The attempt stays leased and expires; that is a failed try, not a lost mini-batch.
        log_->error("cannot hand out mini-batch {}: {}", g.id, lease.status().message());
        continue;
      }
      resp.leases.push_back(std::move(*lease));
    }
  }
  return resp;
}

void Coordinator::Impl::RenewLocked(const protocol::LeaseRequest& req, uint32_t node,
                                    SteadyTime expiry, protocol::LeaseResponse& resp) {
  for (const auto& ref : req.renew) {
    if (!nodes_.Fence(state_, ref.mini_batch_id, ref.attempt, node, req.node).empty() ||
        !state_.Renew(ref.mini_batch_id, ref.attempt, node, expiry)) {
      resp.cancel.push_back(ref);
    } else {
      nodes_.Unhold(ref.mini_batch_id, ref.attempt);  // reclaimed by its renewal
    }
  }
}

std::vector<LeaseGrant> Coordinator::Impl::GrantLocked(const protocol::LeaseRequest& req,
                                                       uint32_t node, SteadyTime now,
                                                       SteadyTime expiry) {
  if (req.max <= 0) return {};
  std::vector<LeaseGrant> grants =
      state_.Lease(node, std::min(req.max, kMaxLeasesPerRequest), expiry);
  if (grants.empty()) return grants;
  if (!first_lease_) {
    first_lease_ = now;
    last_progress_ = now;
    SayLocked("First mini batch handed out (to " + req.node + ")");
  }
  AttemptLog::Batch batch;
  for (const auto& g : grants) {
    batch.Add(JournalLeaseLine(g.id, g.attempt, req.node));
    log_->debug("lease mini-batch {} attempt {} to {}", g.id, g.attempt, req.node);
  }
  // Not synced on its own (coordinator.h, Caveats); a failed write is logged and the attempts
  // stay leased (their results are journaled as usual).
  (void)WriteLocked(batch);
  return grants;
}

StatusOr<protocol::Lease> Coordinator::Impl::MakeLease(const LeaseGrant& grant,
                                                       std::string_view record) const {
  PR_ASSIGN_OR_RETURN(MiniBatch mb, plan_reader_->Decode(record, grant.plan_offset));
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

// ---------------------------------------------------------------------------------------------
// Results

StatusOr<protocol::ResultsResponse> Coordinator::Impl::Report(const protocol::ResultsRequest& req) {
  PR_ASSIGN_OR_RETURN(std::vector<AttemptStatus> statuses, CheckResults(req));
  protocol::ResultsResponse resp;
  int64_t sync_to = -1;
  {
    MutexLock lock(mu_);
    if (mode_ != Mode::kRun || ending_ || interrupted_) return ResultsAfterEndLocked(req);
    PR_RETURN_IF_ERROR(CheckPlannedLocked(req));
    const SteadyTime now = clock_->SteadyNow();
    const SystemTime wall = clock_->Now();
    const uint32_t node = nodes_.Touch(req.node, now);

    AttemptLog::Batch batch;
    // {what, error} when a worker could not write its results for lack of space.
    std::vector<std::string> disk_full;
    ReleaseLocked(req, node, batch);
    for (size_t i = 0; i < req.results.size(); ++i) {
      ApplyResultLocked(req.results[i], statuses[i], req.node, node, wall, batch, resp, disk_full);
    }
    ApplyEventsLocked(req, wall, batch);
    auto off = WriteLocked(batch);
    if (!off.ok()) return InternalError("cannot write the journal: " + off.status().message());
    sync_to = *off;
    if (!disk_full.empty()) EndDiskFullLocked(disk_full[0], disk_full[1]);
    CheckInitFailedLocked();
    CheckOutcomeLocked();
    // This report ended the job: its answer says so (an agent hears `done` now, not at its next
    // lease call, and shuts its workers down while the output is assembled).
    resp.stop = ending_ && ending_->early;
    resp.done = ending_ && !ending_->early;
  }
  // Outside the lock, so that concurrent requests share one fdatasync.
  if (sync_to >= 0) {
    if (Status st = journal_->SyncTo(sync_to); !st.ok()) {
      log_->error("journal: {}", st.message());
      MutexLock lock(mu_);
      JournalFailedLocked(st);
      return InternalError("cannot sync the journal: " + st.message());
    }
  }
  if (resp.stop || resp.done) {
    MutexLock lock(mu_);
    nodes_.MarkToldEnd(nodes_.Touch(req.node, clock_->SteadyNow()));
    cv_.NotifyAll();
  }
  return resp;
}

protocol::ResultsResponse Coordinator::Impl::ResultsAfterEndLocked(
    const protocol::ResultsRequest& req) {
  // The job is over: these results can no longer change it.
  if (mode_ == Mode::kRun) {
    if (!req.results.empty()) {
      log_->info("ignored {} results from {} after the job ended", req.results.size(), req.node);
    }
    nodes_.MarkToldEnd(nodes_.Touch(req.node, clock_->SteadyNow()));
    cv_.NotifyAll();
  }
  protocol::ResultsResponse resp;
  resp.stop = true;
  // As a lease answer says it: the job ended normally (or had finished before this run). Agents
  // that know `done` take it and ignore `stop`, which is there for older agents.
  resp.done = mode_ == Mode::kFinished ||
              (mode_ == Mode::kRun && !interrupted_ && ending_ && !ending_->early);
  return resp;
}

Status Coordinator::Impl::CheckPlannedLocked(const protocol::ResultsRequest& req) const {
  const int64_t total = state_.counts().total;
  auto planned = [&](const char* field, size_t i, int64_t id) -> Status {
    if (id >= 0 && id < total) return Status::Ok();
    return InvalidArgumentError(std::string(field) + "[" + std::to_string(i) +
                                "].mini_batch_id: got " + std::to_string(id) +
                                ", expected a planned mini-batch (0.." + std::to_string(total - 1) +
                                ")");
  };
  for (size_t i = 0; i < req.results.size(); ++i) {
    PR_RETURN_IF_ERROR(planned("results", i, req.results[i].mini_batch_id));
  }
  for (size_t i = 0; i < req.released.size(); ++i) {
    PR_RETURN_IF_ERROR(planned("released", i, req.released[i].mini_batch_id));
  }
  return Status::Ok();
}

// Given back unrun (the agent is stopping): first in line again, no try counted, no report row
// (nothing ran).
void Coordinator::Impl::ReleaseLocked(const protocol::ResultsRequest& req, uint32_t node,
                                      AttemptLog::Batch& batch) {
  int released = 0;
  for (const auto& ref : req.released) {
    if (std::string why = nodes_.Fence(state_, ref.mini_batch_id, ref.attempt, node, req.node);
        !why.empty()) {
      log_->warn("refused the release of mini-batch {} attempt {} from {}: {}", ref.mini_batch_id,
                 ref.attempt, req.node, why);
      continue;
    }
    // A held attempt (kNoNode) given back by the node it was held for.
    const uint32_t holder = state_.Holder(ref.mini_batch_id, ref.attempt).value_or(node);
    if (!state_.GiveBack(ref.mini_batch_id, ref.attempt, holder)) continue;
    batch.Add(JournalReleasedLine(ref.mini_batch_id, ref.attempt, req.node));
    ++released;
  }
  if (released > 0) {
    log_->info("{} gave back {} lease(s) it had not run; they are queued again", req.node,
               released);
  }
}

void Coordinator::Impl::ApplyResultLocked(const protocol::AttemptResult& r, AttemptStatus status,
                                          const std::string& node_name, uint32_t node,
                                          SystemTime wall, AttemptLog::Batch& batch,
                                          protocol::ResultsResponse& resp,
                                          std::vector<std::string>& disk_full) {
  const protocol::LeaseRef ref{r.mini_batch_id, r.attempt};
  if (status == AttemptStatus::kRunDone &&
      state_.status(r.mini_batch_id) == MiniBatchStatus::kCompleted &&
      state_.accepted_attempt(r.mini_batch_id) == r.attempt) {
    // The accepted result sent again (its answer was lost): acknowledged, not counted again.
    resp.accepted.push_back(ref);
    return;
  }
  // Fencing: only the node holding the lease of this very attempt may report it.
  if (std::string why = nodes_.Fence(state_, r.mini_batch_id, r.attempt, node, node_name);
      !why.empty()) {
    log_->warn("refused the {} result of mini-batch {} attempt {} from {}: {}", r.status,
               r.mini_batch_id, r.attempt, node_name, why);
    resp.refused.push_back(ref);
    return;
  }
  nodes_.Unhold(r.mini_batch_id, r.attempt);  // reclaimed by its result
  Decision d = state_.Apply(r.mini_batch_id, r.attempt, status, r.succeeded);
  if (d.accepted && d.outcome == Outcome::kCompleted && r.part_bytes >= 0) {
    RecordPartLocked(r.mini_batch_id, r.part_bytes, r.part_crc32);
  }
  const ReportRow row = ReportRowOf(r, node_name, d.accepted);
  if (disk_full.empty() && !r.error.empty() && IsDiskFullError(r.error) &&
      r.error.find(output_dir_) != std::string::npos) {
    disk_full = {"mini-batch " + std::to_string(r.mini_batch_id) + "'s results (node " + node_name +
                     ", " + r.process + ")",
                 r.error};
  }
  if (d.outcome == Outcome::kCompleted || d.outcome == Outcome::kFailed) {
    last_progress_ = clock_->SteadyNow();
  }
  if (status != AttemptStatus::kRunDone && status != AttemptStatus::kCancelled) {
    if (!r.error.empty()) {
      last_run_error_ = "mini-batch " + std::to_string(r.mini_batch_id) + " attempt " +
                        std::to_string(r.attempt) + ": " + r.error;
    }
    errors_.Add(r.error, r.detail, r.mini_batch_id, r.total, Iso8601Utc(wall));
    ErrorSummaryEntry e{wall, node_name, r.process, r.mini_batch_id, r.attempt, r.status, r.error};
    batch.Add(JournalResultLine(r, node_name, d), &row, &e);
    const std::string failed =
        fmt::format("mini-batch {} attempt {} on {} {}: {}: {} -> {}", r.mini_batch_id, r.attempt,
                    node_name, r.process, r.status, r.error, OutcomeName(d.outcome));
    log_->warn("{}", failed);
    if (opt_.echo) opt_.echo(failed);  // the pod log: one line per failed attempt
  } else {
    batch.Add(JournalResultLine(r, node_name, d), &row);
    log_->debug("mini-batch {} attempt {} on {} {}: {} -> {}", r.mini_batch_id, r.attempt,
                node_name, r.process, r.status, OutcomeName(d.outcome));
  }
  resp.accepted.push_back(ref);
}

void Coordinator::Impl::ApplyEventsLocked(const protocol::ResultsRequest& req, SystemTime wall,
                                          AttemptLog::Batch& batch) {
  for (const auto& ev : req.events) {
    if (ev.kind == "WORKER_STARTED") {
      log_->info("{} {} started (pid {})", req.node, ev.process, ev.pid);
    } else if (ev.kind == "WORKER_EXITED") {
      log_->info("{} {} exited (pid {}): {} {}", req.node, ev.process, ev.pid, ev.error, ev.detail);
    } else if (ev.kind == "INIT_FAILED" || ev.kind == "INIT_TIMEOUT") {
      last_init_error_ = ev.error;
      if (!ev.detail.empty()) last_init_traceback_ = ev.detail;
      errors_.Add(ev.error, ev.detail, -1, 0, Iso8601Utc(wall));
      batch.AddError(ErrorSummaryEntry{wall, req.node, ev.process, -1, 0, ev.kind, ev.error});
      log_->warn("{} {} {}: {}", req.node, ev.process, ev.kind, ev.error);
    } else if (ev.kind == "NODE_GAVE_UP") {
      if (nodes_.MarkGaveUp(nodes_.Touch(req.node, clock_->SteadyNow()))) {
        SayLocked("Node " + req.node + " stopped starting workers after init() failures" +
                  (last_init_error_.empty() ? std::string() : ": " + last_init_error_));
      }
    } else {
      log_->warn("{}: unknown worker event \"{}\" ignored", req.node, ev.kind);
    }
  }
}

void Coordinator::Impl::CheckInitFailedLocked() {
  const int64_t gave_up = nodes_.GaveUpCount();
  if (gave_up < opt_.desired_nodes || gave_up == 0 || ending_) return;
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

// ---------------------------------------------------------------------------------------------
// Leases lost, and writing what was decided

void Coordinator::Impl::RecordExpiredLocked(const std::vector<ExpiredLease>& expired,
                                            const std::string& why) {
  if (expired.empty()) return;
  AttemptLog::Batch batch;
  SystemTime wall = clock_->Now();
  for (const auto& x : expired) {
    const std::string node = nodes_.NodeOf(x.attempt);
    if (x.outcome == Outcome::kGivenBack) {
      // Held since the restart and not reclaimed: its agent ended with the old coordinator.
      batch.Add(JournalReleasedLine(x.attempt.id, x.attempt.attempt, node));
      log_->info(
          "mini-batch {} attempt {}, running on {} before the restart, was not reclaimed within "
          "{} s; queued again without counting a try",
          x.attempt.id, x.attempt.attempt, node, lease_seconds_);
      nodes_.DropHold(x.attempt.id);
      continue;
    }
    ReportRow row;
    row.mini_batch_id = x.attempt.id;
    row.attempt = x.attempt.attempt;
    row.accepted = x.outcome == Outcome::kFailed;
    row.node = node;
    row.total = x.items;
    row.failed = x.outcome == Outcome::kFailed ? x.items : 0;
    row.status = AttemptStatusName(AttemptStatus::kLeaseExpired);
    row.error = !why.empty() ? why
                             : "no result or lease renewal from " + node + " within " +
                                   std::to_string(lease_seconds_) + " s";
    if (x.outcome == Outcome::kDisrupted) {
      row.error += "; not counted as a try (lost lease " + std::to_string(x.disruptions) + " of " +
                   std::to_string(kFreeDisruptions) + " that do not count)";
    }
    if (x.outcome != Outcome::kDisrupted) {
      errors_.Add(row.error, "", x.attempt.id, x.items, Iso8601Utc(wall));
    }
    ErrorSummaryEntry e{wall, node, "", x.attempt.id, x.attempt.attempt, row.status, row.error};
    batch.Add(JournalExpiredLine(x.attempt.id, x.attempt.attempt, node, x.outcome), &row, &e);
    const std::string lost = fmt::format(
        "lease of mini-batch {} attempt {} on {} {} -> {}", x.attempt.id, x.attempt.attempt, node,
        why.empty() ? "expired" : "lost: " + why, OutcomeName(x.outcome));
    log_->warn("{}", lost);
    if (opt_.echo) opt_.echo(lost);
    if (x.outcome == Outcome::kFailed) last_progress_ = clock_->SteadyNow();
  }
  auto off = WriteLocked(batch);
  if (off.ok() && *off >= 0) {
    if (Status st = journal_->SyncTo(*off); !st.ok()) {
      log_->error("journal: {}", st.message());
      JournalFailedLocked(st);
    }
  }
}

StatusOr<int64_t> Coordinator::Impl::WriteLocked(const AttemptLog::Batch& batch) {
  auto off = attempt_log_->Write(batch);
  if (!off.ok()) JournalFailedLocked(off.status());
  return off;
}

void Coordinator::Impl::JournalFailedLocked(const Status& st) {
  if (IsDiskFullError(st.message()))
    EndDiskFullLocked("the journal " + journal_path_, st.message());
}

// ---------------------------------------------------------------------------------------------
// Progress

protocol::Progress Coordinator::Impl::GetProgress() const {
  MutexLock lock(mu_);
  const SteadyTime now = clock_->SteadyNow();
  const auto period = std::chrono::seconds(lease_seconds_);
  protocol::Progress p;
  if (final_) {
    p = EndedProgress(*final_, mode_ != Mode::kRejected);
    PutErrors(*final_, &p);
    // Nodes are still known while the coordinator runs on after the end.
    if (mode_ == Mode::kRun) p.nodes.ready = nodes_.ReadyCount(now, period);
  } else {
    p = RunningProgress(state_.counts(), state_.plan_complete(), !nodes_.empty());
    p.miniBatches.running =
        state_.RunningOnWorkers(opt_.spec.process_count_per_node, opt_.desired_nodes);
    PutErrors(errors_, &p);
    p.outputFile = output_file_;
    p.startTime = Iso8601Utc(start_time_);
    p.nodes.ready = nodes_.ReadyCount(now, period);
    if (ending_) {
      p.reason = ending_->reason;
      p.message = ending_->message;
      if (!status_message_.empty()) p.message = status_message_ + ": " + p.message;
    } else {
      p.message = status_message_;
      auto eta = EtaSeconds(state_.counts(), state_.plan_complete(), first_lease_,
                            completed_at_start_, now);
      if (eta) {
        p.eta = FormatDuration(*eta);
        p.estimatedCompletionTime = Iso8601Utc(
            clock_->Now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                std::chrono::duration<double>(*eta)));
      }
    }
    if (finished_) p.exitCode = exit_code_;
  }
  p.logs = log_dir_;
  p.nodes.desired = opt_.desired_nodes;
  p.lastProgressLine = last_line_;
  return p;
}

}  // namespace parallelrun::rt
