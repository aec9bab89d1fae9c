#include "runtime/agent/comm_state.h"

#include <algorithm>

namespace parallelrun::rt {

using std::chrono::milliseconds;
using std::chrono::seconds;

bool IsTransient(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
         s.code() == StatusCode::kInternal;
}

CommState::CommState(SteadyTime now, int unreachable_limit_s, int max_connect_s)
    : unreachable_limit_s_(unreachable_limit_s), max_connect_s_(max_connect_s), next_poll_(now) {}

CommDecision CommState::Decide(const CommSnapshot& s) {
  const SteadyTime now = s.now;
  const bool finishing = s.ending != Ending::kNone && s.slots_running == 0;
  if (finishing && s.unacked == 0 && !s.released) return {CommDecision::Kind::kFinish};
  if (s.ending == Ending::kSignal && now >= s.stop_deadline + kStopFlush) {
    return {CommDecision::Kind::kAbandon};
  }
  if (link_ == Link::kBackoff) {
    if (now < backoff_until_) {
      SteadyTime until = backoff_until_;
      if (s.ending == Ending::kSignal && !s.kill_all) until = std::min(until, s.stop_deadline);
      return {CommDecision::Kind::kWait, std::max(until, now + milliseconds(1))};
    }
    link_ = Link::kReregister;
  }
  if (link_ == Link::kReregister) return {CommDecision::Kind::kRegisterAgain};

  const bool report = s.results_due || s.events || s.released;
  const bool lease_allowed = s.want > 0 && (now >= lease_not_before_ || s.worker_freed);
  const bool renew_due = s.renew_due && now >= *s.renew_due;
  const bool poll_due = s.ending == Ending::kNone && now >= next_poll_;
  // Short of work: nothing queued, or fewer queued leases than workers (the next completions
  // would find the queue empty before a round trip ends), or than half the queue kept for short
  // attempts.
  const bool short_of_work =
      lease_allowed && (s.queued == 0 || s.queued < std::max(s.live, s.refill_below));
  if ((report || lease_allowed) && !pending_since_) pending_since_ = now;
  const bool go = renew_due || poll_due || short_of_work || s.ending != Ending::kNone ||
                  (report && draining_) ||
                  (pending_since_ && now >= *pending_since_ + kBatchWindow);
  if (!go || (!report && !lease_allowed && !renew_due && !poll_due)) return Wait(s);
  pending_since_.reset();
  CommDecision d{CommDecision::Kind::kTalk};
  d.report = report;
  d.ask = lease_allowed || renew_due || poll_due;
  return d;
}

CommDecision CommState::Wait(const CommSnapshot& s) const {
  const SteadyTime now = s.now;
  SteadyTime t = now + kMaxWait;
  // Only deadlines still ahead: one already passed either made Decide talk or does not matter
  // now (waiting for it would spin).
  auto consider = [&](SteadyTime at) {
    if (at > now) t = std::min(t, at);
  };
  if (s.renew_due) consider(*s.renew_due);
  if (s.want > 0 && !s.worker_freed) consider(lease_not_before_);
  if (s.ending == Ending::kNone) consider(next_poll_);
  if (s.next_result_send) consider(*s.next_result_send);
  if (pending_since_) consider(*pending_since_ + kBatchWindow);
  if (s.ending == Ending::kSignal) {
    consider(s.kill_all ? s.stop_deadline + kStopFlush : s.stop_deadline);
  }
  CommDecision d{CommDecision::Kind::kWait, t};
  if (s.ending == Ending::kNone) {
    // Decide talks at once when the queue falls below this (short_of_work), once a lease may be
    // asked; otherwise an ended attempt wakes the loop.
    d.wake_queue_below = std::max({s.live, s.refill_below, 1});
    // An ended attempt changes the outcome only when it starts the batch window (nothing was
    // pending), when the coordinator has no more work (results are sent at once then), or when
    // it is what allows a lease call before lease_not_before_ (worker_freed).
    const bool lease_waits_for_a_freed_worker = !s.worker_freed && now < lease_not_before_;
    d.wake_on_result = !pending_since_ || draining_ || lease_waits_for_a_freed_worker;
  }
  return d;
}

void CommState::OnTalked(SteadyTime /*now*/, bool /*asked*/) {
  backoff_ = kMinBackoff;
  link_ = Link::kUp;
}

void CommState::OnLeaseAnswer(SteadyTime now, int asked, int got, int retry_after_ms) {
  if (retry_after_ms > 0) {
    lease_not_before_ = now + milliseconds(retry_after_ms);
  } else if (asked > 0 && got < asked) {
    lease_not_before_ = now + kNoWorkRetry;
  } else {
    lease_not_before_ = now;
  }
  if (asked > 0) draining_ = got < asked;
  next_poll_ = now + kPollInterval;
}

FailureVerdict CommState::OnFailure(const Status& failure, SteadyTime now, Ending ending,
                                    bool coordinator_ended, bool* first) {
  *first = false;
  // A coordinator that has ended answers no more (connection refused) or, while it closes,
  // 404: that is the end of the job, not an error, once it is known to have ended.
  const bool gone = IsTransient(failure) || failure.code() == StatusCode::kNotFound;
  if (gone && coordinator_ended) return FailureVerdict::kJobOver;
  if (!gone) return FailureVerdict::kRejected;
  // The job is over and these are cancelled attempts: not worth waiting for.
  if (ending == Ending::kCoordinatorStop) return FailureVerdict::kAbandonAfterStop;
  if (link_ == Link::kUp) {
    *first = true;
    unreachable_since_ = now;
  }
  link_ = Link::kBackoff;
  // After `done` the coordinator may well have ended: no long wait for it then. After Stop()
  // the flush deadline bounds the wait instead (exit 130, resumable).
  limit_applied_ = ending == Ending::kDone ? std::min(unreachable_limit_s_, max_connect_s_)
                                           : unreachable_limit_s_;
  if (ending != Ending::kSignal && now - unreachable_since_ >= seconds(limit_applied_)) {
    return FailureVerdict::kUnreachableTooLong;
  }
  backoff_until_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  return FailureVerdict::kRetry;
}

void CommState::OnRegisteredAgain(SteadyTime now) {
  link_ = Link::kUp;
  backoff_ = kMinBackoff;
  // The agent makes every renewal due (Agent::Impl::RenewAllNowLocked) and every result.
  next_poll_ = now;
}

}  // namespace parallelrun::rt
