#include "runtime/coordinator/job_state.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

const SteadyTime kT0 = SteadyTime() + std::chrono::hours(1);
const SteadyTime kExpiry = kT0 + std::chrono::seconds(90);

JobState WithMiniBatches(int n, int run_max_try = 3, int64_t items = 10) {
  JobState s(run_max_try);
  for (int i = 0; i < n; ++i) s.AddPlanned(PlanEntry{i * 100, 99, items});
  return s;
}

TEST(JobStateTest, LeasesInPlanOrderWithGrowingAttemptNumbers) {
  JobState s = WithMiniBatches(3);
  auto g = s.Lease(0, 2, kExpiry);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].id, 0);
  EXPECT_EQ(g[0].attempt, 1);
  EXPECT_EQ(g[0].plan_offset, 0);
  EXPECT_EQ(g[1].id, 1);
  EXPECT_EQ(s.counts().running, 2);
  EXPECT_TRUE(s.HasPending());
  EXPECT_EQ(s.Lease(0, 5, kExpiry).size(), 1u);
  EXPECT_FALSE(s.HasPending());
  EXPECT_TRUE(s.Lease(0, 5, kExpiry).empty());
}

TEST(JobStateTest, RunDoneCompletesAndClampsItemCounts) {
  JobState s = WithMiniBatches(1);
  s.SetPlanComplete();
  s.Lease(0, 1, kExpiry);
  Decision d = s.Apply(0, 1, AttemptStatus::kRunDone, 12);  // more than its 10 items
  EXPECT_EQ(d.outcome, Outcome::kCompleted);
  EXPECT_TRUE(d.accepted);
  EXPECT_EQ(d.succeeded, 10);
  EXPECT_EQ(d.failed, 0);
  EXPECT_TRUE(s.AllDone());
  EXPECT_EQ(s.accepted_attempt(0), 1);
  EXPECT_EQ(s.status(0), MiniBatchStatus::kCompleted);
}

TEST(JobStateTest, MissingItemsAreFailedItemsNotAFailedMiniBatch) {
  JobState s = WithMiniBatches(1);
  s.Lease(0, 1, kExpiry);
  Decision d = s.Apply(0, 1, AttemptStatus::kRunDone, 7);
  EXPECT_EQ(d.failed, 3);
  EXPECT_EQ(s.counts().failed, 0);
  EXPECT_EQ(s.counts().items_failed, 3);
}

TEST(JobStateTest, FailedTriesAreRetriedFirstThenTheMiniBatchFails) {
  JobState s = WithMiniBatches(2, /*run_max_try=*/2);
  s.Lease(0, 1, kExpiry);
  EXPECT_EQ(s.Apply(0, 1, AttemptStatus::kRunException, 0).outcome, Outcome::kRetry);
  EXPECT_EQ(s.counts().retried, 1);
  auto g = s.Lease(0, 1, kExpiry);  // the retry comes before mini-batch 1
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].id, 0);
  EXPECT_EQ(g[0].attempt, 2);
  Decision d = s.Apply(0, 2, AttemptStatus::kRunTimeout, 0);
  EXPECT_EQ(d.outcome, Outcome::kFailed);
  EXPECT_TRUE(d.accepted);
  EXPECT_EQ(s.counts().failed, 1);
  EXPECT_EQ(s.counts().items_failed, 10);
  EXPECT_EQ(s.counts().completed, 1);
}

TEST(JobStateTest, CancelledGivesWorkBackWithoutCountingATry) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/1);
  s.Lease(0, 1, kExpiry);
  EXPECT_EQ(s.Apply(0, 1, AttemptStatus::kCancelled, 0).outcome, Outcome::kGivenBack);
  auto g = s.Lease(0, 1, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].attempt, 2);  // a new part file
  EXPECT_EQ(s.Apply(0, 2, AttemptStatus::kRunDone, 10).outcome, Outcome::kCompleted);
  EXPECT_EQ(s.counts().retried, 0);
}

TEST(JobStateTest, ExpiredLeaseIsADisruptionAndItsLateRunDoneIsFenced) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/1);
  s.Lease(7, 1, kExpiry);
  EXPECT_TRUE(s.ExpireLeases(kExpiry - std::chrono::seconds(1)).empty());
  auto x = s.ExpireLeases(kExpiry);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].attempt.node, 7u);
  EXPECT_EQ(x[0].outcome, Outcome::kDisrupted);
  EXPECT_EQ(x[0].disruptions, 1);
  EXPECT_EQ(s.counts().retried, 0);
  EXPECT_EQ(s.counts().disrupted, 1);
  auto g = s.Lease(0, 1, kExpiry + std::chrono::seconds(90));
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].attempt, 2);
  // Attempt 1 reports after all: it no longer holds the lease, so it changes nothing.
  Decision late = s.Apply(0, 1, AttemptStatus::kRunDone, 10);
  EXPECT_EQ(late.outcome, Outcome::kLate);
  EXPECT_FALSE(late.accepted);
  EXPECT_EQ(s.status(0), MiniBatchStatus::kRunning);
  EXPECT_TRUE(s.Renew(0, 2, 0, kExpiry));
  EXPECT_EQ(s.Apply(0, 2, AttemptStatus::kRunDone, 10).outcome, Outcome::kCompleted);
  EXPECT_EQ(s.accepted_attempt(0), 2);
  EXPECT_EQ(s.counts().items_succeeded, 10);
}

TEST(JobStateTest, LateFailureOfAnExpiredAttemptIsNotCounted) {
  JobState s = WithMiniBatches(1);
  s.Lease(0, 1, kExpiry);
  s.ExpireLeases(kExpiry);
  Decision d = s.Apply(0, 1, AttemptStatus::kRunException, 0);
  EXPECT_EQ(d.outcome, Outcome::kLate);
  EXPECT_FALSE(d.accepted);
  EXPECT_EQ(s.counts().retried, 0);
}

TEST(JobStateTest, AttemptNeverIssuedIsFenced) {
  JobState s = WithMiniBatches(2);
  s.SetPlanComplete();
  s.Lease(0, 1, kExpiry);
  for (int attempt : {2, 3, 65536, 0}) {
    Decision d = s.Apply(0, attempt, AttemptStatus::kRunDone, 10);
    EXPECT_EQ(d.outcome, Outcome::kLate) << attempt;
    EXPECT_FALSE(d.accepted) << attempt;
    EXPECT_EQ(s.Holder(0, attempt), std::nullopt) << attempt;
  }
  // Mini-batch 1 was never handed out at all.
  EXPECT_EQ(s.Apply(1, 1, AttemptStatus::kRunDone, 10).outcome, Outcome::kLate);
  EXPECT_EQ(s.counts().completed, 0);
  EXPECT_EQ(s.counts().items_succeeded, 0);
  EXPECT_EQ(s.Holder(0, 1), std::optional<uint32_t>(0));
  EXPECT_FALSE(s.AllDone());
  // The next lease of mini-batch 1 is still attempt 1.
  auto g = s.Lease(0, 1, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].attempt, 1);
}

TEST(JobStateTest, DisruptionsAreFreeUpToTheLimitThenCount) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/1);
  SteadyTime t = kExpiry;
  for (int i = 1; i <= kFreeDisruptions; ++i) {
    ASSERT_EQ(s.Lease(0, 1, t).size(), 1u);
    auto x = s.ExpireLeases(t);
    ASSERT_EQ(x.size(), 1u);
    EXPECT_EQ(x[0].outcome, Outcome::kDisrupted) << i;
    EXPECT_EQ(s.disruptions(0), i);
    EXPECT_EQ(s.status(0), MiniBatchStatus::kPending);
    t += std::chrono::seconds(90);
  }
  ASSERT_EQ(s.Lease(0, 1, t).size(), 1u);
  auto x = s.ExpireLeases(t);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].outcome, Outcome::kFailed);  // runMaxTry 1: the first counted try
  EXPECT_EQ(s.counts().failed, 1);
}

TEST(JobStateTest, RegisteringAgainDropsTheNodesOtherAttemptsAsDisruptions) {
  JobState s = WithMiniBatches(4, /*run_max_try=*/1);
  s.Lease(1, 3, kExpiry);  // 0, 1, 2 on node 1
  s.Lease(2, 1, kExpiry);  // 3 on node 2
  auto x = s.DropNodeAttempts(1, {{1, 1}, {3, 1}});
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(x[0].attempt.id, 0);
  EXPECT_EQ(x[1].attempt.id, 2);
  EXPECT_EQ(x[0].outcome, Outcome::kDisrupted);
  EXPECT_EQ(s.status(1), MiniBatchStatus::kRunning);
  EXPECT_EQ(s.status(3), MiniBatchStatus::kRunning);  // node 2's, whatever node 1 says
  EXPECT_EQ(s.counts().running, 2);
  EXPECT_EQ(s.counts().failed, 0);
  // Queued again first in line, and with runMaxTry 1 they still may complete.
  auto g = s.Lease(2, 5, kExpiry);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(s.Apply(g[0].id, g[0].attempt, AttemptStatus::kRunDone, 10).outcome,
            Outcome::kCompleted);
}

TEST(JobStateTest, ReplayedDisruptionsKeepCountingTowardTheLimit) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/1);
  for (int a = 1; a <= kFreeDisruptions; ++a) s.ReplayOutcome(0, a, Outcome::kDisrupted, 0);
  EXPECT_EQ(s.status(0), MiniBatchStatus::kPending);
  EXPECT_EQ(s.disruptions(0), kFreeDisruptions);
  auto g = s.Lease(0, 1, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].attempt, kFreeDisruptions + 1);
  EXPECT_EQ(s.ExpireLeases(kExpiry)[0].outcome, Outcome::kFailed);
}

TEST(JobStateTest, OnlyTheHoldingNodeRenews) {
  JobState s = WithMiniBatches(1);
  s.Lease(3, 1, kExpiry);
  EXPECT_FALSE(s.Renew(0, 1, 4, kExpiry + std::chrono::seconds(60)));
  EXPECT_EQ(s.Holder(0, 1), std::optional<uint32_t>(3));
  EXPECT_EQ(s.ExpireLeases(kExpiry).size(), 1u);
}

TEST(JobStateTest, RenewExtendsOnlyTheLiveAttempt) {
  JobState s = WithMiniBatches(1);
  s.Lease(0, 1, kExpiry);
  EXPECT_TRUE(s.Renew(0, 1, 0, kExpiry + std::chrono::seconds(60)));
  EXPECT_FALSE(s.Renew(0, 2, 0, kExpiry));
  EXPECT_TRUE(s.ExpireLeases(kExpiry).empty());
  EXPECT_EQ(s.ExpireLeases(kExpiry + std::chrono::seconds(60)).size(), 1u);
}

TEST(JobStateTest, GiveBackQueuesFirstWithoutATryAndOnlyForTheOwningNode) {
  JobState s = WithMiniBatches(3, /*run_max_try=*/1);
  s.Lease(4, 3, kExpiry);
  EXPECT_FALSE(s.GiveBack(2, 1, 5));  // another node's lease
  EXPECT_FALSE(s.GiveBack(2, 2, 4));  // not the live attempt
  EXPECT_TRUE(s.GiveBack(2, 1, 4));
  EXPECT_FALSE(s.GiveBack(2, 1, 4));  // once
  EXPECT_EQ(s.status(2), MiniBatchStatus::kPending);
  EXPECT_EQ(s.counts().running, 2);
  EXPECT_EQ(s.counts().retried, 0);
  auto g = s.Lease(5, 1, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].id, 2);
  EXPECT_EQ(g[0].attempt, 2);
  // runMaxTry 1: a give-back is no try, so this attempt still may complete it.
  EXPECT_EQ(s.Apply(2, 2, AttemptStatus::kRunDone, 10).outcome, Outcome::kCompleted);
  EXPECT_EQ(s.counts().failed, 0);
}

TEST(JobStateTest, HeldAttemptIsReclaimedByTheRenewingNode) {
  JobState s = WithMiniBatches(2);
  s.ReplayLease(0, 1);
  s.ReplayLease(1, 3);
  s.SetPlanComplete();
  EXPECT_FALSE(s.Hold(1, 2, kExpiry));  // not its last attempt
  EXPECT_TRUE(s.Hold(0, 1, kExpiry));
  EXPECT_FALSE(s.Hold(0, 1, kExpiry));  // already running
  EXPECT_EQ(s.counts().running, 1);
  // Nobody else gets it while it is held.
  auto g = s.Lease(9, 10, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].id, 1);
  EXPECT_EQ(g[0].attempt, 4);
  EXPECT_TRUE(s.Renew(0, 1, 3, kExpiry + std::chrono::seconds(90)));
  auto running = s.Running();
  ASSERT_EQ(running.size(), 2u);
  EXPECT_EQ(running[0].node, 3u);
  EXPECT_FALSE(s.GiveBack(0, 1, kNoNode));  // it is node 3's now
  EXPECT_EQ(s.Apply(0, 1, AttemptStatus::kRunDone, 10).outcome, Outcome::kCompleted);
}

TEST(JobStateTest, UnclaimedHoldIsGivenBackWithoutATry) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/1);
  s.ReplayLease(0, 1);
  ASSERT_TRUE(s.Hold(0, 1, kExpiry));
  EXPECT_TRUE(s.ExpireLeases(kExpiry - std::chrono::seconds(1)).empty());
  auto x = s.ExpireLeases(kExpiry);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].attempt.node, kNoNode);
  EXPECT_EQ(x[0].outcome, Outcome::kGivenBack);
  EXPECT_EQ(s.counts().retried, 0);
  EXPECT_EQ(s.counts().failed, 0);
  auto g = s.Lease(0, 1, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].attempt, 2);
  // A held attempt whose node comes back without it goes back at once.
  JobState t = WithMiniBatches(1);
  t.ReplayLease(0, 1);
  ASSERT_TRUE(t.Hold(0, 1, kExpiry));
  EXPECT_TRUE(t.GiveBack(0, 1, kNoNode));
  EXPECT_EQ(t.status(0), MiniBatchStatus::kPending);
}

TEST(JobStateTest, ReplayRestoresOutcomesAndAttemptNumbers) {
  JobState s = WithMiniBatches(3, /*run_max_try=*/2);
  s.ReplayLease(0, 1);
  s.ReplayOutcome(0, 1, Outcome::kCompleted, 8);
  s.ReplayLease(1, 1);
  s.ReplayOutcome(1, 1, Outcome::kRetry, 0);
  s.ReplayLease(1, 2);
  s.ReplayOutcome(1, 2, Outcome::kFailed, 0);
  s.ReplayLease(2, 1);  // handed out, no result: runs again with a new attempt number
  s.SetPlanComplete();
  EXPECT_EQ(s.counts().completed, 2);
  EXPECT_EQ(s.counts().failed, 1);
  EXPECT_EQ(s.counts().retried, 1);
  EXPECT_EQ(s.counts().items_succeeded, 8);
  EXPECT_EQ(s.counts().items_failed, 12);
  auto g = s.Lease(0, 10, kExpiry);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].id, 2);
  EXPECT_EQ(g[0].attempt, 2);
}

TEST(JobStateTest, StatusAndOutcomeNamesRoundTrip) {
  for (const char* name :
       {"RUN_DONE", "RUN_EXCEPTION", "RUN_TIMEOUT", "RUN_WRONG_TYPE", "WORKER_DIED", "CANCELLED",
        "LEASE_EXPIRED", "INIT_FAILED", "INIT_TIMEOUT"}) {
    auto st = ParseAttemptStatus(name);
    ASSERT_TRUE(st.has_value()) << name;
    EXPECT_STREQ(AttemptStatusName(*st), name);
  }
  EXPECT_FALSE(ParseAttemptStatus("DONE").has_value());
  for (const char* name : {"completed", "failed", "retry", "given_back", "late"}) {
    auto o = ParseOutcome(name);
    ASSERT_TRUE(o.has_value()) << name;
    EXPECT_STREQ(OutcomeName(*o), name);
  }
}

TEST(JobStateTest, CarriedMiniBatchCountsAsCompletedAndIsNeverLeased) {
  JobState s = WithMiniBatches(3, /*run_max_try=*/3, /*items=*/10);
  EXPECT_TRUE(s.Carry(1, 8));
  EXPECT_FALSE(s.Carry(1, 8));  // once
  EXPECT_EQ(s.status(1), MiniBatchStatus::kCompleted);
  EXPECT_TRUE(s.carried(1));
  EXPECT_EQ(s.accepted_attempt(1), 0);
  EXPECT_EQ(s.counts().completed, 1);
  EXPECT_EQ(s.counts().carried, 1);
  EXPECT_EQ(s.counts().items_succeeded, 8);
  EXPECT_EQ(s.counts().items_failed, 2);
  auto g = s.Lease(0, 10, kExpiry);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].id, 0);
  EXPECT_EQ(g[1].id, 2);
  // Handed out in this run: not carried any more.
  EXPECT_FALSE(s.Carry(2, 10));
  EXPECT_FALSE(s.carried(2));
  s.SetPlanComplete();
  s.Apply(0, 1, AttemptStatus::kRunDone, 10);
  s.Apply(2, 1, AttemptStatus::kRunDone, 10);
  EXPECT_TRUE(s.AllDone());
  EXPECT_EQ(s.counts().carried, 1);
}

TEST(JobStateTest, RetriedCountsEachMiniBatchOnceSoItNeverExceedsTotal) {
  JobState s = WithMiniBatches(1, /*run_max_try=*/4);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    s.Lease(0, 1, kExpiry);
    EXPECT_EQ(s.Apply(0, attempt, AttemptStatus::kRunException, 0).outcome, Outcome::kRetry);
    EXPECT_EQ(s.counts().retried, 1);
  }
  EXPECT_LE(s.counts().retried, s.counts().total);
}

TEST(JobStateTest, RunningOnWorkersCountsAtMostTheWorkersOfEachNode) {
  JobState s = WithMiniBatches(10, /*run_max_try=*/1);
  s.Lease(0, 4, kExpiry);  // node 0: 2 workers, 2 running + 2 queued next
  s.Lease(1, 1, kExpiry);  // node 1: 1 running
  EXPECT_EQ(s.counts().running, 5);
  EXPECT_EQ(s.RunningOnWorkers(/*per_node=*/2, /*nodes=*/2), 3);
  EXPECT_EQ(s.RunningOnWorkers(/*per_node=*/1, /*nodes=*/1), 1);
}

}  // namespace
}  // namespace parallelrun::rt
