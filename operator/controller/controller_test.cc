#include "operator/controller/controller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "tests/fakes/wait_for.h"

namespace parallelrun::op::controller {
namespace {

using namespace std::chrono_literals;

constexpr auto kPatience = 10s;

// Collects what the controller reports; lets a test wait for a condition.
class Recorder : public ReconcileObserver {
 public:
  void OnReconcile(const std::string& key, const Result& result,
                   std::chrono::duration<double> latency) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_[key];
    if (!result.status.ok()) ++errors_[key];
    EXPECT_GE(latency.count(), 0.0);
    cv_.notify_all();
  }
  bool WaitFor(const std::string& key, int count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return count_[key] >= count; });
  }
  int Count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return count_[key];
  }
  int Errors(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_[key];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> count_;
  std::map<std::string, int> errors_;
};

TEST(ControllerTest, ReconcilesEachAddedKey) {
  WorkQueue q;
  Recorder rec;
  Controller c(
      "test", q, [](const std::string&) { return Result{}; }, 2, &rec);
  c.Start();
  q.Add("ns/a");
  q.Add("ns/b");
  EXPECT_TRUE(rec.WaitFor("ns/a", 1));
  EXPECT_TRUE(rec.WaitFor("ns/b", 1));
  c.Stop();
  EXPECT_EQ(rec.Count("ns/a"), 1);
  EXPECT_EQ(rec.Errors("ns/a"), 0);
}

TEST(ControllerTest, ErrorsRetryWithBackoffAndSuccessForgets) {
  WorkQueue q({.base_delay = 10ms, .max_delay = 100ms});
  Recorder rec;
  std::atomic<int> calls{0};
  std::atomic<int> requeues_seen{-1};
  Controller c(
      "test", q,
      [&](const std::string& key) {
        int n = ++calls;
        if (n <= 2) return Result{rt::UnavailableError("not yet"), std::nullopt};
        requeues_seen = q.NumRequeues(key);
        return Result{};
      },
      1, &rec);
  c.Start();
  q.Add("k");
  ASSERT_TRUE(rec.WaitFor("k", 3));
  c.Stop();
  EXPECT_EQ(rec.Errors("k"), 2);
  EXPECT_EQ(requeues_seen, 2);
  EXPECT_EQ(q.NumRequeues("k"), 0) << "success forgets the backoff";
}

TEST(ControllerTest, RequeueAfterRunsAgain) {
  WorkQueue q;
  Recorder rec;
  std::atomic<int> calls{0};
  Controller c(
      "test", q,
      [&](const std::string&) {
        return ++calls < 3 ? Result{rt::Status::Ok(), 20ms} : Result{};
      },
      1, &rec);
  c.Start();
  q.Add("k");
  ASSERT_TRUE(rec.WaitFor("k", 3));
  c.Stop();
  EXPECT_EQ(rec.Errors("k"), 0);
}

TEST(ControllerTest, ThrowingReconcileCountsAsError) {
  WorkQueue q({.base_delay = 10ms, .max_delay = 10ms});
  Recorder rec;
  std::atomic<int> calls{0};
  Controller c(
      "test", q,
      [&](const std::string&) -> Result {
        if (++calls == 1) throw std::runtime_error("bug");
        return Result{};
      },
      1, &rec);
  c.Start();
  q.Add("k");
  ASSERT_TRUE(rec.WaitFor("k", 2));
  c.Stop();
  EXPECT_EQ(rec.Errors("k"), 1);
}

TEST(ControllerTest, WorkersRunConcurrently) {
  WorkQueue q;
  constexpr int kWorkers = 3;
  std::mutex mu;
  std::condition_variable cv;
  int inside = 0;
  bool all_met = false;
  Controller c(
      "test", q,
      [&](const std::string&) {
        std::unique_lock<std::mutex> lock(mu);
        ++inside;
        cv.notify_all();
        // Each reconcile waits until all workers are inside at once.
        if (cv.wait_for(lock, kPatience, [&] { return inside >= kWorkers; })) all_met = true;
        return Result{};
      },
      kWorkers);
  c.Start();
  for (int i = 0; i < kWorkers; ++i) q.Add("k" + std::to_string(i));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kPatience, [&] { return inside >= kWorkers; }));
  }
  c.Stop();
  EXPECT_TRUE(all_met);
}

TEST(ControllerTest, StopLetsInFlightReconcileFinish) {
  WorkQueue q;
  std::atomic<bool> entered{false}, release{false}, finished{false};
  Controller c(
      "test", q,
      [&](const std::string&) {
        entered = true;
        // Work in progress when Stop() is called: it ends only once Stop() has begun.
        EXPECT_TRUE(fakes::WaitFor([&] { return release.load(); }));
        finished = true;
        return Result{};
      },
      1);
  c.Start();
  q.Add("k");
  ASSERT_TRUE(fakes::WaitFor([&] { return entered.load(); }));
  std::thread releaser([&] {
    EXPECT_TRUE(fakes::WaitFor([&] { return q.ShuttingDown(); }));  // Stop() has begun
    EXPECT_FALSE(finished);
    release = true;
  });
  c.Stop();
  EXPECT_TRUE(finished) << "Stop() returned before the reconcile in flight ended";
  releaser.join();
}

TEST(ControllerTest, StopWithoutStartAndTwiceIsSafe) {
  WorkQueue q;
  Controller c(
      "test", q, [](const std::string&) { return Result{}; }, 2);
  c.Stop();
  c.Stop();
}

}  // namespace
}  // namespace parallelrun::op::controller
