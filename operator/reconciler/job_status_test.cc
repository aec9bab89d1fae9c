#include "operator/reconciler/job_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace parallelrun::op::reconciler {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

rt::JobSpec Spec() {
  rt::JobSpec spec;
  spec.node_count = 2;
  spec.process_count_per_node = 2;
  spec.output = {"data", "runs/7/"};
  spec.append_row_file_name = "rows.txt";
  return spec;
}

// A progress answer as the coordinator sends it (all fields, as protocol::Progress writes them).
CoordinatorReport Report(bool planned) {
  json p = json::parse(R"({"miniBatches": {"total": 10, "completed": 3, "failed": 1,
                          "running": 4, "retried": 2},
                          "items": {"total": 100, "succeeded": 25, "failed": 5},
                          "nodes": {"desired": 2, "ready": 2}, "progress": "3/10",
                          "eta": "", "estimatedCompletionTime": "",
                          "outputFile": "/mnt/output/rows.txt", "logs": "/mnt/output/logs"})");
  p["planned"] = planned;
  return CoordinatorReport{p.get<rt::protocol::Progress>()};
}

// The status as it goes on the wire.
json Wire(const api::JobStatus& status) { return status; }

TEST(JobStatusTest, TimesHaveSecondPrecisionAndUnknownOnesAreLeftOut) {
  EXPECT_EQ(SecondsPrecision("2026-11-23T11:05:08.417Z"), "2026-11-23T11:05:08Z");
  EXPECT_EQ(SecondsPrecision("2026-11-23T11:05:08Z"), "2026-11-23T11:05:08Z");
  EXPECT_EQ(SecondsPrecision(""), "");
  EXPECT_EQ(SecondsPrecision("soon"), "");
  // rt::ParseRfc3339 reads offsets too: the status holds UTC.
  EXPECT_EQ(SecondsPrecision("2026-11-23T12:05:08+01:00"), "2026-11-23T11:05:08Z");
  api::JobStatus status;
  status.estimated_completion_time = "2026-11-23T11:05:08Z";
  CoordinatorReport report = Report(true);
  report.progress.estimatedCompletionTime = "";
  ApplyProgress(report, Spec(), false, status);
  EXPECT_FALSE(Wire(status).contains("estimatedCompletionTime"));
  report.progress.estimatedCompletionTime = "2026-11-23T11:05:08.5Z";
  ApplyProgress(report, Spec(), false, status);
  EXPECT_EQ(Wire(status)["estimatedCompletionTime"], "2026-11-23T11:05:08Z");
}

TEST(JobStatusTest, ProgressSaysPlanningUntilThePlanIsKnownThenCountsFromZero) {
  api::JobStatus status;
  ApplyProgress(Report(false), Spec(), false, status);
  EXPECT_EQ(Wire(status)["progress"], "planning");
  CoordinatorReport zero = Report(true);
  zero.progress.miniBatches.completed = 0;
  ApplyProgress(zero, Spec(), false, status);
  EXPECT_EQ(Wire(status)["progress"], "0/10");
  EXPECT_FALSE(Wire(status).contains("eta"));  // "" is unknown: left out
  EXPECT_FALSE(Wire(status).contains("estimatedCompletionTime"));
}

TEST(JobStatusTest, LocationsAreVolumeAndPathBesideTheInPodFile) {
  api::JobStatus status;
  ApplyProgress(Report(true), Spec(), false, status);
  EXPECT_EQ(Wire(status)["output"], json::parse(R"({"volume": "data", "path": "runs/7",
                                                     "file": "rows.txt"})"));
  EXPECT_EQ(Wire(status)["logs"], json::parse(R"({"volume": "data", "path": "runs/7/logs"})"));
  EXPECT_EQ(Wire(status)["outputFile"], "/mnt/output/rows.txt");
}

TEST(JobStatusTest, NodesReadyKeepsTheLastObservedCountAfterTheEnd) {
  api::JobStatus status;
  ApplyProgress(Report(true), Spec(), false, status);
  EXPECT_EQ(Wire(status)["nodes"], json::parse(R"({"desired": 2, "ready": 2})"));
  CoordinatorReport summary = Report(true);
  summary.progress.nodes.ready = 0;
  ApplyProgress(summary, Spec(), true, status);
  EXPECT_EQ(Wire(status)["nodes"]["ready"], 2);
  EXPECT_EQ(Wire(status)["miniBatches"]["running"], 0);
}

TEST(JobStatusTest, NodesReadyAfterAQuickJobIsTheCoordinatorsLastCount) {
  api::JobStatus status;  // ended before the operator read any progress
  CoordinatorReport summary = Report(true);
  summary.progress.nodes.ready = 1;
  ApplyProgress(summary, Spec(), true, status);
  EXPECT_EQ(Wire(status)["nodes"], json::parse(R"({"desired": 2, "ready": 1})"));
}

TEST(JobStatusTest, ASummaryWithoutCountGroupsKeepsTheLastOnes) {
  api::JobStatus status;
  ApplyProgress(Report(true), Spec(), false, status);
  auto summary = ParseSummary(R"({"phase": "Failed", "reason": "OutputInUse", "planned": false})");
  ASSERT_TRUE(summary.has_value());
  EXPECT_FALSE(summary->has_mini_batches);
  EXPECT_FALSE(summary->has_items);
  ApplyProgress(*summary, Spec(), true, status);
  EXPECT_EQ(Wire(status)["miniBatches"], json::parse(R"({"total": 10, "completed": 3,
                                                          "failed": 1, "running": 0,
                                                          "retried": 2})"));
  EXPECT_EQ(Wire(status)["items"]["succeeded"], 25);
  EXPECT_FALSE(ParseSummary("not json").has_value());
  EXPECT_FALSE(ParseSummary("[1]").has_value());
}

TEST(JobStatusTest, RecentErrorsAreTheCoordinatorsAndAnEmptyListKeepsThem) {
  api::JobStatus status;
  CoordinatorReport report = Report(true);
  report.progress.recentErrors.push_back(
      {"ValueError: NaN", "score.py:14", 3, 3, 6, "2027-01-15T07:59:59.348Z"});
  ApplyProgress(report, Spec(), false, status);
  EXPECT_EQ(Wire(status)["recentErrors"], json::parse(R"([{"error": "ValueError: NaN",
      "location": "score.py:14", "count": 3, "miniBatches": 3, "items": 6,
      "lastSeen": "2027-01-15T07:59:59Z"}])"));       // the coordinator's milliseconds dropped
  ApplyProgress(Report(true), Spec(), true, status);  // a restarted coordinator has none yet
  EXPECT_EQ(status.recent_errors.size(), 1u);
}

TEST(JobStatusTest, ReasonFollowsPhaseAndConditions) {
  api::JobStatus status;
  status.phase = api::kPhaseFailed;
  status.conditions = {{"Failed", "True", "ErrorThresholdExceeded", "", "", 0}};
  SetReason(status);
  EXPECT_EQ(Wire(status)["reason"], "ErrorThresholdExceeded");
  status = {};
  status.phase = api::kPhasePending;
  status.conditions = {{"Scheduled", "False", "Unschedulable", "", "", 0}};
  SetReason(status);
  EXPECT_EQ(Wire(status)["reason"], "Unschedulable");
  status = {};
  status.phase = api::kPhaseRunning;
  status.reason = "Unschedulable";
  SetReason(status);
  EXPECT_FALSE(Wire(status).contains("reason"));
  status = {};
  status.phase = api::kPhaseSucceeded;
  SetReason(status);
  EXPECT_EQ(Wire(status)["reason"], "Completed");
  status.phase = api::kPhaseFailed;  // no Failed condition
  SetReason(status);
  EXPECT_EQ(Wire(status)["reason"], "Failed");
}

TEST(JobStatusTest, OutputInUseNamesTheOwnerTheVolumeThePathAndTheWaysOut) {
  const std::string coordinator =
      "the output folder /mnt/output belongs to another job (owner \"b7feb4e0-1\", this job is "
      "\"c1\"); nothing was changed in it.";
  EXPECT_EQ(OwnerUidOf(coordinator), "b7feb4e0-1");
  EXPECT_EQ(OwnerUidOf("held by pid 7"), "");
  const std::string named = OutputInUseMessage(Spec(), "team-a/old", "b7feb4e0-1");
  EXPECT_THAT(named, HasSubstr("job team-a/old"));
  EXPECT_THAT(named, HasSubstr("\"runs/7\" on volume \"data\""));
  EXPECT_THAT(named, HasSubstr("spec.output.path to another folder"));
  EXPECT_THAT(named, HasSubstr("delete the folder \"runs/7\""));
  EXPECT_THAT(named, Not(HasSubstr("/mnt/output")));
  EXPECT_THAT(OutputInUseMessage(Spec(), "", "b7feb4e0-1"),
              HasSubstr("a deleted job (uid b7feb4e0-1)"));
}

}  // namespace
}  // namespace parallelrun::op::reconciler
