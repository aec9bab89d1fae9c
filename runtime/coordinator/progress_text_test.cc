#include "runtime/coordinator/progress_text.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

SteadyTime At(int seconds) { return SteadyTime() + std::chrono::seconds(seconds); }

TEST(ProgressText, EtaFromTheRateSinceTheFirstLease) {
  JobCounts c;
  c.total = 10;
  c.completed = 4;
  // Nothing before the plan is complete, before the first lease, or before a completion here.
  EXPECT_FALSE(EtaSeconds(c, false, At(0), 0, At(20)));
  EXPECT_FALSE(EtaSeconds(c, true, std::nullopt, 0, At(20)));
  EXPECT_FALSE(EtaSeconds(c, true, At(0), 4, At(20)));
  // 4 done in 20 s: 6 left take 30 s.
  EXPECT_DOUBLE_EQ(*EtaSeconds(c, true, At(0), 0, At(20)), 30.0);
  // Carried-over and earlier completions do not count for the rate: 2 done here in 20 s.
  c.carried = 1;
  EXPECT_DOUBLE_EQ(*EtaSeconds(c, true, At(0), 1, At(20)), 60.0);
}

TEST(ProgressText, ProgressLine) {
  ProgressLineInput in;
  in.counts.total = 10;
  in.counts.completed = 3;
  in.elapsed_s = 5;
  EXPECT_EQ(ProgressLine(in), "Processed 3 of 10+ mini batches in 0:00:05");
  in.plan_complete = true;
  in.counts.failed = 1;
  in.eta_s = 12;
  EXPECT_EQ(ProgressLine(in),
            "Processed 3 of 10 mini batches in 0:00:05 (1 failed), estimated 0:00:12 remaining");
  in.final_line = true;
  in.counts.carried = 2;
  in.carried_from = "/earlier";
  EXPECT_EQ(ProgressLine(in),
            "Processed 3 of 10 mini batches in 0:00:05 (1 failed), 2 of them carried over from "
            "/earlier");
}

TEST(ProgressText, RunningSummaryNamesTenThenCounts) {
  auto node_of = [](const RunningAttempt& a) { return "node" + std::to_string(a.node); };
  EXPECT_EQ(RunningSummary({}, node_of), "none running");
  std::vector<RunningAttempt> running;
  for (int i = 0; i < 12; ++i) running.push_back(RunningAttempt{i, 2, uint32_t(i % 2), {}});
  std::string s = RunningSummary(running, node_of);
  EXPECT_EQ(s.rfind("running: mini-batch 0 (attempt 2) on node0, mini-batch 1 (attempt 2) on "
                    "node1, ",
                    0),
            0u)
      << s;
  EXPECT_NE(s.find("mini-batch 9 (attempt 2) on node1, and 2 more"), std::string::npos) << s;
  EXPECT_EQ(s.find("mini-batch 10 "), std::string::npos) << s;
}

TEST(ProgressText, ProgressOfARunningAndAnEndedJob) {
  JobCounts c;
  c.total = 5;
  c.completed = 2;
  c.running = 1;
  c.items_total = 50;
  protocol::Progress p = RunningProgress(c, true, false);
  EXPECT_EQ(p.phase, "Pending");
  EXPECT_EQ(p.progress, "2/5");
  EXPECT_EQ(p.miniBatches.running, 1);
  EXPECT_EQ(p.items.total, 50);
  EXPECT_TRUE(p.planned);
  EXPECT_EQ(RunningProgress(c, false, true).phase, "Running");

  JobResult r;
  r.succeeded = false;
  r.reason = "NoProgress";
  r.exit_code = 42;
  r.mini_batches_total = 5;
  r.mini_batches_succeeded = 3;
  r.mini_batches_failed = 1;
  protocol::Progress e = EndedProgress(r, true);
  EXPECT_EQ(e.phase, "Failed");
  EXPECT_EQ(e.progress, "4/5");
  EXPECT_EQ(e.exitCode, 42);
  EXPECT_EQ(e.eta, "0:00:00");
}

}  // namespace
}  // namespace parallelrun::rt
