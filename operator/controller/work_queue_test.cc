#include "operator/controller/work_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::op::controller {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Generous: the machine running the tests may be busy.
constexpr auto kPatience = 10s;

// Get() on another thread, so a test can bound how long it may block.
std::future<std::optional<std::string>> GetAsync(WorkQueue& q) {
  return std::async(std::launch::async, [&q] { return q.Get(); });
}

TEST(WorkQueueTest, DuplicateAddsCollapse) {
  WorkQueue q;
  q.Add("a");
  q.Add("b");
  q.Add("a");
  EXPECT_EQ(q.Len(), 2u);
  EXPECT_EQ(q.Get(), "a");
  EXPECT_EQ(q.Get(), "b");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(WorkQueueTest, ItemAddedWhileProcessingComesBackAfterDone) {
  WorkQueue q;
  q.Add("a");
  ASSERT_EQ(q.Get(), "a");
  q.Add("a");
  q.Add("a");
  EXPECT_EQ(q.Len(), 0u) << "never handed to two workers at once";
  q.Done("a");
  EXPECT_EQ(q.Len(), 1u);
  EXPECT_EQ(q.Get(), "a");
  q.Done("a");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(WorkQueueTest, DoneWithoutReAddDropsTheItem) {
  WorkQueue q;
  q.Add("a");
  ASSERT_EQ(q.Get(), "a");
  q.Done("a");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(WorkQueueTest, AddAfterDelays) {
  fakes::FakeClock clock;
  WorkQueue q({.clock = &clock});
  q.AddAfter("a", 200ms);
  EXPECT_EQ(q.Len(), 0u);
  clock.Advance(199ms);
  EXPECT_EQ(q.Len(), 0u);
  clock.Advance(1ms);
  EXPECT_EQ(q.Len(), 1u);
  EXPECT_EQ(q.Get(), "a");
}

TEST(WorkQueueTest, GetWaitsForADelayOnTheRealClock) {
  WorkQueue q;
  auto start = Clock::now();
  q.AddAfter("a", 50ms);
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), "a");
  EXPECT_GE(Clock::now() - start, 50ms);
}

TEST(WorkQueueTest, AddAfterZeroIsAdd) {
  WorkQueue q;
  q.AddAfter("a", 0ms);
  EXPECT_EQ(q.Len(), 1u);
}

TEST(WorkQueueTest, DuplicateAddKeepsEarliestDeadline) {
  WorkQueue q;
  q.AddAfter("a", 1h);
  q.AddAfter("a", 50ms);
  q.AddAfter("a", 2h);
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), "a");
  q.Done("a");
  EXPECT_EQ(q.Len(), 0u) << "the later deadlines collapsed into the earliest";
}

TEST(WorkQueueTest, EarlierDelayWakesAWaitingGet) {
  WorkQueue q;
  q.AddAfter("late", 1h);
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(100ms), std::future_status::timeout);
  q.AddAfter("soon", 50ms);
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), "soon");
}

TEST(WorkQueueTest, DelayedItemBeingProcessedIsQueuedAgainAfterDone) {
  WorkQueue q;
  q.Add("a");
  ASSERT_EQ(q.Get(), "a");
  q.AddAfter("a", 20ms);
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(200ms), std::future_status::timeout);
  q.Done("a");
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), "a");
}

TEST(WorkQueueTest, AddRateLimitedBacksOffExponentially) {
  fakes::FakeClock clock;
  WorkQueue q({.base_delay = 100ms, .max_delay = 1000s, .clock = &clock});
  for (int i = 0; i < 5; ++i) {
    q.AddRateLimited("a");
    EXPECT_EQ(q.NumRequeues("a"), i + 1);
    const auto delay = 100ms * (1 << i);
    clock.Advance(delay - 1ms);
    EXPECT_EQ(q.Len(), 0u) << "attempt " << i;
    clock.Advance(1ms);
    ASSERT_EQ(q.Len(), 1u) << "attempt " << i;
    EXPECT_EQ(q.Get(), "a");
    q.Done("a");
  }
}

TEST(WorkQueueTest, BackoffIsCapped) {
  WorkQueue q({.base_delay = 50ms, .max_delay = 100ms});
  for (int i = 0; i < 40; ++i) q.AddRateLimited("a");
  auto first = GetAsync(q);
  ASSERT_EQ(first.wait_for(kPatience), std::future_status::ready);
  ASSERT_EQ(first.get(), "a");
  q.Done("a");
  q.AddRateLimited("a");  // uncapped: 50 ms · 2^40
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), "a");
}

TEST(WorkQueueTest, ForgetResetsBackoff) {
  WorkQueue q;
  q.AddRateLimited("a");
  q.AddRateLimited("a");
  q.AddRateLimited("b");
  EXPECT_EQ(q.NumRequeues("a"), 2);
  q.Forget("a");
  EXPECT_EQ(q.NumRequeues("a"), 0);
  EXPECT_EQ(q.NumRequeues("b"), 1);
}

TEST(WorkQueueTest, ShutDownWakesGet) {
  WorkQueue q;
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(50ms), std::future_status::timeout);
  q.ShutDown();
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), std::nullopt);
  EXPECT_TRUE(q.ShuttingDown());
}

TEST(WorkQueueTest, ShutDownWakesGetWaitingForADelayedItem) {
  WorkQueue q;
  q.AddAfter("a", 1h);
  auto got = GetAsync(q);
  ASSERT_EQ(got.wait_for(50ms), std::future_status::timeout);
  q.ShutDown();
  ASSERT_EQ(got.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(got.get(), std::nullopt);
}

TEST(WorkQueueTest, AddsAfterShutDownAreIgnored) {
  WorkQueue q;
  q.ShutDown();
  q.Add("a");
  q.AddAfter("b", 0ms);
  q.AddRateLimited("c");
  EXPECT_EQ(q.Len(), 0u);
  EXPECT_EQ(q.Get(), std::nullopt);
}

// Many producers and workers: every key added is processed, never by two workers at once.
TEST(WorkQueueTest, ConcurrentWorkersNeverShareAKey) {
  WorkQueue q;
  constexpr int kKeys = 20, kWorkers = 4, kProducers = 3, kAddsEach = 300;
  std::mutex mu;
  std::set<std::string> active;
  std::atomic<bool> overlap{false};
  std::vector<std::atomic<int>> processed(kKeys);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      while (auto key = q.Get()) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!active.insert(*key).second) overlap = true;
        }
        std::this_thread::yield();
        {
          std::lock_guard<std::mutex> lock(mu);
          active.erase(*key);
        }
        ++processed[std::stoi(*key)];
        q.Done(*key);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kAddsEach; ++i) {
        std::string key = std::to_string((i + p) % kKeys);
        if (i % 7 == 0) {
          q.AddAfter(key, 1ms);
        } else {
          q.Add(key);
        }
      }
    });
  }
  for (auto& t : producers) t.join();
  // Every key was added at least once after the producers ran: wait until all were handled
  // and the queue drained.
  auto all_done = [&] {
    for (auto& n : processed) {
      if (n == 0) return false;
    }
    std::lock_guard<std::mutex> lock(mu);
    return active.empty() && q.Len() == 0;
  };
  fakes::WaitFor(all_done, kPatience);
  q.ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_FALSE(overlap);
  for (int k = 0; k < kKeys; ++k) EXPECT_GT(processed[k], 0) << k;
}

}  // namespace
}  // namespace parallelrun::op::controller
