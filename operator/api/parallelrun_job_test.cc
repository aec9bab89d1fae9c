#include "operator/api/parallelrun_job.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace parallelrun::op::api {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// 2026-11-23T11:05:08Z plus `seconds`.
rt::SystemTime At(int seconds) {
  return rt::SystemTime(std::chrono::seconds(1795431908 + seconds));
}

JobStatus FullStatus() {
  JobStatus s;
  s.observed_generation = 3;
  s.phase = kPhaseRunning;
  s.conditions.push_back({kConditionScheduled, kConditionTrue, "PodsScheduled", "all pods bound",
                          "2026-11-23T11:00:00Z", 3});
  s.start_time = "2026-11-23T11:00:00Z";
  s.completion_time = "2026-11-23T12:00:00Z";
  s.mini_batches = MiniBatchCounts{100, 40, 2, 8, 5};
  s.items = ItemCounts{1000, 380, 20};
  s.nodes = NodeCounts{4, 3};
  s.restarts = RestartCounts{1, 2};
  s.progress = "40/100";
  s.last_progress_line = "2026-11-23 11:05:00: 40/100 mini-batches";
  s.eta = "0:09:00";
  s.estimated_completion_time = "2026-11-23T11:14:08Z";
  s.reason = "Running";
  s.output = VolumeLocation{"data", "runs/7", "parallel_run_step.txt"};
  s.output_file = "/mnt/output/parallel_run_step.txt";
  s.logs = VolumeLocation{"data", "runs/7/logs", ""};
  s.message = "running on 3 of 4 nodes";
  return s;
}

json JobObject() {
  return json::parse(R"({
    "apiVersion": "parallelrun.io/v1alpha1",
    "kind": "ParallelRunJob",
    "metadata": {
      "name": "score-images", "namespace": "team-a", "uid": "u-1", "generation": 2,
      "resourceVersion": "417", "labels": {"app": "x"}, "annotations": {"a": "b"},
      "finalizers": ["parallelrun.io/finalizer"], "creationTimestamp": "2026-11-23T11:00:00Z",
      "ownerReferences": [{"kind": "Thing", "name": "o", "uid": "u-0"}],
      "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
      "selfLink": "/apis/x"
    },
    "spec": {
      "entryScript": "score.py",
      "sourceDirectory": {"path": "code"},
      "inputs": [{"name": "images", "type": "file", "source": {"path": "in"}}],
      "output": {"path": "out"},
      "nodeCount": 2
    },
    "status": {"phase": "Running", "observedGeneration": 2, "items": {"failed": 4}}
  })");
}

// ----- constants
// ----------------------------------------------------------------------------------

TEST(ApiNamesTest, MatchTheCrdAndTheSharedDecisions) {
  EXPECT_STREQ(kGroup, "parallelrun.io");
  EXPECT_STREQ(kVersion, "v1alpha1");
  EXPECT_EQ(std::string(kApiVersion), std::string(kGroup) + "/" + kVersion);
  EXPECT_EQ(std::string(kApiVersion), rt::kApiVersion);
  EXPECT_EQ(std::string(kKind), rt::kKind);
  EXPECT_STREQ(kPlural, "parallelrunjobs");
  EXPECT_STREQ(kJobLabel, "parallelrun.io/job");
  EXPECT_STREQ(kRoleLabel, "parallelrun.io/role");
  EXPECT_STREQ(kWorkerIndexLabel, "parallelrun.io/worker-index");
  EXPECT_STREQ(kFinalizer, "parallelrun.io/finalizer");
}

// ----- status JSON
// --------------------------------------------------------------------------------

TEST(JobStatusJsonTest, FullStatusUsesTheCrdFieldNames) {
  const json j = FullStatus();
  EXPECT_EQ(j, json::parse(R"({
    "observedGeneration": 3,
    "phase": "Running",
    "reason": "Running",
    "conditions": [{"type": "Scheduled", "status": "True", "reason": "PodsScheduled",
                    "message": "all pods bound", "lastTransitionTime": "2026-11-23T11:00:00Z",
                    "observedGeneration": 3}],
    "startTime": "2026-11-23T11:00:00Z",
    "completionTime": "2026-11-23T12:00:00Z",
    "miniBatches": {"total": 100, "completed": 40, "failed": 2, "running": 8, "retried": 5},
    "items": {"total": 1000, "succeeded": 380, "failed": 20},
    "nodes": {"desired": 4, "ready": 3},
    "restarts": {"coordinator": 1, "workers": 2},
    "progress": "40/100",
    "lastProgressLine": "2026-11-23 11:05:00: 40/100 mini-batches",
    "eta": "0:09:00",
    "estimatedCompletionTime": "2026-11-23T11:14:08Z",
    "output": {"volume": "data", "path": "runs/7", "file": "parallel_run_step.txt"},
    "outputFile": "/mnt/output/parallel_run_step.txt",
    "logs": {"volume": "data", "path": "runs/7/logs"},
    "message": "running on 3 of 4 nodes"
  })"));
}

TEST(JobStatusJsonTest, EmptyStatusIsAnEmptyObject) {
  EXPECT_EQ(json(JobStatus{}), json::object());
}

TEST(JobStatusJsonTest, OmitsEmptyStringsAndAbsentGroupsButWritesAPresentGroupWhole) {
  JobStatus s;
  s.phase = kPhasePending;
  s.nodes = NodeCounts{2, 0};
  Condition c;
  c.type = kConditionScheduled;
  c.status = kConditionFalse;
  s.conditions.push_back(c);
  EXPECT_EQ(json(s), json::parse(R"({"phase": "Pending",
                                     "conditions": [{"type": "Scheduled", "status": "False"}],
                                     "nodes": {"desired": 2, "ready": 0}})"));
}

TEST(JobStatusJsonTest, RoundTrips) {
  const JobStatus s = FullStatus();
  EXPECT_EQ(json(s).get<JobStatus>(), s);
  EXPECT_EQ(json(JobStatus{}).get<JobStatus>(), JobStatus{});
}

TEST(JobStatusJsonTest, FromJsonIgnoresWrongTypesAndUnknownFields) {
  const json j = json::parse(R"({
    "phase": 7,
    "observedGeneration": "3",
    "conditions": [{"type": "Running", "status": "True", "observedGeneration": 2.0},
                   "junk", {"status": "True"}, {"type": 5}],
    "miniBatches": {"total": "many", "completed": 4},
    "items": [1, 2],
    "nodes": {"desired": 2, "ready": 1.5},
    "eta": null,
    "somethingNew": {"x": 1}
  })");
  const JobStatus s = j.get<JobStatus>();
  EXPECT_EQ(s.phase, "");
  EXPECT_EQ(s.observed_generation, 0);
  ASSERT_EQ(s.conditions.size(), 1u);  // typeless and non-object entries are dropped
  EXPECT_EQ(s.conditions[0].type, "Running");
  EXPECT_EQ(s.conditions[0].status, "True");
  EXPECT_EQ(s.conditions[0].observed_generation, 2);
  ASSERT_TRUE(s.mini_batches.has_value());
  EXPECT_EQ(s.mini_batches->total, 0);
  EXPECT_EQ(s.mini_batches->completed, 4);
  EXPECT_FALSE(s.items.has_value());
  ASSERT_TRUE(s.nodes.has_value());
  EXPECT_EQ(s.nodes->desired, 2);
  EXPECT_EQ(s.nodes->ready, 0);
  EXPECT_EQ(s.eta, "");
}

TEST(JobStatusJsonTest, FromJsonOfANonObjectIsEmpty) {
  EXPECT_EQ(json("text").get<JobStatus>(), JobStatus{});
  EXPECT_EQ(json(nullptr).get<JobStatus>(), JobStatus{});
  EXPECT_EQ(json::array().get<JobStatus>(), JobStatus{});
}

TEST(JobStatusJsonTest, FromJsonIgnoresIntegersBeyondInt64) {
  const JobStatus s = json::parse(R"({"observedGeneration": 18446744073709551615,
                                      "items": {"total": 1e300, "failed": 9223372036854775807}})")
                          .get<JobStatus>();
  EXPECT_EQ(s.observed_generation, 0);
  ASSERT_TRUE(s.items.has_value());
  EXPECT_EQ(s.items->total, 0);
  EXPECT_EQ(s.items->failed, 9223372036854775807);
}

// ----- merge patch
// --------------------------------------------------------------------------------

TEST(StatusMergePatchTest, NoChangeIsAnEmptyPatch) {
  EXPECT_EQ(StatusMergePatch(FullStatus(), FullStatus()), json::object());
  EXPECT_EQ(StatusMergePatch(JobStatus{}, JobStatus{}), json::object());
}

TEST(StatusMergePatchTest, CarriesOnlyChangedFieldsAndCountsFieldByField) {
  JobStatus after = FullStatus();
  after.progress = "41/100";
  after.mini_batches->completed = 41;
  EXPECT_EQ(StatusMergePatch(FullStatus(), after),
            json::parse(R"({"status": {"progress": "41/100", "miniBatches": {"completed": 41}}})"));
}

TEST(StatusMergePatchTest, ClearsRemovedFieldsWithNull) {
  JobStatus after = FullStatus();
  after.eta.clear();
  after.nodes.reset();
  EXPECT_EQ(StatusMergePatch(FullStatus(), after),
            json::parse(R"({"status": {"eta": null, "nodes": null}})"));
}

TEST(StatusMergePatchTest, ReplacesConditionsAsAWhole) {
  JobStatus after = FullStatus();
  after.conditions.push_back({kConditionRunning, kConditionTrue, "Started", "", "t", 3});
  const json patch = StatusMergePatch(FullStatus(), after);
  EXPECT_EQ(patch["status"].size(), 1u);
  EXPECT_EQ(patch["status"]["conditions"], json(after.conditions));
}

TEST(StatusMergePatchTest, AppliedWithMergePatchGivesTheNewStatus) {
  JobStatus before = FullStatus();
  JobStatus after;
  after.phase = kPhaseSucceeded;
  after.items = ItemCounts{1000, 1000, 0};
  json object = {{"status", before}};
  object.merge_patch(StatusMergePatch(before, after));
  EXPECT_EQ(object["status"].get<JobStatus>(), after);
}

// ----- conditions
// ---------------------------------------------------------------------------------

TEST(ConditionTest, Rfc3339IsSecondPrecisionUtc) {
  EXPECT_EQ(Rfc3339(At(0)), "2026-11-23T11:05:08Z");
  EXPECT_EQ(Rfc3339(At(0) + std::chrono::milliseconds(999)), "2026-11-23T11:05:08Z");
}

TEST(ConditionTest, SetConditionAddsANewOneWithNowAsTransitionTime) {
  JobStatus s;
  EXPECT_TRUE(SetCondition(
      s, {kConditionScheduled, kConditionFalse, "Unschedulable", "no node", "ignored", 1}, At(0)));
  ASSERT_EQ(s.conditions.size(), 1u);
  EXPECT_EQ(s.conditions[0].last_transition_time, "2026-11-23T11:05:08Z");
  EXPECT_EQ(s.conditions[0].reason, "Unschedulable");
  EXPECT_EQ(s.conditions[0].observed_generation, 1);
}

TEST(ConditionTest, SameStatusKeepsTheTransitionTimeButTakesTheNewReason) {
  JobStatus s;
  SetCondition(s, {kConditionScheduled, kConditionFalse, "Unschedulable", "no node", "", 1}, At(0));
  EXPECT_TRUE(SetCondition(
      s, {kConditionScheduled, kConditionFalse, "FailedMount", "pvc missing", "", 2}, At(60)));
  ASSERT_EQ(s.conditions.size(), 1u);
  EXPECT_EQ(s.conditions[0].last_transition_time, "2026-11-23T11:05:08Z");
  EXPECT_EQ(s.conditions[0].reason, "FailedMount");
  EXPECT_EQ(s.conditions[0].message, "pvc missing");
  EXPECT_EQ(s.conditions[0].observed_generation, 2);
}

TEST(ConditionTest, StatusChangeMovesTheTransitionTime) {
  JobStatus s;
  SetCondition(s, {kConditionScheduled, kConditionFalse, "Unschedulable", "", "", 1}, At(0));
  EXPECT_TRUE(
      SetCondition(s, {kConditionScheduled, kConditionTrue, "Scheduled", "", "", 1}, At(90)));
  EXPECT_EQ(s.conditions[0].last_transition_time, "2026-11-23T11:06:38Z");
  EXPECT_EQ(s.conditions[0].status, "True");
}

TEST(ConditionTest, IdenticalConditionIsNoChange) {
  JobStatus s;
  const Condition c{kConditionRunning, kConditionTrue, "Started", "running", "", 1};
  SetCondition(s, c, At(0));
  EXPECT_FALSE(SetCondition(s, c, At(30)));
  EXPECT_EQ(s.conditions[0].last_transition_time, "2026-11-23T11:05:08Z");
}

TEST(ConditionTest, AStoredConditionWithoutTimeGetsOne) {
  JobStatus s;
  s.conditions.push_back({kConditionRunning, kConditionTrue, "Started", "", "", 0});
  EXPECT_TRUE(SetCondition(s, {kConditionRunning, kConditionTrue, "Started", "", "", 0}, At(5)));
  EXPECT_EQ(s.conditions[0].last_transition_time, "2026-11-23T11:05:13Z");
}

TEST(ConditionTest, OtherConditionsAreUntouchedAndOrderIsKept) {
  JobStatus s;
  SetCondition(s, {kConditionScheduled, kConditionTrue, "Scheduled", "", "", 1}, At(0));
  SetCondition(s, {kConditionRunning, kConditionTrue, "Started", "", "", 1}, At(1));
  SetCondition(s, {kConditionScheduled, kConditionTrue, "Scheduled", "again", "", 1}, At(2));
  ASSERT_EQ(s.conditions.size(), 2u);
  EXPECT_EQ(s.conditions[0].type, kConditionScheduled);
  EXPECT_EQ(s.conditions[0].message, "again");
  EXPECT_EQ(s.conditions[1].type, kConditionRunning);
  EXPECT_EQ(s.conditions[1].last_transition_time, "2026-11-23T11:05:09Z");
}

TEST(ConditionTest, FindConditionByType) {
  JobStatus s = FullStatus();
  ASSERT_NE(FindCondition(s, kConditionScheduled), nullptr);
  EXPECT_EQ(FindCondition(s, kConditionScheduled)->reason, "PodsScheduled");
  EXPECT_EQ(FindCondition(s, kConditionFailed), nullptr);
  FindCondition(s, kConditionScheduled)->message = "changed";
  const JobStatus& cs = s;
  EXPECT_EQ(FindCondition(cs, kConditionScheduled)->message, "changed");
}

TEST(ConditionTest, ClearConditionOnlyTurnsAnExistingTrueOneFalse) {
  JobStatus s;
  // Never had it: no False condition appears.
  EXPECT_FALSE(
      ClearCondition(s, {kConditionRunning, kConditionFalse, "Completed", "done", "", 1}, At(0)));
  EXPECT_TRUE(s.conditions.empty());
  SetCondition(s, {kConditionRunning, kConditionTrue, kReasonRunning, "running", "", 1}, At(0));
  EXPECT_TRUE(
      ClearCondition(s, {kConditionRunning, kConditionFalse, "Completed", "done", "", 2}, At(40)));
  ASSERT_EQ(s.conditions.size(), 1u);
  EXPECT_EQ(s.conditions[0], (Condition{kConditionRunning, kConditionFalse, "Completed", "done",
                                        Rfc3339(At(40)), 2}));
  // Already False: the first reason stays.
  EXPECT_FALSE(ClearCondition(
      s, {kConditionRunning, kConditionFalse, kReasonSuspended, "later", "", 3}, At(80)));
  EXPECT_EQ(s.conditions[0].reason, "Completed");
}

TEST(PhaseTest, OnlySucceededAndFailedAreTerminal) {
  EXPECT_TRUE(IsTerminalPhase(kPhaseSucceeded));
  EXPECT_TRUE(IsTerminalPhase(kPhaseFailed));
  for (const char* phase : {kPhasePending, kPhaseRunning, kPhaseSuspended, ""}) {
    EXPECT_FALSE(IsTerminalPhase(phase)) << phase;
  }
}

// ----- the resource
// -------------------------------------------------------------------------------

TEST(ParseParallelRunJobTest, ReadsIdentityMetadataSpecAndStatus) {
  auto job = ParseParallelRunJob(JobObject());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->name, "score-images");
  EXPECT_EQ(job->ns, "team-a");
  EXPECT_EQ(job->uid, "u-1");
  EXPECT_EQ(job->generation, 2);
  EXPECT_EQ(job->resource_version, "417");
  EXPECT_EQ(job->key(), "team-a/score-images");
  EXPECT_EQ(job->metadata["labels"], json({{"app", "x"}}));
  EXPECT_EQ(job->metadata["annotations"], json({{"a", "b"}}));
  EXPECT_EQ(job->metadata["creationTimestamp"], "2026-11-23T11:00:00Z");
  EXPECT_EQ(job->metadata["ownerReferences"][0]["uid"], "u-0");
  EXPECT_FALSE(job->metadata.contains("managedFields"));
  EXPECT_FALSE(job->metadata.contains("selfLink"));
  EXPECT_TRUE(job->has_finalizer(kFinalizer));
  EXPECT_FALSE(job->has_finalizer("other"));
  EXPECT_FALSE(job->being_deleted());
  EXPECT_EQ(job->raw_spec["nodeCount"], 2);
  EXPECT_EQ(job->status.phase, "Running");
  EXPECT_EQ(job->status.observed_generation, 2);
  ASSERT_TRUE(job->status.items.has_value());
  EXPECT_EQ(job->status.items->failed, 4);
}

TEST(ParseParallelRunJobTest, DeletionTimestampMeansBeingDeleted) {
  json object = JobObject();
  object["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z";
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->being_deleted());
}

TEST(ParseParallelRunJobTest, NeverFailsOnSpecOrStatusProblems) {
  json object = JobObject();
  object["spec"] = {{"nodeCont", 3}};
  object["status"] = "garbage";
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->raw_spec, json({{"nodeCont", 3}}));
  EXPECT_EQ(job->status, JobStatus{});

  object.erase("spec");
  job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->raw_spec.is_null());
}

TEST(ParseParallelRunJobTest, NeedsAnObjectWithAName) {
  EXPECT_EQ(ParseParallelRunJob(json::array()).status().code(), rt::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseParallelRunJob(json::object()).status().code(), rt::StatusCode::kInvalidArgument);
  json object = JobObject();
  object["metadata"]["name"] = 5;
  EXPECT_THAT(ParseParallelRunJob(object).status().message(), HasSubstr("metadata.name"));
}

TEST(ParseParallelRunJobTest, FinalizersInTheirOrderWithoutNonStrings) {
  json object = JobObject();
  object["metadata"]["finalizers"] = json::array({"example.com/keep", 7, kFinalizer});
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  EXPECT_THAT(job->finalizers(), ElementsAre("example.com/keep", kFinalizer));
  object["metadata"].erase("finalizers");
  EXPECT_TRUE(ParseParallelRunJob(object)->finalizers().empty());
}

TEST(ParseParallelRunJobTest, TtlIsReadFromAnInvalidSpecToo) {
  json object = JobObject();
  EXPECT_EQ(ParseParallelRunJob(object)->ttl_seconds_after_finished(), std::nullopt);
  object["spec"] = {{"nodeCont", 3}, {"ttlSecondsAfterFinished", 300}};
  EXPECT_EQ(ParseParallelRunJob(object)->ttl_seconds_after_finished(), 300);
  object["spec"]["ttlSecondsAfterFinished"] = "300";
  EXPECT_EQ(ParseParallelRunJob(object)->ttl_seconds_after_finished(), std::nullopt);
}

TEST(ParallelRunJobJsonTest, ACachedObjectIsWrittenBackAsItWasReadWithItsNewStatus) {
  json object = JobObject();
  object["status"] = FullStatus();  // as the operator writes it
  const json cached = TrimForCache(object);
  auto job = ParseParallelRunJob(cached);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(json(*job).dump(), cached.dump());
  job->status.phase = kPhaseFailed;
  job->status.items.reset();
  json expected = cached;
  expected["status"]["phase"] = "Failed";
  expected["status"].erase("items");
  EXPECT_EQ(json(*job).dump(), expected.dump());
}

TEST(ParallelRunJobJsonTest, IdentityComesFromTheStruct) {
  ParallelRunJob job;
  job.name = "j";
  job.ns = "ns";
  job.resource_version = "9";
  EXPECT_EQ(json(job), json::parse(R"({"apiVersion": "parallelrun.io/v1alpha1",
                                       "kind": "ParallelRunJob",
                                       "metadata": {"name": "j", "namespace": "ns",
                                                    "resourceVersion": "9"},
                                       "status": {}})"));
}

TEST(ParseParallelRunJobTest, ClusterScopedKeyIsTheName) {
  json object = JobObject();
  object["metadata"].erase("namespace");
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->key(), "score-images");
}

TEST(ParseSpecTest, ValidSpecParsesWithTheJobIdentity) {
  auto job = ParseParallelRunJob(JobObject());
  ASSERT_TRUE(job.ok());
  auto spec = ParseSpec(*job);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "score-images");
  EXPECT_EQ(spec->namespace_, "team-a");
  EXPECT_EQ(spec->uid, "u-1");
  EXPECT_EQ(spec->node_count, 2);
  EXPECT_EQ(spec->mini_batch_size, 10);  // the model's type-dependent default
  // Only the identity travels into the spec (it ends up in the spec ConfigMap).
  EXPECT_FALSE(spec->metadata.contains("labels"));
  EXPECT_FALSE(spec->metadata.contains("managedFields"));
}

TEST(ParseSpecTest, ErrorsCarrySpecPathsAndAreAllReported) {
  json object = JobObject();
  object["spec"]["nodeCont"] = 3;
  object["spec"]["runMaxTry"] = 0;
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  std::vector<rt::FieldError> errors;
  auto spec = ParseSpec(*job, &errors);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), rt::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), StartsWith("ParallelRunJob team-a/score-images: 2 errors"));
  ASSERT_EQ(errors.size(), 2u);
  std::vector<std::string> paths;
  for (const auto& e : errors) paths.push_back(e.path);
  EXPECT_THAT(paths, ::testing::UnorderedElementsAre("spec.nodeCont", "spec.runMaxTry"));
  EXPECT_THAT(spec.status().message(), HasSubstr("did you mean nodeCount?"));
}

TEST(ParseSpecTest, MissingSpecIsAnError) {
  json object = JobObject();
  object.erase("spec");
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  std::vector<rt::FieldError> errors;
  ASSERT_FALSE(ParseSpec(*job, &errors).ok());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "spec");
}

TEST(ParseSpecTest, TheNameRuleOfTheModelApplies) {
  json object = JobObject();
  object["metadata"]["name"] = "a-name-that-is-far-too-long-for-a-job";  // 37 > 32 characters
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  std::vector<rt::FieldError> errors;
  ASSERT_FALSE(ParseSpec(*job, &errors).ok());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "metadata.name");
}

TEST(ParseSpecTest, ServerDefaultedSpecRoundTripsThroughToJson) {
  auto job = ParseParallelRunJob(JobObject());
  ASSERT_TRUE(job.ok());
  auto spec = ParseSpec(*job);
  ASSERT_TRUE(spec.ok());
  ParallelRunJob again = *job;
  again.raw_spec = rt::ToJson(*spec)["spec"];
  auto reparsed = ParseSpec(again);
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().ToString();
  EXPECT_EQ(rt::ToJson(*reparsed), rt::ToJson(*spec));
}

// ----- cache trimming
// -----------------------------------------------------------------------------

TEST(TrimForCacheTest, KeepsWhatTheOperatorReads) {
  json object = JobObject();
  object["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z";
  object["extra"] = 1;
  const json trimmed = TrimForCache(object);
  json expected_metadata = object["metadata"];
  expected_metadata.erase("managedFields");
  expected_metadata.erase("selfLink");
  EXPECT_EQ(trimmed, json({{"apiVersion", object["apiVersion"]},
                           {"kind", object["kind"]},
                           {"metadata", expected_metadata},
                           {"spec", object["spec"]},
                           {"status", object["status"]}}));
}

TEST(TrimForCacheTest, DropsKubectlsLastAppliedCopy) {
  json object = JobObject();
  object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
      object.dump();
  const json trimmed = TrimForCache(object);
  EXPECT_EQ(trimmed["metadata"]["annotations"], json({{"a", "b"}}));
  auto job = ParseParallelRunJob(object);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->metadata["annotations"], json({{"a", "b"}}));
}

TEST(TrimForCacheTest, ToleratesMissingPartsAndNonObjects) {
  EXPECT_EQ(TrimForCache(json::object()), json::object());
  EXPECT_EQ(TrimForCache(json("x")), json("x"));
  EXPECT_EQ(TrimForCache(json({{"metadata", "odd"}})), json({{"metadata", json::object()}}));
  EXPECT_EQ(TrimPodForCache(json::object()), json::object());
  EXPECT_EQ(TrimPodForCache(json(3)), json(3));
}

TEST(TrimPodForCacheTest, KeepsIdentityNodeNameAndStatusEssentials) {
  const json pod = json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "j-worker-0", "namespace": "ns", "uid": "p1", "resourceVersion": "9",
                 "labels": {"parallelrun.io/job": "j"}, "annotations": {"big": "x"},
                 "ownerReferences": [{"uid": "u"}], "creationTimestamp": "t0",
                 "deletionTimestamp": "t1", "managedFields": [{}], "generateName": "g"},
    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}],
             "volumes": [{"name": "v"}]},
    "status": {
      "phase": "Failed", "reason": "Evicted", "message": "low memory", "podIP": "127.0.0.5",
      "hostIP": "127.0.0.1", "qosClass": "BestEffort",
      "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes", "lastProbeTime": null,
                      "lastTransitionTime": "t2"}],
      "containerStatuses": [{"name": "c", "ready": false, "restartCount": 1,
                             "state": {"terminated": {"exitCode": 42, "message": "{\"phase\":1}"}},
                             "lastState": {"terminated": {"exitCode": 137}},
                             "image": "i", "imageID": "sha", "containerID": "x://1",
                             "started": false}]
    }
  })");
  EXPECT_EQ(TrimPodForCache(pod), json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "j-worker-0", "namespace": "ns", "uid": "p1", "resourceVersion": "9",
                 "labels": {"parallelrun.io/job": "j"}, "deletionTimestamp": "t1"},
    "spec": {"nodeName": "n1"},
    "status": {
      "phase": "Failed", "podIP": "127.0.0.5",
      "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes"}],
      "containerStatuses": [{"name": "c",
                             "state": {"terminated": {"exitCode": 42, "message": "{\"phase\":1}"}}}]
    }
  })"));
}

TEST(TrimPodForCacheTest, DropsConditionsThatSayNothingWrongAndOtherLabels) {
  const json pod = json::parse(R"({"metadata": {"name": "p", "labels": {"parallelrun.io/job": "j",
                                   "parallelrun.io/role": "worker", "team": "a"}},
                                   "status": {"phase": "Running", "conditions": [
                                     {"type": "PodScheduled", "status": "True"},
                                     {"type": "Ready", "status": "True"}]}})");
  EXPECT_EQ(TrimPodForCache(pod), json::parse(R"({
    "metadata": {"name": "p", "labels": {"parallelrun.io/job": "j",
                                         "parallelrun.io/role": "worker"}},
    "status": {"phase": "Running"}})"));
}

TEST(TrimPodForCacheTest, UnscheduledPodHasNoSpec) {
  const json pod = json::parse(R"({"metadata": {"name": "p"}, "spec": {"containers": []},
                                   "status": {"phase": "Pending"}})");
  EXPECT_EQ(TrimPodForCache(pod),
            json::parse(R"({"metadata": {"name": "p"}, "status": {"phase": "Pending"}})"));
}

}  // namespace
}  // namespace parallelrun::op::api
