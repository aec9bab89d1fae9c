#include "operator/cmd/runnables.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <set>

#include "operator/api/parallelrun_job.h"
#include "operator/cmd/job_metrics.h"
#include "operator/kube/fake_client.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::op::cmd {
namespace {

using fakes::WaitFor;
using kube::FakeClient;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json Job(const std::string& name, json status = nullptr) {
  json job = {{"apiVersion", "parallelrun.io/v1alpha1"},
              {"kind", "ParallelRunJob"},
              {"metadata", {{"name", name}, {"namespace", "ns"}}},
              {"spec", json::parse(R"({
                "entryScript": "score.py",
                "sourceDirectory": {"volume": "data", "path": "code/"},
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                "inputs": [{"name": "docs", "type": "file",
                            "source": {"volume": "data", "path": "in/"}}],
                "output": {"volume": "data", "path": "out/"}})")}};
  if (!status.is_null()) job["status"] = status;
  return job;
}

json Pod(const std::string& name, const std::string& job) {
  return {{"metadata", {{"name", name}, {"labels", {{api::kJobLabel, job}}}}},
          {"spec", {{"containers", {{{"name", "worker"}, {"image", "parallelrun:0.1.0"}}}}}}};
}

// Reconciled keys, recorded by the controller's workers.
struct Reconciled {
  std::mutex mu;
  std::multiset<std::string> keys;
  controller::ReconcileFn Fn() {
    return [this](const std::string& key) {
      std::lock_guard<std::mutex> lock(mu);
      keys.insert(key);
      return controller::Result{};
    };
  }
  size_t Count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    return keys.count(key);
  }
};

TEST(JobControllerTest, QueuesOnlyWhileLeadingAndEveryCachedJobWhenItStarts) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kube::resources::kParallelRunJobs, "ns", Job("a")).ok());
  informer::Informer jobs(client, {.resource = kube::resources::kParallelRunJobs, .ns = "ns"});
  informer::Informer pods(
      client, {.resource = kube::resources::kPods, .ns = "ns", .label_selector = api::kJobLabel});
  controller::WorkQueue queue;
  Reconciled reconciled;
  controller::Controller workers("test", queue, reconciled.Fn(), 1);
  JobController job_controller(jobs, {&pods}, queue, workers, 1);
  EXPECT_EQ(job_controller.Name(), "parallelrunjob controller");
  jobs.Start();
  pods.Start();
  ASSERT_TRUE(jobs.WaitForSync(fakes::kWaitDeadline) && pods.WaitForSync(fakes::kWaitDeadline));
  ASSERT_TRUE(client.Create(kube::resources::kPods, "ns", Pod("a-worker-0", "a")).ok());
  ASSERT_TRUE(WaitFor([&] { return pods.Size() == 1; }));
  EXPECT_EQ(queue.Len(), 0u) << "a standby queues nothing";

  ASSERT_TRUE(job_controller.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return reconciled.Count("ns/a") == 1; })) << "queued on Start";
  ASSERT_TRUE(client.Create(kube::resources::kPods, "ns", Pod("b-worker-0", "b")).ok());
  ASSERT_TRUE(WaitFor([&] { return reconciled.Count("ns/b") == 1; })) << "a child queues its job";
  ASSERT_TRUE(client.Create(kube::resources::kParallelRunJobs, "ns", Job("c")).ok());
  ASSERT_TRUE(WaitFor([&] { return reconciled.Count("ns/c") == 1; }));

  job_controller.Stop();
  EXPECT_TRUE(queue.ShuttingDown());
  ASSERT_TRUE(client.Create(kube::resources::kParallelRunJobs, "ns", Job("d")).ok());
  ASSERT_TRUE(WaitFor([&] { return jobs.Size() == 3; }));
  EXPECT_EQ(reconciled.Count("ns/d"), 0u);
  jobs.Stop();
  pods.Stop();
}

TEST(JobMetricsTest, PhasesAndCountsOfTheCachedJobs) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kube::resources::kParallelRunJobs, "ns", Job("new")).ok());
  auto run = client.Create(kube::resources::kParallelRunJobs, "ns", Job("run"));
  ASSERT_TRUE(run.ok());
  (*run)["status"] = {{"phase", "Running"},
                      {"miniBatches", {{"total", 10}, {"completed", 4}}},
                      {"items", {{"total", 100}, {"succeeded", 38}, {"failed", 2}}}};
  ASSERT_TRUE(client.Update(kube::resources::kParallelRunJobs, "ns", *run, "status").ok());
  informer::Informer jobs(client, {.resource = kube::resources::kParallelRunJobs, .ns = "ns"});
  jobs.Start();
  ASSERT_TRUE(jobs.WaitForSync(fakes::kWaitDeadline));
  manager::Registry registry;
  RegisterJobMetrics(registry, jobs);
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("parallelrun_jobs{phase=\"Pending\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_jobs{phase=\"Running\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_jobs{phase=\"Failed\"} 0\n"));
  EXPECT_THAT(
      text, HasSubstr("parallelrun_job_minibatches{name=\"run\",namespace=\"ns\",state=\"total\"} "
                      "10\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_job_minibatches{name=\"run\",namespace=\"ns\","
                              "state=\"retried\"} 0\n"));
  EXPECT_THAT(
      text, HasSubstr("parallelrun_job_items{name=\"run\",namespace=\"ns\",state=\"failed\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("name=\"new\""))) << "a job with no counts has no series";
  jobs.Stop();
}

TEST(MetricsObserverTest, ConflictsAreRequeuesNotErrors) {
  manager::Registry registry;
  MetricsObserver observer(registry);
  observer.OnReconcile("ns/a", {}, std::chrono::milliseconds(5));
  observer.OnReconcile("ns/a", {.status = rt::InternalError("boom")}, std::chrono::milliseconds(5));
  observer.OnReconcile("ns/a", {.status = rt::Status(rt::StatusCode::kAborted, "409 Conflict")},
                       std::chrono::milliseconds(5));
  observer.OnReconcile("ns/a", {.requeue_after = std::chrono::milliseconds(10)},
                       std::chrono::milliseconds(5));
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("parallelrun_reconcile_total{result=\"success\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_reconcile_total{result=\"error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_reconcile_total{result=\"requeue\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_reconcile_errors_total 1\n"));
  EXPECT_THAT(text, HasSubstr("parallelrun_reconcile_duration_seconds_count 4\n"));
}

}  // namespace
}  // namespace parallelrun::op::cmd
