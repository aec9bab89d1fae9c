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

json Report(bool planned) {
  json p = json::parse(R"({"miniBatches": {"total": 10, "completed": 3, "failed": 1,
                          "running": 4, "retried": 2},
                          "items": {"total": 100, "succeeded": 25, "failed": 5},
                          "nodes": {"desired": 2, "ready": 2}, "progress": "3/10",
                          "eta": "", "estimatedCompletionTime": "",
                          "outputFile": "/mnt/output/rows.txt", "logs": "/mnt/output/logs"})");
  p["planned"] = planned;
  return p;
}

TEST(JobStatusTest, TimesHaveSecondPrecisionAndUnknownOnesAreLeftOut) {
  EXPECT_EQ(SecondsPrecision("2026-11-23T11:05:08.417Z"), "2026-11-23T11:05:08Z");
  EXPECT_EQ(SecondsPrecision("2026-11-23T11:05:08Z"), "2026-11-23T11:05:08Z");
  EXPECT_EQ(SecondsPrecision(""), "");
  EXPECT_EQ(SecondsPrecision("soon"), "");
  json status = {{"estimatedCompletionTime", "2026-11-23T11:05:08Z"}};
  SetTime(status, "estimatedCompletionTime", "");
  EXPECT_FALSE(status.contains("estimatedCompletionTime"));
  SetTime(status, "completionTime", "2026-11-23T11:05:08.5Z");
  EXPECT_EQ(status["completionTime"], "2026-11-23T11:05:08Z");
}

TEST(JobStatusTest, ProgressSaysPlanningUntilThePlanIsKnownThenCountsFromZero) {
  json status = json::object();
  ApplyProgress(Report(false), Spec(), false, status);
  EXPECT_EQ(status["progress"], "planning");
  json zero = Report(true);
  zero["miniBatches"]["completed"] = 0;
  ApplyProgress(zero, Spec(), false, status);
  EXPECT_EQ(status["progress"], "0/10");
  EXPECT_FALSE(status.contains("eta"));  // "" is unknown: left out
  EXPECT_FALSE(status.contains("estimatedCompletionTime"));
}

TEST(JobStatusTest, LocationsAreVolumeAndPathBesideTheInPodFile) {
  json status = json::object();
  ApplyProgress(Report(true), Spec(), false, status);
  EXPECT_EQ(status["output"], json::parse(R"({"volume": "data", "path": "runs/7",
                                               "file": "rows.txt"})"));
  EXPECT_EQ(status["logs"], json::parse(R"({"volume": "data", "path": "runs/7/logs"})"));
  EXPECT_EQ(status["outputFile"], "/mnt/output/rows.txt");
}

TEST(JobStatusTest, NodesReadyKeepsTheLastObservedCountAfterTheEnd) {
  json status = json::object();
  ApplyProgress(Report(true), Spec(), false, status);
  EXPECT_EQ(status["nodes"], json::parse(R"({"desired": 2, "ready": 2})"));
  json summary = Report(true);
  summary["nodes"]["ready"] = 0;
  ApplyProgress(summary, Spec(), true, status);
  EXPECT_EQ(status["nodes"]["ready"], 2);
  EXPECT_EQ(status["miniBatches"]["running"], 0);
}

TEST(JobStatusTest, NodesReadyAfterAQuickJobIsTheCoordinatorsLastCount) {
  json status = json::object();  // ended before the operator read any progress
  json summary = Report(true);
  summary["nodes"]["ready"] = 1;
  ApplyProgress(summary, Spec(), true, status);
  EXPECT_EQ(status["nodes"], json::parse(R"({"desired": 2, "ready": 1})"));
}

TEST(JobStatusTest, ReasonFollowsPhaseAndConditions) {
  json status = {
      {"phase", "Failed"},
      {"conditions",
       {{{"type", "Failed"}, {"status", "True"}, {"reason", "ErrorThresholdExceeded"}}}}};
  SetReason(status);
  EXPECT_EQ(status["reason"], "ErrorThresholdExceeded");
  status = {
      {"phase", "Pending"},
      {"conditions", {{{"type", "Scheduled"}, {"status", "False"}, {"reason", "Unschedulable"}}}}};
  SetReason(status);
  EXPECT_EQ(status["reason"], "Unschedulable");
  status = {{"phase", "Running"}, {"reason", "Unschedulable"}};
  SetReason(status);
  EXPECT_FALSE(status.contains("reason"));
  status = {{"phase", "Succeeded"}};
  SetReason(status);
  EXPECT_EQ(status["reason"], "Completed");
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
