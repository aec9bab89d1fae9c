#include "runtime/coordinator/node_table.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

SteadyTime At(int seconds) { return SteadyTime() + std::chrono::seconds(seconds); }

TEST(NodeTable, RegistrationReadinessAndTheEnd) {
  NodeTable t;
  EXPECT_TRUE(t.empty());
  auto a = t.Register("a", 10, At(0));
  EXPECT_FALSE(a.known);
  auto again = t.Register("a", 10, At(1));
  EXPECT_TRUE(again.known);
  EXPECT_FALSE(again.restarted);
  EXPECT_EQ(again.index, a.index);
  uint32_t b = t.Touch("b", At(50));
  EXPECT_EQ(t.name(b), "b");
  EXPECT_TRUE(t.MarkGaveUp(a.index));
  EXPECT_FALSE(t.MarkGaveUp(a.index));
  EXPECT_EQ(t.GaveUpCount(), 1);
  // A new agent on the node (another pid) may start workers again.
  EXPECT_TRUE(t.Register("a", 11, At(2)).restarted);
  EXPECT_EQ(t.GaveUpCount(), 0);

  EXPECT_EQ(t.ReadyCount(At(60), std::chrono::seconds(30)), 1);  // a was last heard at 2
  EXPECT_EQ(t.NotToldTheEnd(At(60), std::chrono::seconds(90)),
            (std::vector<std::string>{"a", "b"}));
  t.MarkToldEnd(b);
  EXPECT_EQ(t.NotToldTheEnd(At(60), std::chrono::seconds(90)), (std::vector<std::string>{"a"}));
}

TEST(NodeTable, FencingAndHeldAttempts) {
  JobState state(3);
  for (int i = 0; i < 3; ++i) state.AddPlanned(PlanEntry{i * 10, 10, 1, 0});
  state.SetPlanComplete();
  NodeTable t;
  uint32_t a = t.Touch("a", At(0));
  uint32_t b = t.Touch("b", At(0));
  auto grants = state.Lease(a, 1, At(90));
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(t.Fence(state, grants[0].id, 1, a, "a"), "");
  EXPECT_EQ(t.Fence(state, grants[0].id, 1, b, "b"), "it is on lease to a");
  EXPECT_EQ(t.Fence(state, grants[0].id, 2, a, "a"), "attempt 2 is not the one on lease");
  EXPECT_EQ(t.Fence(state, 7, 1, a, "a"), "it is not a planned mini-batch");

  // Held since a restart for node "c": only c may report it; c reclaims what it still has.
  state.ReplayLease(1, 1);
  state.ReplayLease(2, 1);
  std::unordered_map<int64_t, HeldAttempt> open{{1, {1, "c"}}, {2, {1, "c"}}};
  EXPECT_EQ(t.Hold(state, open, At(90)), 2u);
  EXPECT_EQ(t.NodeOf(RunningAttempt{1, 1, kNoNode, {}}), "c");
  EXPECT_EQ(t.Fence(state, 1, 1, b, "b"), "it is held for c");
  uint32_t c = t.Touch("c", At(1));
  EXPECT_EQ(t.Fence(state, 1, 1, c, "c"), "");
  auto r = t.ReclaimFor(state, "c", c, {protocol::LeaseRef{1, 1}}, At(91));
  EXPECT_EQ(r.kept, 1);
  ASSERT_EQ(r.released.size(), 1u);
  EXPECT_EQ(r.released[0].mini_batch_id, 2);
  EXPECT_FALSE(t.holding());
  EXPECT_EQ(state.Holder(1, 1), c);
}

}  // namespace
}  // namespace parallelrun::rt
