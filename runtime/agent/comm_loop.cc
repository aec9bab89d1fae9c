// The agent's communication loop (see agent_impl.h): the thread that called Run() talks to the
// coordinator for the node. What to do and when is decided by CommState (comm_state.h); this file
// takes the snapshots, makes the calls with the lock released and applies the answers.
#include <algorithm>
#include <set>
#include <utility>

#include "runtime/agent/agent_impl.h"

namespace parallelrun::rt {

using protocol::LeaseRef;
using protocol::LeaseRequest;
using protocol::LeaseResponse;
using protocol::ResultsRequest;
using protocol::ResultsResponse;
using std::chrono::milliseconds;

int Agent::Impl::CommLoop() {
  MutexLock lock(mu_);
  CommState state(clock_.SteadyNow(), unreachable_limit_s_, options_.max_connect_seconds);
  while (true) {
    const SteadyTime now = clock_.SteadyNow();
    comm_wake_ = false;
    ApplyStopRequestLocked(now);
    if (ending_ == Ending::kFatal || job_over_) break;
    const CommDecision d = state.Decide(SnapshotLocked(now));
    switch (d.kind) {
      case CommDecision::Kind::kFinish:
        FinishLocked();
        return ExitCodeLocked();
      case CommDecision::Kind::kAbandon:
        log_->error("stopping with {} result(s) not accepted by the coordinator", unacked_.size());
        return ExitCodeLocked();
      case CommDecision::Kind::kWait:
        // A duration, not a time point: clock_ need not be std::chrono::steady_clock.
        comm_wake_on_result_ = d.wake_on_result;
        comm_wake_queue_below_ = d.wake_queue_below;
        comm_cv_.WaitFor(mu_, d.until - now, [&]() REQUIRES(mu_) { return comm_wake_; });
        comm_wake_on_result_ = true;
        comm_wake_queue_below_ = std::numeric_limits<int>::max();
        continue;
      case CommDecision::Kind::kRegisterAgain: {
        bool end = false;
        RegisterAgainStepLocked(state, &end);
        if (end) return ExitCodeLocked();
        continue;
      }
      case CommDecision::Kind::kTalk:
        break;
    }
    Talk talk = BuildTalkLocked(d, now);
    Status failure = TalkLocked(talk, state);
    if (failure.ok()) continue;
    if (OnFailureLocked(failure, state)) break;
  }
  return ExitCodeLocked();
}

int Agent::Impl::ExitCodeLocked() const {
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

CommSnapshot Agent::Impl::SnapshotLocked(SteadyTime now) const {
  CommSnapshot s;
  s.now = now;
  s.ending = ending_;
  s.kill_all = kill_all_;
  s.stop_deadline = stop_deadline_;
  s.slots_running = slots_running_;
  s.live = LiveLocked();
  s.running = RunningLocked();
  s.queued = static_cast<int>(queue_.size());
  s.want = WantLocked();
  s.refill_below = LiveLocked() * (PerWorkerLocked() - 1) * 3 / 4;
  s.unacked = static_cast<int>(unacked_.size());
  for (const auto& [key, pending] : unacked_) {
    if (pending.next_send <= now) {
      s.results_due = true;
    } else if (!s.next_result_send || pending.next_send < *s.next_result_send) {
      s.next_result_send = pending.next_send;
    }
  }
  s.events = !events_.empty();
  s.released = !released_.empty();
  s.worker_freed = worker_freed_;
  s.renew_due = NextRenewalLocked();
  return s;
}

void Agent::Impl::FinishLocked() {
  if (events_.empty()) return;
  // Best effort: the coordinator may already be gone after `done`.
  ResultsRequest last;
  last.node = options_.node;
  last.events = std::move(events_);
  events_.clear();
  mu_.unlock();
  (void)client_->Report(last);
  mu_.lock();
}

void Agent::Impl::RegisterAgainStepLocked(CommState& state, bool* end) {
  Status st = RegisterAgainLocked();
  const SteadyTime now = clock_.SteadyNow();
  if (!st.ok()) {
    *end = OnFailureLocked(st, state);
    return;
  }
  log_->info(
      "coordinator reachable again after {:.1f} s: registered again with {} running and {} "
      "queued attempt(s); reporting {} result(s)",
      Seconds(now - state.unreachable_since()), RunningLocked(), queue_.size(), unacked_.size());
  state.OnRegisteredAgain(now);
  RenewAllNowLocked();  // the leases are this node's again: renewed by the next call
  for (auto& [key, pending] : unacked_) pending.next_send = now;
}

bool Agent::Impl::OnFailureLocked(const Status& failure, CommState& state) {
  bool first = false;
  const SteadyTime now = clock_.SteadyNow();
  switch (state.OnFailure(failure, now, ending_, CoordinatorEndedLocked(), &first)) {
    case FailureVerdict::kJobOver:
      JobOverLocked(failure);
      return true;
    case FailureVerdict::kRejected:
      FatalLocked("the coordinator rejected the agent: " + failure.ToString());
      return true;
    case FailureVerdict::kAbandonAfterStop:
      log_->warn("could not report {} result(s) after the coordinator's stop: {}", unacked_.size(),
                 failure.ToString());
      return true;
    case FailureVerdict::kUnreachableTooLong:
      FatalLocked("coordinator unreachable for " +
                  std::to_string(state.unreachable_limit_applied()) +
                  " s; giving up. Last error: " + failure.ToString());
      return true;
    case FailureVerdict::kRetry:
      break;
  }
  if (first) {
    log_->warn(
        "coordinator unreachable ({}); keeping {} running and {} queued attempt(s) and {} "
        "result(s), retrying for up to {} s",
        failure.ToString(), RunningLocked(), queue_.size(), unacked_.size(), unreachable_limit_s_);
  }
  return false;
}

Agent::Impl::Talk Agent::Impl::BuildTalkLocked(const CommDecision& d, SteadyTime now) {
  // What to say: every result due and every event; renewals and new leases.
  Talk talk;
  talk.do_report = d.report;
  talk.ask = d.ask;
  talk.report.node = options_.node;
  for (const auto& [key, pending] : unacked_) {
    if (pending.next_send > now) continue;
    talk.report.results.push_back(pending.result);
    talk.sent.push_back(key);
    if (!pending.durable) talk.to_sync.push_back(pending.part_file);
  }
  talk.report.events = events_;
  talk.report.released = released_;
  talk.events_sent = events_.size();
  talk.released_sent = released_.size();
  if (talk.ask) {
    talk.lease.node = options_.node;
    talk.lease.max = WantLocked();
    talk.lease.renew = RenewalsDueLocked(now);
    talk.built = now;
    // Fewer queued leases than live workers: a worker may be idle before a combined call (part
    // files synced, then the report journaled) could answer.
    talk.lease_first = static_cast<int>(queue_.size()) < LiveLocked();
    worker_freed_ = false;
  }
  return talk;
}

Status Agent::Impl::TalkLocked(Talk& talk, CommState& state) {
  // A lease call and a report go in one request (the report's `lease`), sent once the report's
  // part files are durable: the coordinator records the report, then answers the lease part.
  // When a worker could run out of work before that answer (fewer queued leases than live
  // workers), the lease goes first, alone: it touches no disk, so the queue is refilled before the
  // part files are synced and before the coordinator's journal sync (a report of many short
  // attempts syncs many files, and workers that waited for that went idle). A coordinator that
  // failed the lease would fail the report too; the next round retries both.
  const bool combine = talk.ask && talk.do_report && !talk.lease_first;
  if (talk.ask && !combine) {
    if (Status failure = LeaseCallLocked(talk, state); !failure.ok()) return failure;
  }
  if (talk.do_report) {
    // Durability before the coordinator counts a result: the part files of this report are
    // committed together first.
    if (!talk.to_sync.empty()) SyncPartsLocked(talk);
    if (combine) talk.report.lease = talk.lease;
    mu_.unlock();
    StatusOr<ResultsResponse> report_resp = client_->Report(talk.report);
    mu_.lock();
    const bool leased = combine && report_resp.ok() && report_resp->lease;
    if (leased) ApplyLeaseLocked(talk, *report_resp->lease, state);
    if (Status failure = ApplyReportLocked(talk, report_resp); !failure.ok()) return failure;
    // No lease answer (a coordinator that predates combined calls, or its lease part failed after
    // the report was recorded): ask alone.
    if (combine && !leased) {
      if (Status failure = LeaseCallLocked(talk, state); !failure.ok()) return failure;
    }
  }
  state.OnTalked(clock_.SteadyNow(), talk.ask);
  return Status::Ok();
}

Status Agent::Impl::LeaseCallLocked(const Talk& talk, CommState& state) {
  mu_.unlock();
  StatusOr<LeaseResponse> lease_resp = client_->Lease(talk.lease);
  mu_.lock();
  if (!lease_resp.ok()) return lease_resp.status();
  ApplyLeaseLocked(talk, *lease_resp, state);
  return Status::Ok();
}

void Agent::Impl::ApplyLeaseLocked(const Talk& talk, const LeaseResponse& resp, CommState& state) {
  log_->debug("lease: asked {}, got {}, renewed {}, cancelled {}{}{}", talk.lease.max,
              resp.leases.size(), talk.lease.renew.size(), resp.cancel.size(),
              resp.done ? ", done" : "", resp.stop ? ", stop" : "");
  MarkRenewedLocked(talk.lease.renew, talk.built, resp.cancel);
  HandleLeaseLocked(resp, talk.built);
  state.OnLeaseAnswer(clock_.SteadyNow(), talk.lease.max, static_cast<int>(resp.leases.size()),
                      resp.retry_after_ms);
}

Status Agent::Impl::ApplyReportLocked(const Talk& talk, const StatusOr<ResultsResponse>& resp) {
  if (!resp.ok() && resp.status().code() == StatusCode::kAborted) {
    // 409: every result refused (this node does not hold those leases); the events and
    // releases of the request were taken.
    log_->warn("the coordinator refused {} result(s): {}; dropped", talk.sent.size(),
               resp.status().message());
    for (const AttemptKey& key : talk.sent) unacked_.erase(key);
    released_.erase(released_.begin(), released_.begin() + talk.released_sent);
    events_.erase(events_.begin(), events_.begin() + std::min(talk.events_sent, events_.size()));
    return Status::Ok();
  }
  if (!resp.ok()) return resp.status();
  if (talk.released_sent > 0) {
    log_->info("gave {} unrun lease(s) back to the coordinator", talk.released_sent);
  }
  released_.erase(released_.begin(), released_.begin() + talk.released_sent);
  HandleReportLocked(*resp, talk.sent, talk.events_sent, clock_.SteadyNow());
  return Status::Ok();
}

void Agent::Impl::HandleReportLocked(const ResultsResponse& resp,
                                     const std::vector<AttemptKey>& sent, size_t events_sent,
                                     SteadyTime now) {
  std::set<AttemptKey> accepted;
  for (const auto& ref : resp.accepted) accepted.insert(KeyOf(ref));
  for (const auto& ref : resp.refused) {
    // Fencing: the lease of that attempt is not this node's (it expired, or the attempt was
    // cancelled); the coordinator never counts it, so there is nothing to resend.
    log_->warn("the coordinator refused the result of mini-batch {} attempt {}; dropped",
               ref.mini_batch_id, ref.attempt);
    accepted.insert(KeyOf(ref));
  }
  for (const AttemptKey& key : accepted) unacked_.erase(key);
  for (const AttemptKey& key : sent) {
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
  // The answer to the report that ended the job says `done` at once.
  if (resp.done) CoordinatorDoneLocked();
  // After `done` the job has ended normally; the coordinator answers later reports (the events of
  // workers shutting down) with stop, which must not cut their shutdown() short.
  if (resp.stop && ending_ != Ending::kDone) CoordinatorStopLocked();
}

void Agent::Impl::HandleLeaseLocked(const LeaseResponse& resp, SteadyTime granted_at) {
  for (const auto& ref : resp.cancel) CancelLocked(ref);
  if (resp.stop) {
    CoordinatorStopLocked();
  } else {
    if (ending_ == Ending::kNone) {
      for (const auto& lease : resp.leases) queue_.push_back({lease, granted_at});
      if (!resp.leases.empty()) work_cv_.NotifyAll();
    } else if (!resp.leases.empty() && ending_ == Ending::kSignal) {
      log_->info("giving back {} lease(s) that arrived after the stop request", resp.leases.size());
      for (const auto& lease : resp.leases) ReleaseLocked(lease);
    } else if (!resp.leases.empty()) {
      log_->warn("dropping {} lease(s) that arrived while ending; they expire on the coordinator",
                 resp.leases.size());
    }
    if (resp.done) CoordinatorDoneLocked();
  }
}

void Agent::Impl::CoordinatorDoneLocked() {
  if (ending_ != Ending::kNone) return;
  ending_ = Ending::kDone;
  log_->info(
      "coordinator says done: finishing {} running and {} queued attempt(s), then shutting "
      "workers down",
      RunningLocked(), queue_.size());
  if (queue_.empty()) AbortInitializingLocked();
  work_cv_.NotifyAll();
}

void Agent::Impl::ApplyStopRequestLocked(SteadyTime now) {
  if (stop_requested_ && ending_ != Ending::kSignal && ending_ != Ending::kFatal) {
    ending_ = Ending::kSignal;
    stop_deadline_ = now + kStopGrace;
    const size_t given_back = queue_.size();
    for (const auto& q : queue_) ReleaseLocked(q.lease);
    queue_.clear();
    log_->warn(
        "stop requested: no new leases, {} queued lease(s) given back to the coordinator, {} "
        "running attempt(s) get {} s to finish",
        given_back, RunningLocked(), kStopGrace.count());
    AbortInitializingLocked();
    work_cv_.NotifyAll();
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
  const AttemptKey key = KeyOf(ref);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (KeyOf(it->lease) == key) {
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
  work_cv_.NotifyAll();
}

void Agent::Impl::FatalLocked(const std::string& why) {
  log_->error("{}; exiting", why);
  // An interrupted agent still exits 130: its work is resumable whatever the coordinator said.
  if (ending_ != Ending::kSignal) ending_ = Ending::kFatal;
  queue_.clear();
  KillAllLocked();
  work_cv_.NotifyAll();
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

}  // namespace parallelrun::rt
