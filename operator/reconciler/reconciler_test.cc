#include "operator/reconciler/reconciler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "operator/kube/fake_client.h"

namespace parallelrun::op::reconciler {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

class FakeClock : public rt::Clock {
 public:
  rt::SystemTime Now() const override { return wall_; }
  rt::SteadyTime SteadyNow() const override { return steady_; }
  void Advance(std::chrono::milliseconds d) {
    wall_ += d;
    steady_ += d;
  }

 private:
  rt::SystemTime wall_ = std::chrono::system_clock::from_time_t(1'800'000'000);
  rt::SteadyTime steady_ = rt::SteadyTime() + std::chrono::hours(1000);
};

class FakeProgress : public status::ProgressReader {
 public:
  rt::StatusOr<rt::protocol::Progress> Read(const status::ProgressTarget& target) override {
    std::lock_guard<std::mutex> lock(mu);
    targets.push_back(target);
    if (!error.ok()) return error;
    return progress;
  }
  std::mutex mu;
  rt::Status error;
  rt::protocol::Progress progress;
  std::vector<status::ProgressTarget> targets;
};

class RecordingEvents : public status::EventRecorder {
 public:
  void Record(const status::ObjectRef& object, const std::string& type, const std::string& reason,
              const std::string& message) override {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(object.uid + " " + type + " " + reason + ": " + message);
  }
  bool Has(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : events) {
      if (e.find(" " + reason + ":") != std::string::npos) return true;
    }
    return false;
  }
  std::mutex mu;
  std::vector<std::string> events;
};

class ReconcilerTest : public ::testing::Test {
 protected:
  ReconcilerTest()
      : jobs_(client_, {.resource = kube::resources::kParallelRunJobs}),
        pods_(client_, {.resource = kube::resources::kPods}),
        config_maps_(client_, {.resource = kube::resources::kConfigMaps}),
        services_(client_, {.resource = kube::resources::kServices}) {
    for (auto* i : {&jobs_, &pods_, &config_maps_, &services_}) {
      i->Start();
      EXPECT_TRUE(i->WaitForSync(milliseconds(10000)));
    }
    ReconcilerOptions options;
    options.children.default_image = "parallelrun:test";
    options.progress_interval = milliseconds(2000);
    options.on_mini_batches_completed = [this](int64_t n) { processed_ += n; };
    reconciler_ =
        std::make_unique<JobReconciler>(client_, Caches{&jobs_, &pods_, &config_maps_, &services_},
                                        progress_, events_, clock_, options);
  }

  static json Job(int nodes = 2) {
    json m = json::parse(R"({
      "apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
      "metadata": {"name": "score", "namespace": "ns"},
      "spec": {
        "entryScript": "score.py",
        "sourceDirectory": {"volume": "data", "path": "code/"},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        "inputs": [{"name": "docs", "type": "file", "source": {"volume": "data", "path": "in/"}}],
        "output": {"volume": "data", "path": "out/"},
        "backoffLimit": 2
      }})");
    m["spec"]["nodeCount"] = nodes;
    return m;
  }

  // Waits until every informer holds exactly what the API holds.
  void Settle() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    const std::vector<std::pair<const kube::Resource*, informer::Informer*>> all = {
        {&kube::resources::kParallelRunJobs, &jobs_},
        {&kube::resources::kPods, &pods_},
        {&kube::resources::kConfigMaps, &config_maps_},
        {&kube::resources::kServices, &services_}};
    while (std::chrono::steady_clock::now() < deadline) {
      bool same = true;
      for (const auto& [resource, cache] : all) {
        auto list = client_.List(*resource, "", {});
        EXPECT_TRUE(list.ok());
        std::set<std::string> api, cached;
        for (const auto& o : (*list)["items"]) {
          api.insert(o["metadata"]["name"].get<std::string>() + "@" +
                     o["metadata"]["resourceVersion"].get<std::string>());
        }
        for (const auto& o : cache->List()) {
          cached.insert((*o)["metadata"]["name"].get<std::string>() + "@" +
                        (*o)["metadata"]["resourceVersion"].get<std::string>());
        }
        same &= api == cached;
      }
      if (same) return;
      std::this_thread::sleep_for(milliseconds(5));
    }
    FAIL() << "informers did not catch up";
  }

  controller::Result Reconcile() {
    Settle();
    auto result = reconciler_->Reconcile("ns/score");
    Settle();
    return result;
  }

  void CreateJob(const json& job) {
    ASSERT_TRUE(client_.Create(kube::resources::kParallelRunJobs, "ns", job).ok());
  }

  json GetJob() {
    auto job = client_.Get(kube::resources::kParallelRunJobs, "ns", "score");
    return job.ok() ? *job : json();
  }
  json Status() { return GetJob().value("status", json::object()); }
  std::string Condition(const std::string& type, const char* field = "reason") {
    for (const auto& c : Status().value("conditions", json::array())) {
      if (c["type"] == type)
        return c["status"].get<std::string>() + "/" + c[field].get<std::string>();
    }
    return "";
  }
  bool PodExists(const std::string& name) {
    return client_.Get(kube::resources::kPods, "ns", name).ok();
  }
  void SetPodStatus(const std::string& name, const json& status) {
    auto patched = client_.Patch(kube::resources::kPods, "ns", name, kube::PatchType::kMerge,
                                 {{"status", status}}, "status");
    ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  }
  void Terminate(const std::string& pod, const std::string& container, int code,
                 const std::string& message = "") {
    SetPodStatus(pod,
                 {{"phase", code == 0 ? "Succeeded" : "Failed"},
                  {"containerStatuses",
                   {{{"name", container},
                     {"state", {{"terminated", {{"exitCode", code}, {"message", message}}}}}}}}});
  }
  void Running(const std::string& pod) {
    SetPodStatus(pod, {{"phase", "Running"}, {"podIP", "127.9.9.9"}});
  }
  // Reconciles until the job has its finalizer and children.
  void StartJob(int nodes = 2) {
    CreateJob(Job(nodes));
    Reconcile();  // adds the finalizer
    Reconcile();  // creates the children
  }

  kube::FakeClient client_{{.namespaces = {"ns"}}};
  informer::Informer jobs_, pods_, config_maps_, services_;
  FakeProgress progress_;
  RecordingEvents events_;
  FakeClock clock_;
  std::atomic<int64_t> processed_{0};  // parallelrun_minibatches_processed_total
  std::unique_ptr<JobReconciler> reconciler_;
};

TEST_F(ReconcilerTest, NewJobGetsFinalizerThenAllChildrenAndPendingStatus) {
  CreateJob(Job(3));
  Reconcile();
  EXPECT_EQ(GetJob()["metadata"]["finalizers"], json::array({"parallelrun.io/finalizer"}));
  EXPECT_FALSE(PodExists("score-coordinator"));
  Reconcile();
  EXPECT_TRUE(client_.Get(kube::resources::kSecrets, "ns", "score-parallelrun").ok());
  EXPECT_TRUE(client_.Get(kube::resources::kConfigMaps, "ns", "score-spec").ok());
  EXPECT_TRUE(client_.Get(kube::resources::kServices, "ns", "score-coordinator").ok());
  auto policy = client_.Get(kube::resources::kNetworkPolicies, "ns", "score-coordinator");
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ((*policy)["spec"]["podSelector"]["matchLabels"]["parallelrun.io/job"], "score");
  // Secrets are created and read by name, never listed or watched (issue 12).
  EXPECT_EQ(client_.CallCount("list", "secrets") + client_.CallCount("watch", "secrets"), 0);
  EXPECT_TRUE(PodExists("score-coordinator"));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(PodExists("score-worker-" + std::to_string(i)));
  EXPECT_FALSE(PodExists("score-worker-3"));
  EXPECT_EQ(Status()["phase"], "Pending");
  EXPECT_FALSE(Status()["startTime"].get<std::string>().empty());
  EXPECT_TRUE(events_.Has("PodsCreated"));
  // Idempotent: another pass creates nothing more.
  const int creates = client_.CallCount("create", "pods");
  Reconcile();
  EXPECT_EQ(client_.CallCount("create", "pods"), creates);
}

TEST_F(ReconcilerTest, SemanticErrorFailsInvalidSpecWithoutPods) {
  json job = Job();
  job["spec"]["arguments"] = json::array({"$(inputs.nope)"});
  CreateJob(job);
  Reconcile();
  Reconcile();
  EXPECT_EQ(Status()["phase"], "Failed");
  EXPECT_THAT(Condition("Failed"), "True/InvalidSpec");
  EXPECT_THAT(Condition("Failed", "message"), HasSubstr("spec.arguments[0]"));
  EXPECT_EQ(client_.CallCount("create", "pods"), 0);
  EXPECT_TRUE(events_.Has("InvalidSpec"));
}

TEST_F(ReconcilerTest, RunningCoordinatorProgressBecomesStatus) {
  StartJob();
  Running("score-coordinator");
  progress_.progress.phase = "Running";
  progress_.progress.miniBatches = {10, 4, 1, 2, 1};
  progress_.progress.items = {100, 30, 5};
  progress_.progress.nodes = {2, 2};
  progress_.progress.progress = "4/10";
  progress_.progress.planned = true;
  progress_.progress.eta = "0:00:12";
  progress_.progress.lastProgressLine = "Processed 4 of 10 mini batches";
  auto result = Reconcile();
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  ASSERT_TRUE(result.requeue_after.has_value());
  EXPECT_LE(*result.requeue_after, milliseconds(2000));
  json s = Status();
  EXPECT_EQ(s["phase"], "Running");
  EXPECT_EQ(s["progress"], "4/10");
  EXPECT_EQ(s["miniBatches"]["completed"], 4);
  EXPECT_EQ(s["items"]["failed"], 5);
  EXPECT_EQ(s["nodes"], json({{"desired", 2}, {"ready", 2}}));
  EXPECT_EQ(s["eta"], "0:00:12");
  EXPECT_EQ(Condition("Running"), "True/Running");
  ASSERT_EQ(progress_.targets.size(), 1u);
  EXPECT_EQ(progress_.targets[0].host, "127.9.9.9");
  EXPECT_EQ(progress_.targets[0].server_name, "score-coordinator.ns.svc");
  EXPECT_EQ(progress_.targets[0].token.size(), 64u);
  EXPECT_THAT(progress_.targets[0].ca_pem, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_TRUE(events_.Has("Started"));

  // Rate-limited: a pass within the interval does not read again.
  Reconcile();
  EXPECT_EQ(progress_.targets.size(), 1u);
  clock_.Advance(milliseconds(2000));
  progress_.progress.miniBatches.completed = 5;
  Reconcile();
  EXPECT_EQ(progress_.targets.size(), 2u);
  EXPECT_EQ(Status()["progress"], "5/10");
}

TEST_F(ReconcilerTest, CoordinatorSummaryFinishesTheJobAndStopsWorkers) {
  StartJob();
  Running("score-coordinator");
  Running("score-worker-0");
  Terminate("score-worker-1", "worker", 0);
  progress_.progress.nodes = {2, 2};
  Reconcile();
  json summary = {{"phase", "Succeeded"},
                  {"reason", "Completed"},
                  {"message", "all done"},
                  {"miniBatches", {{"total", 10}, {"completed", 10}, {"failed", 0}}},
                  {"items", {{"total", 100}, {"succeeded", 100}, {"failed", 0}}},
                  {"progress", "10/10"},
                  {"planned", true},
                  {"completionTime", "2027-01-15T08:00:00.417Z"}};
  Terminate("score-coordinator", "coordinator", 0, summary.dump());
  Reconcile();
  json s = Status();
  EXPECT_EQ(s["phase"], "Succeeded");
  EXPECT_EQ(s["progress"], "10/10");
  EXPECT_EQ(s["items"]["succeeded"], 100);
  EXPECT_EQ(s["completionTime"], "2027-01-15T08:00:00Z");  // one precision everywhere
  EXPECT_EQ(s["reason"], "Completed");
  EXPECT_EQ(s["nodes"]["ready"], 2);  // the last count observed, not 0
  EXPECT_FALSE(s.contains("estimatedCompletionTime"));
  EXPECT_EQ(Condition("Complete"), "True/Completed");
  EXPECT_EQ(Condition("Running"), "False/Completed");
  EXPECT_TRUE(events_.Has("Succeeded"));
  // Finished: a worker still running gets 90 s to hear the end and exit by itself (its pod and
  // log are kept); the finished pods stay.
  Reconcile();
  EXPECT_TRUE(PodExists("score-worker-0"));
  clock_.Advance(milliseconds(89'000));
  Reconcile();
  EXPECT_TRUE(PodExists("score-worker-0"));
  clock_.Advance(milliseconds(2'000));
  Reconcile();  // past the grace: stopped
  EXPECT_FALSE(PodExists("score-worker-0"));
  EXPECT_TRUE(PodExists("score-worker-1"));
  EXPECT_TRUE(PodExists("score-coordinator"));
}

TEST_F(ReconcilerTest, WorkersThatExitAfterTheEndAreKeptForTheirLogs) {
  StartJob();
  Running("score-coordinator");
  Running("score-worker-0");
  Running("score-worker-1");
  json summary = {{"phase", "Failed"},
                  {"reason", "NoSucceededItems"},
                  {"message", "no mini-batch completed; most frequent error: ValueError: NaN"},
                  {"recentErrors",
                   {{{"error", "ValueError: NaN"},
                     {"location", "score.py:14"},
                     {"count", 3},
                     {"miniBatches", 3},
                     {"items", 6},
                     {"lastSeen", "2027-01-15T07:59:59Z"}}}}};
  Terminate("score-coordinator", "coordinator", 42, summary.dump());
  Reconcile();
  json s = Status();
  ASSERT_EQ(s["phase"], "Failed");
  EXPECT_EQ(s["recentErrors"], summary["recentErrors"]);
  EXPECT_THAT(s["message"].get<std::string>(), HasSubstr("ValueError: NaN"));
  auto waiting = Reconcile();
  ASSERT_TRUE(waiting.requeue_after.has_value());
  Terminate("score-worker-0", "worker", 0);
  Terminate("score-worker-1", "worker", 1);
  Reconcile();
  Reconcile();
  EXPECT_TRUE(PodExists("score-worker-0"));
  EXPECT_TRUE(PodExists("score-worker-1"));
  EXPECT_EQ(GetJob()["metadata"].value("finalizers", json::array()), json::array());
}

TEST_F(ReconcilerTest, FinishedJobLosesItsFinalizerOnceItsPodsStopped) {
  StartJob();
  Running("score-coordinator");
  Running("score-worker-0");
  Running("score-worker-1");
  json summary = {{"phase", "Succeeded"}, {"progress", "1/1"}};
  Terminate("score-coordinator", "coordinator", 0, summary.dump());
  Reconcile();
  ASSERT_EQ(Status()["phase"], "Succeeded");
  EXPECT_EQ(GetJob()["metadata"]["finalizers"], json::array({"parallelrun.io/finalizer"}));
  auto waiting = Reconcile();  // the workers may still exit by themselves: the finalizer stays
  EXPECT_TRUE(PodExists("score-worker-0"));
  ASSERT_TRUE(waiting.requeue_after.has_value());
  clock_.Advance(milliseconds(91'000));
  auto stopping = Reconcile();  // the workers are asked to stop: the finalizer stays meanwhile
  EXPECT_FALSE(PodExists("score-worker-0"));
  EXPECT_EQ(GetJob()["metadata"]["finalizers"], json::array({"parallelrun.io/finalizer"}));
  ASSERT_TRUE(stopping.requeue_after.has_value());
  Reconcile();  // every pod has stopped
  EXPECT_EQ(GetJob()["metadata"].value("finalizers", json::array()), json::array());
  Reconcile();  // and it is not added back
  EXPECT_EQ(GetJob()["metadata"].value("finalizers", json::array()), json::array());
  // Deleting it now needs no operator.
  ASSERT_TRUE(client_.Delete(kube::resources::kParallelRunJobs, "ns", "score").ok());
  EXPECT_TRUE(GetJob().is_null());
}

TEST_F(ReconcilerTest, FinalizerRemovalKeepsOtherFinalizers) {
  json job = Job(1);
  job["metadata"]["finalizers"] = json::array({"example.com/keep"});
  job["spec"]["arguments"] = json::array({"$(inputs.nope)"});  // fails at once: InvalidSpec
  CreateJob(job);
  Reconcile();  // adds ours
  EXPECT_EQ(GetJob()["metadata"]["finalizers"],
            json::array({"example.com/keep", "parallelrun.io/finalizer"}));
  Reconcile();  // Failed
  ASSERT_EQ(Status()["phase"], "Failed");
  Reconcile();  // no pods to wait for
  EXPECT_EQ(GetJob()["metadata"]["finalizers"], json::array({"example.com/keep"}));
}

TEST_F(ReconcilerTest, ThresholdFailureIsReportedWithItsReason) {
  StartJob();
  json summary = {{"phase", "Failed"},
                  {"reason", "ErrorThresholdExceeded"},
                  {"message", "6 items failed, errorThreshold is 5"},
                  {"progress", "3/10"}};
  Terminate("score-coordinator", "coordinator", 42, summary.dump());
  Reconcile();
  EXPECT_EQ(Status()["phase"], "Failed");
  EXPECT_EQ(Condition("Failed"), "True/ErrorThresholdExceeded");
  EXPECT_TRUE(events_.Has("ThresholdExceeded"));
}

TEST_F(ReconcilerTest, OutputInUseNamesTheJobThatOwnsTheFolder) {
  json other = Job();
  other["metadata"]["name"] = "older";
  auto owner = client_.Create(kube::resources::kParallelRunJobs, "ns", other);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  const std::string uid = (*owner)["metadata"]["uid"];
  StartJob();
  Running("score-coordinator");
  Reconcile();
  EXPECT_EQ(Status()["progress"], "planning");
  json summary = {{"phase", "Failed"},
                  {"reason", "OutputInUse"},
                  {"message", "the output folder /mnt/output belongs to another job (owner \"" +
                                  uid + "\", this job is \"x\"); nothing was changed in it."},
                  {"planned", false}};
  Terminate("score-coordinator", "coordinator", 1, summary.dump());
  Reconcile();
  EXPECT_EQ(Status()["reason"], "OutputInUse");
  const std::string message = Status()["message"];
  EXPECT_THAT(message, HasSubstr("the output folder \"out\" on volume \"data\" belongs to job "
                                 "ns/older (uid " +
                                 uid + ")"));
  EXPECT_THAT(message, HasSubstr("set spec.output.path to another folder"));
  EXPECT_THAT(message, HasSubstr("delete the folder \"out\""));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("/mnt/output")));
  EXPECT_EQ(Condition("Failed", "message"), "True/" + message);
  EXPECT_FALSE(Status().contains("progress"));  // ended before its plan: no "planning" left
}

TEST_F(ReconcilerTest, CrashedCoordinatorRestartsUpToBackoffLimit) {
  StartJob();
  for (int crash = 1; crash <= 2; ++crash) {
    Terminate("score-coordinator", "coordinator", 139);
    Reconcile();  // counts the crash and deletes the pod
    EXPECT_FALSE(PodExists("score-coordinator"));
    auto secret = client_.Get(kube::resources::kSecrets, "ns", "score-parallelrun");
    EXPECT_EQ((*secret)["metadata"]["annotations"][kCoordinatorCrashesAnnotation],
              std::to_string(crash));
    Reconcile();  // a new coordinator
    EXPECT_TRUE(PodExists("score-coordinator"));
  }
  EXPECT_TRUE(events_.Has("CoordinatorRestarted"));
  Terminate("score-coordinator", "coordinator", 139);
  Reconcile();
  EXPECT_EQ(Status()["phase"], "Failed");
  EXPECT_EQ(Condition("Failed"), "True/BackoffLimitExceeded");
}

TEST_F(ReconcilerTest, FailedWorkerIsReplacedAfterBackoff) {
  StartJob();
  Terminate("score-worker-1", "worker", 137);
  auto result = Reconcile();
  EXPECT_FALSE(PodExists("score-worker-1"));
  ASSERT_TRUE(result.requeue_after.has_value());
  Reconcile();  // still backing off
  EXPECT_FALSE(PodExists("score-worker-1"));
  clock_.Advance(milliseconds(2100));
  Reconcile();
  EXPECT_TRUE(PodExists("score-worker-1"));
  EXPECT_TRUE(events_.Has("WorkerPodReplaced"));
}

TEST_F(ReconcilerTest, DeletedWorkerPodIsRecreated) {
  StartJob();
  ASSERT_TRUE(client_.Delete(kube::resources::kPods, "ns", "score-worker-0").ok());
  Reconcile();
  EXPECT_TRUE(PodExists("score-worker-0"));
}

TEST_F(ReconcilerTest, UnschedulablePodsAreExplainedOnTheJob) {
  StartJob(1);
  SetPodStatus("score-coordinator",
               {{"phase", "Pending"},
                {"conditions",
                 {{{"type", "PodScheduled"},
                   {"status", "False"},
                   {"reason", "Unschedulable"},
                   {"message", "0/1 nodes are available: 1 node(s) were unschedulable."}}}}});
  Reconcile();
  EXPECT_EQ(Condition("Scheduled"), "False/Unschedulable");
  EXPECT_THAT(Condition("Scheduled", "message"), HasSubstr("were unschedulable"));
  EXPECT_EQ(Status()["phase"], "Pending");
}

TEST_F(ReconcilerTest, ImagePullAndMountProblemsAreExplained) {
  StartJob(1);
  SetPodStatus(
      "score-worker-0",
      {{"phase", "Pending"},
       {"containerStatuses",
        {{{"name", "worker"},
          {"state",
           {{"waiting", {{"reason", "ImagePullBackOff"}, {"message", "Back-off pulling"}}}}}}}}});
  Reconcile();
  EXPECT_EQ(Condition("Scheduled"), "False/ImagePullBackOff");
  SetPodStatus("score-worker-0", {{"containerStatuses",
                                   {{{"name", "worker"},
                                     {"state",
                                      {{"waiting",
                                        {{"reason", "ContainerCreating"},
                                         {"message",
                                          "MountVolume.SetUp failed for volume \"data\" : "
                                          "persistentvolumeclaim \"data\" not found"}}}}}}}}});
  Reconcile();
  EXPECT_EQ(Condition("Scheduled"), "False/FailedMount");
}

TEST_F(ReconcilerTest, SuspendDeletesPodsAndResumeRecreatesThem) {
  StartJob();
  ASSERT_TRUE(client_
                  .Patch(kube::resources::kParallelRunJobs, "ns", "score", kube::PatchType::kMerge,
                         {{"spec", {{"suspend", true}}}})
                  .ok());
  Reconcile();
  EXPECT_FALSE(PodExists("score-coordinator"));
  EXPECT_FALSE(PodExists("score-worker-0"));
  EXPECT_EQ(Status()["phase"], "Suspended");
  EXPECT_EQ(Condition("Suspended"), "True/Suspended");
  ASSERT_TRUE(client_
                  .Patch(kube::resources::kParallelRunJobs, "ns", "score", kube::PatchType::kMerge,
                         {{"spec", {{"suspend", false}}}})
                  .ok());
  Reconcile();
  EXPECT_TRUE(PodExists("score-coordinator"));
  EXPECT_TRUE(PodExists("score-worker-1"));
  EXPECT_EQ(Condition("Suspended"), "False/Resumed");
}

TEST_F(ReconcilerTest, ActiveDeadlineFailsTheJob) {
  json job = Job();
  job["spec"]["activeDeadlineSeconds"] = 60;
  CreateJob(job);
  Reconcile();
  auto first = Reconcile();
  ASSERT_TRUE(first.requeue_after.has_value());
  EXPECT_LE(*first.requeue_after, milliseconds(60'200));
  clock_.Advance(milliseconds(61'000));
  Reconcile();
  EXPECT_EQ(Status()["phase"], "Failed");
  EXPECT_EQ(Condition("Failed"), "True/DeadlineExceeded");
  EXPECT_FALSE(PodExists("score-coordinator"));
}

TEST_F(ReconcilerTest, DeletionWaitsForPodsThenReleasesTheFinalizer) {
  StartJob(1);
  Running("score-coordinator");
  ASSERT_TRUE(client_.Delete(kube::resources::kParallelRunJobs, "ns", "score").ok());
  auto result = Reconcile();  // the pods are asked to stop; the job stays
  EXPECT_TRUE(GetJob().is_object());
  EXPECT_FALSE(PodExists("score-worker-0"));
  // The fake deletes at once; with a kubelet the pod would linger until the coordinator exits.
  Reconcile();
  EXPECT_TRUE(GetJob().is_null());
}

TEST_F(ReconcilerTest, FinishedJobIsDeletedAfterItsTtl) {
  json job = Job(1);
  job["spec"]["ttlSecondsAfterFinished"] = 300;
  CreateJob(job);
  Reconcile();
  Reconcile();
  json summary = {{"phase", "Succeeded"}, {"progress", "1/1"}};
  Terminate("score-coordinator", "coordinator", 0, summary.dump());
  Reconcile();
  ASSERT_EQ(Status()["phase"], "Succeeded");
  Reconcile();  // the running worker may still exit by itself
  clock_.Advance(milliseconds(91'000));
  Reconcile();  // stops the running worker (the finalizer waits for it)
  auto wait = Reconcile();
  ASSERT_TRUE(wait.requeue_after.has_value());
  EXPECT_GT(*wait.requeue_after, milliseconds(200'000));
  clock_.Advance(milliseconds(210'000));
  Reconcile();  // deleted: the finalizer pass follows
  Reconcile();
  EXPECT_TRUE(GetJob().is_null());
}

TEST_F(ReconcilerTest, StatusConflictIsRetried) {
  CreateJob(Job(1));
  Reconcile();
  client_.InjectError("update", "parallelrunjobs/status",
                      rt::AbortedError("the object has been modified"));
  auto result = Reconcile();
  // A conflict is a requeue, not an error (parallelrun_reconcile_errors_total stays 0).
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();
  ASSERT_TRUE(result.requeue_after.has_value());
  EXPECT_TRUE(Reconcile().status.ok());
  EXPECT_EQ(Status()["phase"], "Pending");
}

TEST_F(ReconcilerTest, ProcessedMiniBatchesAreCountedOnceAsTheirStatusIsWritten) {
  StartJob();
  Running("score-coordinator");
  progress_.progress.miniBatches = {10, 4, 1, 2, 1};
  progress_.progress.planned = true;
  client_.InjectError("update", "parallelrunjobs/status",
                      rt::AbortedError("the object has been modified"));
  EXPECT_TRUE(Reconcile().status.ok());
  EXPECT_EQ(processed_, 0);  // not written: not counted
  clock_.Advance(milliseconds(2000));
  Reconcile();
  EXPECT_EQ(Status()["miniBatches"]["completed"], 4);
  EXPECT_EQ(processed_, 4);
  clock_.Advance(milliseconds(2000));
  Reconcile();  // the same count again: nothing new
  EXPECT_EQ(processed_, 4);
  progress_.progress.miniBatches.completed = 7;
  clock_.Advance(milliseconds(2000));
  Reconcile();
  EXPECT_EQ(processed_, 7);
  json summary = {{"phase", "Succeeded"},
                  {"reason", "Completed"},
                  {"miniBatches", {{"total", 10}, {"completed", 10}, {"failed", 1}}},
                  {"planned", true}};
  Terminate("score-coordinator", "coordinator", 0, summary.dump());
  Reconcile();
  EXPECT_EQ(Status()["phase"], "Succeeded");
  EXPECT_EQ(processed_, 10);  // every mini-batch once, failed ones included
  Reconcile();
  EXPECT_EQ(processed_, 10);
}

TEST_F(ReconcilerTest, TransitionEventIsRecordedOnceWhenItsStatusWriteConflicts) {
  StartJob();
  Running("score-coordinator");
  client_.InjectError("update", "parallelrunjobs/status",
                      rt::AbortedError("the object has been modified"));
  EXPECT_TRUE(Reconcile().status.ok());
  EXPECT_FALSE(events_.Has("Started"));  // not written: not announced
  EXPECT_TRUE(Reconcile().status.ok());
  Reconcile();
  int started = 0;
  for (const auto& e : events_.events) started += e.find(" Started:") != std::string::npos;
  EXPECT_EQ(started, 1);
  EXPECT_EQ(Status()["progress"], "planning");  // Running, the plan not read yet
}

TEST(CacheTransforms, SecretKeepsOnlyTokenAndCa) {
  json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"name", "s"}, {"managedFields", json::array({1})}}},
                 {"data", {{"token", "dA=="}, {"ca.crt", "Yw=="}, {"tls.key", "aw=="}}}};
  json trimmed = TrimSecretForCache(secret);
  EXPECT_EQ(trimmed["data"], json({{"token", "dA=="}, {"ca.crt", "Yw=="}}));
  EXPECT_FALSE(trimmed["metadata"].contains("managedFields"));
}

TEST(CacheTransforms, MetadataKeepsTheJobLabelAndTheCounters) {
  json object = {{"apiVersion", "v1"},
                 {"kind", "ConfigMap"},
                 {"metadata",
                  {{"name", "c"},
                   {"resourceVersion", "7"},
                   {"labels", {{"parallelrun.io/job", "j"}, {"team", "a"}}},
                   {"annotations", {{kCoordinatorCrashesAnnotation, "2"}, {"other", "x"}}},
                   {"ownerReferences", json::array({1})}}},
                 {"data", {{"spec.json", "{}"}}}};
  EXPECT_EQ(TrimMetadataOnly(object),
            json({{"apiVersion", "v1"},
                  {"kind", "ConfigMap"},
                  {"metadata",
                   {{"name", "c"},
                    {"resourceVersion", "7"},
                    {"labels", {{"parallelrun.io/job", "j"}}},
                    {"annotations", {{kCoordinatorCrashesAnnotation, "2"}}}}}}));
}

}  // namespace
}  // namespace parallelrun::op::reconciler
