// The communication loop's state machine, fed snapshots: no threads, no clock, no coordinator.
#include "runtime/agent/comm_state.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Kind = CommDecision::Kind;

constexpr milliseconds kRenew{10000};
constexpr int kUnreachableLimit = 60;
constexpr int kMaxConnect = 30;

class CommStateTest : public ::testing::Test {
 protected:
  SteadyTime t0 = SteadyTime() + seconds(1000);
  CommState state{t0, kUnreachableLimit, kMaxConnect};

  // Two live workers, both running, each with `queued` / 2 leases queued behind it.
  CommSnapshot Busy(SteadyTime now, int queued, int want) {
    CommSnapshot s;
    s.now = now;
    s.slots_running = 2;
    s.live = 2;
    s.running = 2;
    s.queued = queued;
    s.want = want;
    s.renew_due = t0 + kRenew;  // every held lease granted or renewed at t0
    return s;
  }
  // The first poll (due at start) answered with a full queue: the steady state.
  void Started() {
    CommSnapshot s = Busy(t0, 4, 0);
    ASSERT_EQ(state.Decide(s).kind, Kind::kTalk);
    state.OnLeaseAnswer(t0, 0, 0, 0);
    state.OnTalked(t0, true);
  }
};

TEST_F(CommStateTest, PollsAtOnceAtStart) {
  CommDecision d = state.Decide(Busy(t0, 0, 6));
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.ask);
  EXPECT_FALSE(d.report);
}

TEST_F(CommStateTest, AStarvingWorkerGetsLeasesAtOnce) {
  Started();
  CommSnapshot s = Busy(t0 + milliseconds(5), 0, 2);
  s.worker_freed = true;
  CommDecision d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.ask);
}

TEST_F(CommStateTest, FewerQueuedThanWorkersAsksAtOnce) {
  Started();
  CommSnapshot s = Busy(t0 + milliseconds(5), 1, 3);
  s.worker_freed = true;
  EXPECT_EQ(state.Decide(s).kind, Kind::kTalk);
}

TEST_F(CommStateTest, AResultWaitsForCompanyUpToTheBatchWindowWithoutSpinning) {
  Started();
  const SteadyTime t = t0 + milliseconds(5);
  CommSnapshot s = Busy(t, 3, 1);  // one attempt ended: 3 still queued for 2 workers
  s.results_due = true;
  s.unacked = 1;
  s.worker_freed = true;
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t + kBatchWindow);  // not now: the old loop spun here until the window ended
  // A second result 50 ms later does not restart the window.
  s.now = t + milliseconds(50);
  s.queued = 2;
  s.want = 2;
  s.unacked = 2;
  d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t + kBatchWindow);
  s.now = t + kBatchWindow;
  d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.report);
  EXPECT_TRUE(d.ask);
}

TEST_F(CommStateTest, NothingToSayWaitsForTheNextDeadlineInTheFuture) {
  Started();
  // The coordinator had nothing: lease_not_before is 250 ms ahead; renewals 10 s; poll 1 s.
  state.OnLeaseAnswer(t0, 2, 0, 0);
  CommSnapshot s = Busy(t0 + milliseconds(1), 0, 6);
  s.running = 0;
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + kNoWorkRetry);
  // Past deadlines never make a wait that ends at once.
  s.now = t0 + kNoWorkRetry;
  d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
}

TEST_F(CommStateTest, IdleAgentSleepsUntilThePoll) {
  Started();
  CommSnapshot s = Busy(t0 + milliseconds(10), 0, 0);
  s.running = 0;
  s.live = 2;
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + kPollInterval);
}

TEST_F(CommStateTest, ResultsGoAtOnceWhenTheCoordinatorHasNoMoreWork) {
  Started();
  state.OnLeaseAnswer(t0, 2, 1, 0);  // less than asked: the end of the job is near
  EXPECT_TRUE(state.draining());
  CommSnapshot s = Busy(t0 + milliseconds(5), 3, 0);
  s.results_due = true;
  s.unacked = 1;
  CommDecision d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.report);
  state.OnLeaseAnswer(t0, 2, 2, 0);
  EXPECT_FALSE(state.draining());
}

TEST_F(CommStateTest, AfterAnAnswerTheNextPollWaitsItsInterval) {
  Started();
  CommSnapshot s = Busy(t0 + kRenew - milliseconds(1), 4, 0);
  s.next_result_send = std::nullopt;
  // The poll (1 s) came first: answer it.
  ASSERT_EQ(state.Decide(s).kind, Kind::kTalk);
  state.OnLeaseAnswer(s.now, 0, 0, 0);
  state.OnTalked(s.now, true);
  s.renew_due = s.now + kRenew;  // the call renewed the leases (due at half the interval)
  s.now += milliseconds(500);
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, s.now - milliseconds(500) + kPollInterval);
}

// A held lease's renewal deadline makes a lease call, and only then; none without leases.
TEST_F(CommStateTest, ARenewalDueMakesALeaseCall) {
  Started();
  CommSnapshot s = Busy(t0 + milliseconds(800), 4, 0);
  s.renew_due = t0 + milliseconds(900);  // before the next poll (t0 + 1 s)
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + milliseconds(900));
  s.now = t0 + milliseconds(900);
  d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.ask);
  EXPECT_FALSE(d.report);
  state.OnLeaseAnswer(s.now, 0, 0, 0);
  state.OnTalked(s.now, true);
  // Renewed: the next call is the poll.
  s.renew_due = s.now + kRenew;
  s.now += milliseconds(10);
  d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + milliseconds(900) + kPollInterval);
  // Nothing held: no renewal deadline.
  s.renew_due = std::nullopt;
  s.running = 0;
  s.queued = 0;
  d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + milliseconds(900) + kPollInterval);
}

TEST_F(CommStateTest, EverythingSaidWhileEndingFinishes) {
  CommSnapshot s = Busy(t0, 0, 0);
  s.ending = Ending::kDone;
  s.slots_running = 0;
  s.running = 0;
  EXPECT_EQ(state.Decide(s).kind, Kind::kFinish);
  s.unacked = 1;
  s.results_due = true;
  CommDecision d = state.Decide(s);
  EXPECT_EQ(d.kind, Kind::kTalk);
  EXPECT_TRUE(d.report);
  EXPECT_FALSE(d.ask);
}

TEST_F(CommStateTest, AfterStopTheFlushDeadlineAbandons) {
  CommSnapshot s = Busy(t0, 0, 0);
  s.ending = Ending::kSignal;
  s.kill_all = true;
  s.stop_deadline = t0 - kStopGrace;
  s.unacked = 1;
  s.now = t0 + kStopFlush - kStopGrace;
  EXPECT_EQ(state.Decide(s).kind, Kind::kAbandon);
}

TEST_F(CommStateTest, TransientFailureBacksOffThenRegistersAgain) {
  bool first = false;
  Status down = UnavailableError("connection refused");
  EXPECT_EQ(state.OnFailure(down, t0, Ending::kNone, false, &first), FailureVerdict::kRetry);
  EXPECT_TRUE(first);
  EXPECT_EQ(state.link(), CommState::Link::kBackoff);
  CommDecision d = state.Decide(Busy(t0 + milliseconds(10), 4, 0));
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + kMinBackoff);
  EXPECT_EQ(state.Decide(Busy(t0 + kMinBackoff, 4, 0)).kind, Kind::kRegisterAgain);
  // Registering again fails too: not a new outage; the backoff doubles.
  EXPECT_EQ(state.OnFailure(down, t0 + kMinBackoff, Ending::kNone, false, &first),
            FailureVerdict::kRetry);
  EXPECT_FALSE(first);
  EXPECT_EQ(state.backoff(), 4 * kMinBackoff);
  state.OnRegisteredAgain(t0 + seconds(1));
  EXPECT_EQ(state.link(), CommState::Link::kUp);
  EXPECT_EQ(state.backoff(), kMinBackoff);
  // Renewals at once after registering again.
  CommDecision after = state.Decide(Busy(t0 + seconds(1), 4, 0));
  EXPECT_EQ(after.kind, Kind::kTalk);
  EXPECT_TRUE(after.ask);
}

TEST_F(CommStateTest, BackoffIsCappedAt2s) {
  bool first = false;
  SteadyTime t = t0;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(state.OnFailure(UnavailableError("down"), t, Ending::kNone, false, &first),
              FailureVerdict::kRetry);
    t += milliseconds(1);
  }
  EXPECT_EQ(state.backoff(), kMaxBackoff);
}

TEST_F(CommStateTest, UnreachableForTheLimitGivesUp) {
  bool first = false;
  Status down = UnavailableError("down");
  ASSERT_EQ(state.OnFailure(down, t0, Ending::kNone, false, &first), FailureVerdict::kRetry);
  EXPECT_EQ(state.OnFailure(down, t0 + seconds(kUnreachableLimit), Ending::kNone, false, &first),
            FailureVerdict::kUnreachableTooLong);
  EXPECT_EQ(state.unreachable_limit_applied(), kUnreachableLimit);
}

TEST_F(CommStateTest, AfterDoneTheShorterConnectLimitApplies) {
  bool first = false;
  Status down = UnavailableError("down");
  ASSERT_EQ(state.OnFailure(down, t0, Ending::kDone, false, &first), FailureVerdict::kRetry);
  EXPECT_EQ(state.OnFailure(down, t0 + seconds(kMaxConnect), Ending::kDone, false, &first),
            FailureVerdict::kUnreachableTooLong);
}

TEST_F(CommStateTest, AfterStopTheUnreachableLimitDoesNotApply) {
  bool first = false;
  Status down = UnavailableError("down");
  ASSERT_EQ(state.OnFailure(down, t0, Ending::kSignal, false, &first), FailureVerdict::kRetry);
  EXPECT_EQ(state.OnFailure(down, t0 + seconds(1000), Ending::kSignal, false, &first),
            FailureVerdict::kRetry);
}

TEST_F(CommStateTest, EndedCoordinatorIsTheEndOfTheJob) {
  bool first = false;
  EXPECT_EQ(state.OnFailure(UnavailableError("refused"), t0, Ending::kNone, true, &first),
            FailureVerdict::kJobOver);
  EXPECT_EQ(state.OnFailure(NotFoundError("404"), t0, Ending::kNone, true, &first),
            FailureVerdict::kJobOver);
}

TEST_F(CommStateTest, RejectionIsFatalAndStopAbandons) {
  bool first = false;
  EXPECT_EQ(state.OnFailure(UnauthenticatedError("401"), t0, Ending::kNone, false, &first),
            FailureVerdict::kRejected);
  EXPECT_EQ(state.OnFailure(InvalidArgumentError("400"), t0, Ending::kNone, true, &first),
            FailureVerdict::kRejected);
  EXPECT_EQ(state.OnFailure(UnavailableError("down"), t0, Ending::kCoordinatorStop, false, &first),
            FailureVerdict::kAbandonAfterStop);
}

TEST_F(CommStateTest, RetryAfterFromTheCoordinatorDelaysTheNextAsk) {
  Started();
  state.OnLeaseAnswer(t0, 2, 0, 700);
  CommSnapshot s = Busy(t0 + milliseconds(1), 4, 2);
  s.running = 2;
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + milliseconds(700));
}

TEST_F(CommStateTest, AWaitSaysWhatMayWakeItEarlier) {
  Started();
  // A result starts the batch window: the wait ends at its deadline, and another result before
  // then would change nothing; a worker taking a lease that leaves fewer than live (2) queued
  // would.
  CommSnapshot s = Busy(t0 + milliseconds(5), 4, 1);
  s.results_due = true;
  s.unacked = 1;
  s.refill_below = 0;
  CommDecision d = state.Decide(s);
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until, t0 + milliseconds(5) + kBatchWindow);
  EXPECT_FALSE(d.wake_on_result);
  EXPECT_EQ(d.wake_queue_below, 2);
  // With a deeper queue kept for short attempts, its refill mark.
  s.refill_below = 6;
  s.queued = 8;
  EXPECT_EQ(state.Decide(s).wake_queue_below, 6);
}

TEST_F(CommStateTest, NothingPendingOrNoMoreWorkLetsAResultWakeTheWait) {
  Started();
  // Nothing pending: the first result starts the batch window, so it must wake the loop.
  CommDecision idle = state.Decide(Busy(t0 + milliseconds(5), 4, 0));
  ASSERT_EQ(idle.kind, Kind::kWait);
  EXPECT_TRUE(idle.wake_on_result);
  // The coordinator gave less than asked (no more work now): results go at once.
  CommSnapshot s = Busy(t0 + milliseconds(10), 1, 2);
  s.worker_freed = true;
  ASSERT_EQ(state.Decide(s).kind, Kind::kTalk);
  state.OnLeaseAnswer(t0 + milliseconds(10), 2, 0, 0);
  state.OnTalked(t0 + milliseconds(10), true);
  CommDecision d = state.Decide(Busy(t0 + milliseconds(11), 4, 2));
  ASSERT_EQ(d.kind, Kind::kWait);
  EXPECT_TRUE(d.wake_on_result);
  // Ending: anything wakes it.
  CommSnapshot ending = Busy(t0 + milliseconds(12), 4, 0);
  ending.ending = Ending::kSignal;
  ending.stop_deadline = t0 + seconds(10);
  CommDecision e = state.Decide(ending);
  if (e.kind == Kind::kWait) {
    EXPECT_TRUE(e.wake_on_result);
    EXPECT_EQ(e.wake_queue_below, std::numeric_limits<int>::max());
  }
}

}  // namespace
}  // namespace parallelrun::rt
