#include "runtime/coordinator/coordinator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/coordinator/coordinator_testing.h"
#include "runtime/logs/report_csv.h"

namespace parallelrun::rt {
namespace {

TEST_F(CoordinatorTest, AllDoneSucceedsAndAssemblesPartsInMiniBatchOrder) {
  MakeFiles(5);  // 3 mini-batches: 2 + 2 + 1 files
  Start();
  Register();
  WaitPlanned();
  LeaseResponse resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 3u);
  const Lease& l0 = resp.leases[0];
  EXPECT_EQ(l0.mini_batch_id, 0);
  EXPECT_EQ(l0.attempt, 1);
  EXPECT_EQ(l0.input_name, "images");
  EXPECT_EQ(l0.input_type, "file");
  EXPECT_THAT(l0.files, ElementsAre(in_ + "/f000.jpg", in_ + "/f001.jpg"));
  EXPECT_EQ(l0.items, 2);
  EXPECT_EQ(l0.part_file, out_ + "/.parallelrun/parts/0.1");
  EXPECT_EQ(resp.leases[2].items, 1);

  // Reported out of order: the output is still in mini-batch order.
  ResultsResponse rr = Report({Done(resp.leases[2]), Done(resp.leases[0])});
  EXPECT_EQ(rr.accepted.size(), 2u);
  EXPECT_FALSE(rr.stop);
  EXPECT_FALSE(rr.done);
  // The report that ends the job says done: its agent need not ask again to hear it.
  ResultsResponse last = Report({Done(resp.leases[1])});
  EXPECT_TRUE(last.done);
  EXPECT_FALSE(last.stop);
  EXPECT_EQ(coord_->Wait(), 0);

  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\nrow 1 attempt 1\nrow 2 attempt 1\n");
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            "2,1,1,127.0.0.1,process000,2026-11-23T11:05:08.000Z,1,1,0,0.500,0.000,0.000,"
            "RUN_DONE,,");
  std::string result = Read("logs/job_result.txt");
  EXPECT_THAT(result, StartsWith("Succeeded\nexit_code: 0\nreason: Completed\n"));
  EXPECT_THAT(result, HasSubstr("mini_batches_total: 3\n"));
  EXPECT_THAT(result, HasSubstr("items_succeeded: 5\n"));
  EXPECT_THAT(result, HasSubstr("output_file: " + out_ + "/parallel_run_step.txt\n"));
  auto json = nlohmann::json::parse(Read(".parallelrun/result.json"));
  EXPECT_EQ(json["exit_code"], 0);
  EXPECT_EQ(json["succeeded"], true);
  EXPECT_EQ(Read(".parallelrun/owner"), "owner-1\n");
  EXPECT_FALSE(PathExists(out_ + "/.parallelrun/parts"));
  EXPECT_TRUE(PathExists(out_ + "/logs/readme.txt"));
  EXPECT_TRUE(PathExists(out_ + "/logs/sys/master_role.1.txt"));
  std::string overview = Read("logs/job_progress_overview.2026112311.txt");
  EXPECT_THAT(overview, HasSubstr("2026-11-23 11:05:08 UTC: Scheduling started"));
  EXPECT_THAT(overview, HasSubstr("Scheduling finished: 3 mini batches, 5 items"));
  EXPECT_THAT(overview, HasSubstr("Processed 3 of 3 mini batches in 0:00:00"));
  EXPECT_THAT(overview, HasSubstr("Succeeded: 3 mini-batches processed"));
  EXPECT_EQ(Echoed().size(), Lines(overview).size());

  // After the end agents are told they are done.
  LeaseResponse after = LeaseWork(10);
  EXPECT_TRUE(after.done);
  EXPECT_FALSE(after.stop);
  EXPECT_TRUE(after.leases.empty());
}

TEST_F(CoordinatorTest, RegisterAnswersEverythingAnAgentNeeds) {
  MakeFiles(1);
  spec_.run_invocation_timeout = 20;
  Start();
  HttpResponse r = Post("/v1/register", protocol::RegisterRequest{"127.0.0.1", 7, {}});
  ASSERT_EQ(r.status, 200);
  auto reg = r.body.get<protocol::RegisterResponse>();
  EXPECT_EQ(reg.spec["metadata"]["name"], "score");
  EXPECT_EQ(reg.code_dir, root_ + "/code");
  EXPECT_EQ(reg.input_dirs.at("images"), in_);
  EXPECT_EQ(reg.output_dir, out_);
  EXPECT_EQ(reg.log_dir, out_ + "/logs");
  EXPECT_EQ(reg.parts_dir, out_ + "/.parallelrun/parts");
  EXPECT_THAT(reg.arguments, ElementsAre("--out", out_));
  EXPECT_EQ(reg.lease_seconds, 50);
}

TEST_F(CoordinatorTest, RetriedMiniBatchCountsOnceWithTheSucceedingAttemptAccepted) {
  MakeFiles(2);  // one mini-batch
  Start();
  Register();
  WaitPlanned();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto resp = LeaseWork(10);
    ASSERT_EQ(resp.leases.size(), 1u);
    EXPECT_EQ(resp.leases[0].attempt, attempt);
    EXPECT_EQ(resp.leases[0].part_file, out_ + "/.parallelrun/parts/0." + std::to_string(attempt));
    Report({Failed(resp.leases[0])});
    EXPECT_EQ(coord_->GetProgress().miniBatches.retried, 1);  // mini-batches, not tries
  }
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 1u);
  EXPECT_EQ(resp.leases[0].attempt, 3);
  Report({Done(resp.leases[0])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 3\n");
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows[0], StartsWith("0,1,0,127.0.0.1,process001,"));
  EXPECT_THAT(rows[0], HasSubstr("RUN_EXCEPTION,\"ValueError: bad input, really\",\"Traceback"));
  EXPECT_THAT(rows[1], StartsWith("0,2,0,"));
  EXPECT_THAT(rows[2], StartsWith("0,3,1,"));
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.retried, 1);
  EXPECT_EQ(p.miniBatches.failed, 0);
  EXPECT_EQ(p.items.succeeded, 2);
  auto errors = Lines(Read("logs/user/error.txt"));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0], HasSubstr("node=127.0.0.1 process=process001 mini_batch=0 attempt=1 "
                                   "status=RUN_EXCEPTION error=ValueError: bad input, really"));
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_retried: 1\n"));
}

// A retry first, then new mini-batches: records that are not back to back in the plan, read
// apart, and each lease carries its own mini-batch's files.
TEST_F(CoordinatorTest, LeaseOfARetryAndNewMiniBatchesCarriesEachOnesFiles) {
  MakeFiles(7);  // 4 mini-batches: 2 + 2 + 2 + 1 files
  Start();
  Register();
  WaitPlanned();
  LeaseResponse first = LeaseWork(2);
  ASSERT_EQ(first.leases.size(), 2u);
  Report({Done(first.leases[0]), Failed(first.leases[1])});
  LeaseResponse resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 3u);
  EXPECT_EQ(resp.leases[0].mini_batch_id, 1);
  EXPECT_EQ(resp.leases[0].attempt, 2);
  EXPECT_THAT(resp.leases[0].files, ElementsAre(in_ + "/f002.jpg", in_ + "/f003.jpg"));
  EXPECT_EQ(resp.leases[1].mini_batch_id, 2);
  EXPECT_THAT(resp.leases[1].files, ElementsAre(in_ + "/f004.jpg", in_ + "/f005.jpg"));
  EXPECT_EQ(resp.leases[2].mini_batch_id, 3);
  EXPECT_THAT(resp.leases[2].files, ElementsAre(in_ + "/f006.jpg"));
  EXPECT_EQ(resp.leases[2].items, 1);
  EXPECT_EQ(resp.leases[2].file_sizes.size(), 1u);
}

TEST_F(CoordinatorTest, MiniBatchThatAlwaysFailsFailsAfterRunMaxTry) {
  MakeFiles(4);  // two mini-batches; the second always fails
  spec_.run_max_try = 2;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 2u);
  Report({Done(resp.leases[0]), Failed(resp.leases[1], "RUN_TIMEOUT")});
  resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 1u);
  EXPECT_EQ(resp.leases[0].mini_batch_id, 1);
  EXPECT_EQ(resp.leases[0].attempt, 2);
  Report({Failed(resp.leases[0], "WORKER_DIED")});
  // allowedFailedPercent defaults to 100 and errorThreshold to -1: the job still succeeds.
  EXPECT_EQ(coord_->Wait(), 0);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Succeeded");
  EXPECT_EQ(p.miniBatches.failed, 1);
  EXPECT_EQ(p.miniBatches.completed, 2);
  EXPECT_EQ(p.items.failed, 2);
  EXPECT_EQ(p.items.succeeded, 2);
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows[2], StartsWith("1,2,1,"));  // the last try of a failed mini-batch counts
  EXPECT_THAT(rows[2], HasSubstr("WORKER_DIED"));
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\n");
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("look_first: logs/user/error.txt"));
}

TEST_F(CoordinatorTest, ErrorThresholdExceededStopsAtOnceCancelsAndStillAssembles) {
  MakeFiles(8);  // four mini-batches of 2 items
  spec_.error_threshold = 2;
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 4u);
  Report({Done(resp.leases[0])});
  AttemptResult bad = Failed(resp.leases[1]);
  bad.detail = "Traceback (most recent call last):\n  File \"" + root_ +
               "/code/score.py\", line 7, in run\nValueError: bad input, really\n";
  ResultsResponse rr = Report({bad, Done(resp.leases[2], /*succeeded=*/1)});
  EXPECT_TRUE(rr.stop);  // 3 failed items > 2
  EXPECT_FALSE(rr.done);
  LeaseResponse after = LeaseWork(10, {LeaseRef{3, 1}});
  EXPECT_TRUE(after.stop);
  EXPECT_TRUE(after.leases.empty());
  ASSERT_EQ(after.cancel.size(), 1u);
  EXPECT_EQ(after.cancel[0].mini_batch_id, 3);
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "ErrorThresholdExceeded");
  EXPECT_THAT(p.message, HasSubstr("3 failed items exceed errorThreshold 2"));
  // The error digest: the user's error, where in the code, and how far it reached.
  const std::string top =
      "most frequent error: ValueError: bad input, really at score.py:7 (1 failed attempt, 1 "
      "mini-batch, 2 items)";
  EXPECT_THAT(p.message, HasSubstr(top));
  ASSERT_EQ(p.recentErrors.size(), 1u);
  EXPECT_EQ(p.recentErrors[0].location, "score.py:7");
  EXPECT_EQ(p.mostFrequentError.items, 2);
  EXPECT_THAT(Read("logs/job_result.txt"),
              HasSubstr("\nmost_frequent_error: ValueError: bad input, really at score.py:7 ("));
  EXPECT_EQ(p.exitCode, 42);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\nrow 2 attempt 1\n");
  EXPECT_THAT(Read("logs/job_result.txt"), StartsWith("Failed: ErrorThresholdExceeded\n"));
  // A result that arrives after the end changes nothing.
  rr = Report({Done(resp.leases[3])});
  EXPECT_TRUE(rr.stop);
  EXPECT_TRUE(rr.accepted.empty());
}

TEST_F(CoordinatorTest, AllowedFailedCountStopsTheJobWhenExceeded) {
  MakeFiles(6);
  spec_.allowed_failed_count = 0;
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1);
  Report({Failed(resp.leases[0])});
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "ErrorThresholdExceeded");
  EXPECT_THAT(p.message, HasSubstr("1 failed mini-batches exceed allowedFailedCount 0"));
}

TEST_F(CoordinatorTest, AllowedFailedPercentIsCheckedAtTheEnd) {
  MakeFiles(6);  // three mini-batches, one fails: 33.3% > 30%
  spec_.allowed_failed_percent = 30;
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 3u);
  ResultsResponse rr = Report({Failed(resp.leases[0])});
  EXPECT_FALSE(rr.stop);  // not before the end
  Report({Done(resp.leases[1]), Done(resp.leases[2])});
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "AllowedFailedPercentExceeded");
  EXPECT_THAT(p.message, HasSubstr("1 of 3 mini-batches failed (33.3%)"));
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 1 attempt 1\nrow 2 attempt 1\n");
}

TEST_F(CoordinatorTest, NoSucceededItemFailsWhenErrorThresholdIsSet) {
  MakeFiles(3);
  spec_.error_threshold = 100;  // not exceeded: the failure is that nothing succeeded
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  std::vector<AttemptResult> results;
  for (const auto& l : resp.leases) results.push_back(Done(l, /*succeeded=*/0));
  Report(results);
  EXPECT_EQ(coord_->Wait(), 42);
  EXPECT_EQ(coord_->GetProgress().reason, "NoSucceededItems");
  EXPECT_THAT(Read("logs/job_result.txt"), StartsWith("Failed: NoSucceededItems\n"));
}

TEST_F(CoordinatorTest, EveryMiniBatchCompletedSucceedsWithoutRowsUnderErrorThresholdMinusOne) {
  MakeFiles(3);  // errorThreshold -1 (the default): training scripts return [] (Azure ML's rule)
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  std::vector<AttemptResult> results;
  for (const auto& l : resp.leases) results.push_back(Done(l, /*succeeded=*/0));
  Report(results);
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(coord_->GetProgress().reason, "Completed");
  EXPECT_THAT(Read("logs/job_result.txt"), StartsWith("Succeeded\n"));
}

TEST_F(CoordinatorTest, NoMiniBatchCompletedFailsUnderErrorThresholdMinusOne) {
  MakeFiles(3);
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  std::vector<AttemptResult> results;
  for (const auto& l : resp.leases) results.push_back(Failed(l));
  Report(results);
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "NoSucceededItems");
  EXPECT_THAT(p.message, HasSubstr("no mini-batch completed"));
}

TEST_F(CoordinatorTest, EmptyInputFailsWithNoSucceededItemsNamingTheFolder) {
  spec_.inputs[0].pattern = "*.png";
  MakeFiles(2);  // *.jpg only
  Start();
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "NoSucceededItems");
  EXPECT_THAT(p.message,
              HasSubstr("input \"images\" (" + in_ + ") has no files matching \"*.png\""));
  EXPECT_TRUE(p.planned);
  EXPECT_EQ(p.miniBatches.total, 0);
  EXPECT_FALSE(PathExists(out_ + "/parallel_run_step.txt"));
}

TEST_F(CoordinatorTest, MissingInputFolderExitsOneNamingTheInput) {
  paths_.inputs["images"] = root_ + "/nowhere";
  Start();
  EXPECT_EQ(coord_->Wait(), 1);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "InvalidInput");
  EXPECT_THAT(p.message, HasSubstr("spec.inputs[0].source"));
  EXPECT_THAT(p.message, HasSubstr(root_ + "/nowhere"));
  std::string result = Read("logs/job_result.txt");
  EXPECT_THAT(result, StartsWith("Failed: InvalidInput\nexit_code: 1\n"));
  EXPECT_THAT(result, HasSubstr(root_ + "/nowhere"));
  EXPECT_THAT(Read("logs/job_progress_overview.2026112311.txt"), HasSubstr(root_ + "/nowhere"));
  // Not finished: once the folder exists the same job runs.
  EXPECT_FALSE(PathExists(out_ + "/.parallelrun/result.json"));
  coord_.reset();
  paths_.inputs["images"] = in_;
  MakeFiles(1);
  Start();
  RunAllDone();
  EXPECT_EQ(coord_->Wait(), 0);
}

TEST_F(CoordinatorTest, OutputOwnedByAnotherJobFailsAndTouchesNothing) {
  MakeFiles(1);
  std::filesystem::create_directories(out_ + "/.parallelrun");
  ASSERT_TRUE(WriteFileAtomic(out_ + "/.parallelrun/owner", "someone-else\n").ok());
  auto before = std::distance(std::filesystem::recursive_directory_iterator(out_),
                              std::filesystem::recursive_directory_iterator());
  Start();
  EXPECT_EQ(coord_->Wait(), 1);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "OutputInUse");
  EXPECT_THAT(p.message, HasSubstr("someone-else"));
  EXPECT_EQ(p.exitCode, 1);
  auto after = std::distance(std::filesystem::recursive_directory_iterator(out_),
                             std::filesystem::recursive_directory_iterator());
  EXPECT_EQ(before, after);
  EXPECT_FALSE(PathExists(out_ + "/logs"));
  ASSERT_EQ(Echoed().size(), 1u);
  EXPECT_THAT(Echoed()[0], HasSubstr("Failed: OutputInUse"));
  EXPECT_EQ(p.lastProgressLine, Echoed()[0]);
  // An agent that registers hears that there is nothing to do (and writes nothing here).
  auto reg = client_->Register(protocol::RegisterRequest{"127.0.0.1", 42, {}});
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_TRUE(reg->ended);
  LeaseResponse l = LeaseWork(5);
  EXPECT_TRUE(l.stop);
}

// Regression (issue 12): two runs of one job on one output folder ran at once and lost rows.
TEST_F(CoordinatorTest, SecondCoordinatorOnARunningOutputIsRefusedUntouched) {
  MakeFiles(3);
  Start();
  WaitPlanned();
  auto before = std::distance(std::filesystem::recursive_directory_iterator(out_),
                              std::filesystem::recursive_directory_iterator());
  auto second = Coordinator::Create(Options());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ((*second)->Wait(), 1);
  auto p = (*second)->GetProgress();
  EXPECT_EQ(p.reason, "OutputInUse");
  EXPECT_THAT(p.message, HasSubstr("is in use by another run (pid " + std::to_string(::getpid())));
  auto after = std::distance(std::filesystem::recursive_directory_iterator(out_),
                             std::filesystem::recursive_directory_iterator());
  EXPECT_EQ(before, after);
  // The first one runs on.
  Register();
  EXPECT_FALSE(LeaseWork(5).leases.empty());
}

TEST_F(CoordinatorTest, OutputFolderDeletedWhileRunningEndsTheJobAsOutputLost) {
  MakeFiles(3);
  Start();
  WaitPlanned();
  std::filesystem::remove_all(out_);
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "OutputLost");
  EXPECT_THAT(p.message, HasSubstr(out_ + " was deleted or replaced"));
  EXPECT_TRUE(PathExists(out_ + "/logs/job_result.txt"));  // says why
  EXPECT_FALSE(PathExists(out_ + "/.parallelrun/result.json"));
}

TEST_F(CoordinatorTest, FinishedOutputReportsTheSameResultWithoutRunningAgain) {
  MakeFiles(3);
  spec_.error_threshold = 0;
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  Report({Failed(resp.leases[0])});
  ASSERT_EQ(coord_->Wait(), 42);
  std::string result = Read("logs/job_result.txt");
  coord_.reset();

  Start();
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "ErrorThresholdExceeded");
  EXPECT_EQ(p.items.failed, 2);
  EXPECT_EQ(Read("logs/job_result.txt"), result);
  EXPECT_FALSE(PathExists(out_ + "/logs/sys/master_role.2.txt"));
  EXPECT_THAT(Echoed().back(), HasSubstr("already finished"));
  EXPECT_EQ(p.lastProgressLine, Echoed().back());
  LeaseResponse l = LeaseWork(5);
  EXPECT_TRUE(l.done);
  EXPECT_TRUE(l.leases.empty());
}

TEST_F(CoordinatorTest, ExpiredLeaseIsRequeuedWithoutCountingATry) {
  MakeFiles(2);
  spec_.run_invocation_timeout = 10;  // lease 40 s
  spec_.run_max_try = 1;              // a lost lease is no try: the retry may still succeed
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1);
  ASSERT_EQ(resp.leases.size(), 1u);
  clock_.Advance(std::chrono::seconds(30));
  LeaseResponse renewed = LeaseWork(0, {LeaseRef{0, 1}});
  EXPECT_TRUE(renewed.cancel.empty());
  clock_.Advance(std::chrono::seconds(30));  // 60 s after the lease, 30 after the renewal
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 1);
  clock_.Advance(std::chrono::seconds(15));
  ASSERT_TRUE(WaitFor([&] { return coord_->GetProgress().miniBatches.running == 0; }));
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.retried, 0);
  EXPECT_EQ(p.miniBatches.failed, 0);
  // The expired attempt is fenced: the agent is told to cancel it.
  LeaseResponse again = LeaseWork(1, {LeaseRef{0, 1}}, "127.0.0.2");
  ASSERT_EQ(again.cancel.size(), 1u);
  ASSERT_EQ(again.leases.size(), 1u);
  EXPECT_EQ(again.leases[0].attempt, 2);
  Report({Done(again.leases[0])}, {}, "127.0.0.2");
  EXPECT_EQ(coord_->Wait(), 0);
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0], StartsWith("0,1,0,127.0.0.1,,,2,0,0,"));
  EXPECT_THAT(rows[0], HasSubstr("LEASE_EXPIRED"));
  EXPECT_THAT(rows[0], HasSubstr("not counted as a try"));
  EXPECT_THAT(rows[1], StartsWith("0,2,1,127.0.0.2,"));
}

TEST_F(CoordinatorTest, LateDuplicateResultIsRecordedButNeverAcceptedTwice) {
  MakeFiles(2);
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1);
  AttemptResult done = Done(resp.leases[0]);
  ResultsResponse first = Report({done});
  ResultsResponse second = Report({done});  // the agent resent after a lost answer
  EXPECT_EQ(first.accepted.size(), 1u);
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(coord_->GetProgress().items.succeeded, 2);
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 1u);  // the resend came after the end: ignored
  EXPECT_TRUE(second.stop);
}

TEST_F(CoordinatorTest, DuplicateWhileRunningIsNotAcceptedTwice) {
  MakeFiles(4);
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1);
  AttemptResult done = Done(resp.leases[0]);
  Report({done});
  ResultsResponse again = Report({done});
  EXPECT_EQ(again.accepted.size(), 1u);  // acknowledged ...
  EXPECT_TRUE(again.refused.empty());
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.items.succeeded, 2);  // ... but counted once
  EXPECT_EQ(p.miniBatches.completed, 1);
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0], StartsWith("0,1,1,"));
}

TEST_F(CoordinatorTest, InitFailedWhenEveryNodeGaveUpWithTheTraceback) {
  MakeFiles(2);
  spec_.node_count = 2;
  Start();
  Register("127.0.0.1");
  Register("127.0.0.2");
  WorkerEvent init;
  init.process = "process000";
  init.kind = "INIT_FAILED";
  init.error = "ModuleNotFoundError: No module named 'torch'";
  init.detail =
      "Traceback (most recent call last):\n  File \"score.py\", line 1\n"
      "ModuleNotFoundError: No module named 'torch'";
  WorkerEvent gave_up;
  gave_up.kind = "NODE_GAVE_UP";
  ResultsResponse rr = Report({}, {init, gave_up}, "127.0.0.1");
  EXPECT_FALSE(rr.stop);  // one node of two
  rr = Report({}, {init, gave_up}, "127.0.0.2");
  EXPECT_TRUE(rr.stop);
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "InitFailed");
  EXPECT_THAT(p.message, HasSubstr("No module named 'torch'"));
  std::string result = Read("logs/job_result.txt");
  EXPECT_THAT(result, StartsWith("Failed: InitFailed\n"));
  EXPECT_THAT(result, HasSubstr("traceback:\n  Traceback (most recent call last):\n"));
  EXPECT_THAT(Read("logs/user/error.txt"), HasSubstr("status=INIT_FAILED"));
}

TEST_F(CoordinatorTest, NoProgressFailsNamingWhatRanWhere) {
  MakeFiles(2);
  spec_.progress_update_timeout = 100;
  spec_.run_invocation_timeout = 1000;  // leases outlive the timeout
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1);
  ASSERT_EQ(resp.leases.size(), 1u);
  clock_.Advance(std::chrono::seconds(60));
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& l : Echoed()) {
      if (l.find("Warning: no mini batch completed") != std::string::npos) return true;
    }
    return false;
  }));
  clock_.Advance(std::chrono::seconds(50));
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "NoProgress");
  EXPECT_THAT(p.message, HasSubstr("mini-batch 0 (attempt 1) on 127.0.0.1"));
}

TEST_F(CoordinatorTest, MalformedRequestsAreRejectedWithAReason) {
  MakeFiles(2);
  Start();
  WaitPlanned();
  struct Case {
    std::string method, path;
    nlohmann::json body;
    int status;
    std::string reason;
  } cases[] = {
      {"POST", "/v1/nothing", nlohmann::json::object(), 404, "unknown path /v1/nothing"},
      {"GET", "/v1/lease", nullptr, 405, "use POST"},
      {"POST", "/v1/progress", nlohmann::json::object(), 405, "use GET"},
      {"POST", "/v1/lease", nlohmann::json::array(), 400, "expected a JSON object"},
      {"POST", "/v1/lease", {{"node", 5}}, 400, "body of POST /v1/lease"},
      {"POST", "/v1/lease", {{"max", 1}}, 400, "node: required"},
      {"POST", "/v1/lease", {{"node", "n"}, {"max", -1}}, 400, "max: got -1"},
      {"POST", "/v1/register", {{"node", ""}}, 400, "node: required"},
      {"POST",
       "/v1/results",
       {{"node", "n"}, {"results", {{{"mini_batch_id", 0}, {"attempt", 1}, {"status", "OK"}}}}},
       400,
       "results[0].status: got \"OK\""},
      {"POST",
       "/v1/results",
       {{"node", "n"},
        {"results", {{{"mini_batch_id", 99}, {"attempt", 1}, {"status", "RUN_DONE"}}}}},
       400,
       "results[0].mini_batch_id: got 99"},
      {"POST",
       "/v1/results",
       {{"node", "n"},
        {"results", {{{"mini_batch_id", 0}, {"attempt", 0}, {"status", "RUN_DONE"}}}}},
       400,
       "results[0].attempt: got 0"},
      {"POST", "/v1/results", {{"node", "n"}, {"results", "x"}}, 400, "body of POST /v1/results"},
  };
  for (const auto& c : cases) {
    HttpResponse r =
        protocol::HandleCoordinatorRequest(*coord_, HttpRequest{c.method, c.path, c.body});
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.dump();
    EXPECT_THAT(r.body.value("error", ""), HasSubstr(c.reason)) << c.body.dump();
  }
  // Nothing of a rejected request was applied.
  EXPECT_EQ(coord_->GetProgress().miniBatches.completed, 0);
  EXPECT_EQ(ReportRows().size(), 0u);
}

TEST_F(CoordinatorTest, AppendRowHeaderComesFromTheFirstPartThatHasOne) {
  MakeFiles(4);
  spec_.append_row_header = true;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 2u);
  for (const auto& l : resp.leases) std::ofstream(l.part_file + ".header") << "name score\n";
  Report({Done(resp.leases[0]), Done(resp.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "name score\nrow 0 attempt 1\nrow 1 attempt 1\n");
}

TEST_F(CoordinatorTest, SummaryOnlyHandsOutNoPartFileAndWritesNoOutput) {
  MakeFiles(2);
  spec_.output_action = OutputAction::kSummaryOnly;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 1u);
  EXPECT_EQ(resp.leases[0].part_file, "");
  Report({Done(resp.leases[0])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_FALSE(PathExists(out_ + "/parallel_run_step.txt"));
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("output_file: none\n"));
  EXPECT_EQ(coord_->GetProgress().outputFile, "");
}

TEST_F(CoordinatorTest, ProgressReportsPhaseCountsNodesAndEta) {
  MakeFiles(8);  // 4 mini-batches
  spec_.node_count = 2;
  Start();
  WaitPlanned();
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Pending");
  EXPECT_EQ(p.startTime, "2026-11-23T11:05:08.000Z");
  EXPECT_EQ(p.miniBatches.total, 4);
  EXPECT_EQ(p.items.total, 8);
  EXPECT_EQ(p.nodes.desired, 2);
  EXPECT_EQ(p.nodes.ready, 0);
  EXPECT_EQ(p.progress, "0/4");
  EXPECT_EQ(p.outputFile, out_ + "/parallel_run_step.txt");
  EXPECT_EQ(p.logs, out_ + "/logs");
  EXPECT_EQ(p.exitCode, -1);
  EXPECT_TRUE(p.planned);

  Register("127.0.0.1");
  Register("127.0.0.2");  // never heard from again
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  clock_.Advance(std::chrono::seconds(10));
  Report({Done(resp.leases[0])});
  // The agent renews its two running leases (90 s each) like a real one.
  const std::vector<LeaseRef> running = {{1, 1}, {2, 1}};
  clock_.Advance(std::chrono::seconds(70));
  EXPECT_TRUE(LeaseWork(0, running).cancel.empty());
  clock_.Advance(std::chrono::seconds(70));
  EXPECT_TRUE(LeaseWork(0, running).cancel.empty());
  clock_.Advance(std::chrono::seconds(10));  // t = 160 s
  p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Running");
  EXPECT_EQ(p.nodes.ready, 1);  // 127.0.0.2 was last seen 160 s ago, more than a lease period
  EXPECT_EQ(p.miniBatches.completed, 1);
  // Two leases on one node of processCountPerNode 1: one runs, one waits next in its queue.
  EXPECT_EQ(p.miniBatches.running, 1);
  EXPECT_EQ(p.items.succeeded, 2);
  EXPECT_EQ(p.progress, "1/4");
  EXPECT_EQ(p.eta, "0:08:00");  // 160 s per mini-batch so far, 3 to go
  EXPECT_EQ(p.estimatedCompletionTime, "2026-11-23T11:15:48.000Z");  // t + 8 min
  ASSERT_TRUE(WaitFor([&] {
    const std::string line = coord_->GetProgress().lastProgressLine;
    return line.find("Processed 1 of 4 mini batches in 0:0") != std::string::npos &&
           line.find(", estimated ") != std::string::npos;
  }));
}

TEST_F(CoordinatorTest, TabularLeasesCarryTheFileAndByteRange) {
  spec_.inputs[0].type = InputType::kTabular;
  spec_.inputs[0].format = TabularFormat::kCsv;
  spec_.mini_batch_size = 1 << 20;
  std::ofstream(in_ + "/t.csv") << "a,b\n1,2\n3,4\n";
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 1u);
  const Lease& l = resp.leases[0];
  EXPECT_EQ(l.input_type, "tabular");
  EXPECT_EQ(l.file, in_ + "/t.csv");
  EXPECT_EQ(l.format, "csv");
  EXPECT_TRUE(l.header);
  EXPECT_EQ(l.header_end, 4);
  EXPECT_EQ(l.begin, 4);
  EXPECT_EQ(l.end, 12);
  EXPECT_EQ(l.items, 2);
}

TEST_F(CoordinatorTest, StopReturns130AndARestartResumesWithoutRerunningCompletedWork) {
  MakeFiles(6);  // three mini-batches
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  Report({Done(resp.leases[0]), Failed(resp.leases[1])});  // 2 is still running
  coord_->Stop();
  EXPECT_EQ(coord_->Wait(), 130);
  EXPECT_EQ(coord_->GetProgress().exitCode, 130);
  EXPECT_TRUE(LeaseWork(1).stop);
  EXPECT_FALSE(PathExists(out_ + "/.parallelrun/result.json"));
  coord_.reset();

  Start();
  EXPECT_TRUE(coord_->GetProgress().planned);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.completed, 1);
  EXPECT_EQ(p.miniBatches.retried, 1);
  // The agent comes back without mini-batch 2 (a new agent): it is given back at once.
  Register();
  auto again = LeaseWork(10);
  ASSERT_EQ(again.leases.size(), 2u);
  std::sort(again.leases.begin(), again.leases.end(),
            [](const Lease& a, const Lease& b) { return a.mini_batch_id < b.mini_batch_id; });
  EXPECT_EQ(again.leases[0].mini_batch_id, 1);
  EXPECT_EQ(again.leases[0].attempt, 2);
  EXPECT_EQ(again.leases[1].mini_batch_id, 2);
  EXPECT_EQ(again.leases[1].attempt, 2);  // attempt 1 was handed out before the restart
  Report({Done(again.leases[0]), Done(again.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\nrow 1 attempt 2\nrow 2 attempt 2\n");
  EXPECT_TRUE(PathExists(out_ + "/logs/sys/master_role.2.txt"));
  EXPECT_THAT(Read("logs/job_progress_overview.2026112311.txt"),
              HasSubstr("resuming job score: 1 of 3 mini batches already processed"));
  EXPECT_EQ(ReportRows().size(), 4u);
}

TEST_F(CoordinatorTest, RestartRebuildsReportRowsACrashCutOffAfterTheJournalWrite) {
  MakeFiles(6);  // three mini-batches
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  Report({Done(resp.leases[0])});
  Report({Failed(resp.leases[1]), Done(resp.leases[2])});
  coord_->Stop();
  EXPECT_EQ(coord_->Wait(), 130);
  coord_.reset();
  // As if the coordinator had been killed between the journal write of the second request and
  // its report write, and in the middle of the row before: one row whole, one torn, one gone.
  const std::string report = out_ + "/logs/sys/job_report/processed_mini-batches.csv";
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);
  const std::string kept = std::string(kReportCsvHeader) + "\n" + rows[0] + "\n";
  ASSERT_TRUE(WriteFileAtomic(report, kept + rows[1].substr(0, 20)).ok());

  Start();
  rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows[0], StartsWith("0,1,1,127.0.0.1,process000,"));
  EXPECT_THAT(rows[1], StartsWith("1,1,0,127.0.0.1,process001,,2,0,2,"));
  EXPECT_THAT(rows[1], HasSubstr("RUN_EXCEPTION,\"ValueError: bad input, really\",row rebuilt"));
  EXPECT_THAT(rows[2], StartsWith("2,1,1,127.0.0.1,process000,2026-11-23T11:05:08.000Z,2,2,0,"
                                  "0.500,"));
  EXPECT_THAT(rows[2], HasSubstr("RUN_DONE,,row rebuilt from the journal"));
  Register();
  auto again = LeaseWork(10);
  ASSERT_EQ(again.leases.size(), 1u);
  Report({Done(again.leases[0])});
  EXPECT_EQ(coord_->Wait(), 0);
  rows = ReportRows();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_THAT(rows[3], StartsWith("1,2,1,"));
}

TEST_F(CoordinatorTest, ReportThatDisagreesWithTheJournalIsLeftAsItIs) {
  MakeFiles(4);
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(2);
  ASSERT_EQ(resp.leases.size(), 2u);
  Report({Done(resp.leases[0]), Done(resp.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  coord_.reset();
  const std::string report = out_ + "/logs/sys/job_report/processed_mini-batches.csv";
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 2u);
  // A row someone edited: the journal's record before the missing one does not match it.
  std::string edited = "7" + rows[0].substr(1);
  ASSERT_TRUE(WriteFileAtomic(report, std::string(kReportCsvHeader) + "\n" + edited + "\n").ok());
  Start();
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(ReportRows().size(), 1u);
}

TEST_F(CoordinatorTest, ReleasedLeasesAreQueuedAgainAtOnceWithoutAFailedTry) {
  MakeFiles(6);  // three mini-batches
  spec_.run_max_try = 1;
  // Enough workers that every lease held here counts as running (at most P per node).
  spec_.process_count_per_node = 4;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  // Another node cannot give back what is not its own.
  protocol::ResultsRequest other;
  other.node = "127.0.0.9";
  other.released = {{1, 1}};
  ASSERT_EQ(Post("/v1/results", other).status, 200);
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 3);
  // The agent stops: mini-batch 0 finished, 1 and 2 were queued there and never ran.
  protocol::ResultsRequest req;
  req.node = "127.0.0.1";
  req.results = {Done(resp.leases[0])};
  req.released = {{1, 1}, {2, 1}};
  HttpResponse r = Post("/v1/results", req);
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body.get<ResultsResponse>().accepted.size(), 1u);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.running, 0);
  EXPECT_EQ(p.miniBatches.retried, 0);
  // Another agent gets them at once, long before their leases would have expired.
  auto again = LeaseWork(10, {}, "127.0.0.2");
  ASSERT_EQ(again.leases.size(), 2u);
  for (const auto& l : again.leases) EXPECT_EQ(l.attempt, 2);
  Report({Done(again.leases[0]), Done(again.leases[1])}, {}, "127.0.0.2");
  EXPECT_EQ(coord_->Wait(), 0);  // runMaxTry 1: a give-back is no failed try
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 3u);  // nothing for the released attempts: they never ran
  for (const auto& row : rows) EXPECT_THAT(row, HasSubstr("RUN_DONE"));
  std::string journal = Read(".parallelrun/journal");
  EXPECT_THAT(journal, HasSubstr("{\"t\":\"released\",\"mb\":1,\"a\":1,\"node\":\"127.0.0.1\"}"));
  EXPECT_THAT(journal, HasSubstr("{\"t\":\"released\",\"mb\":2,\"a\":1,\"node\":\"127.0.0.1\"}"));
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_retried: 0\n"));
}

TEST_F(CoordinatorTest, ReleaseOfAnUnplannedMiniBatchIsRejected) {
  MakeFiles(2);
  Start();
  Register();
  WaitPlanned();
  protocol::ResultsRequest req;
  req.node = "127.0.0.1";
  req.released = {{5, 1}};
  HttpResponse r = Post("/v1/results", req);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body.dump(), HasSubstr("released[0].mini_batch_id: got 5"));
}

// The previous coordinator was killed while mini-batches ran on two nodes: one agent outlived it
// and registers again with its attempts, the other never comes back.
TEST_F(CoordinatorTest, RestartKeepsRunningAttemptsForTheAgentsThatComeBack) {
  MakeFiles(8);                       // four mini-batches
  spec_.run_invocation_timeout = 10;  // lease 40 s
  spec_.run_max_try = 1;
  // Enough workers that every lease held here counts as running (at most P per node).
  spec_.process_count_per_node = 4;
  Start();
  Register("127.0.0.1");
  Register("127.0.0.2");
  WaitPlanned();
  auto a = LeaseWork(2, {}, "127.0.0.1");
  auto b = LeaseWork(1, {}, "127.0.0.2");
  ASSERT_EQ(a.leases.size(), 2u);
  ASSERT_EQ(b.leases.size(), 1u);
  coord_.reset();  // killed: nothing more is written

  Start();
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.running, 3);
  // A third node gets only the mini-batch nobody had.
  auto c = LeaseWork(10, {}, "127.0.0.3");
  ASSERT_EQ(c.leases.size(), 1u);
  EXPECT_EQ(c.leases[0].mini_batch_id, 3);
  Report({Done(c.leases[0])}, {}, "127.0.0.3");
  // Node 1 registers again with what it still runs and reports one result it kept meanwhile.
  protocol::RegisterRequest again{"127.0.0.1", 42, {{0, 1}, {1, 1}}};
  ASSERT_EQ(Post("/v1/register", again).status, 200);
  EXPECT_TRUE(LeaseWork(0, {{1, 1}}, "127.0.0.1").cancel.empty());
  EXPECT_EQ(Report({Done(a.leases[0])}, {}, "127.0.0.1").accepted.size(), 1u);
  clock_.Advance(std::chrono::seconds(30));
  EXPECT_TRUE(LeaseWork(0, {{1, 1}}, "127.0.0.1").cancel.empty());
  // Node 2 never comes back: after one lease period its attempt is queued again, no try counted.
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 2);
  clock_.Advance(std::chrono::seconds(15));
  ASSERT_TRUE(WaitFor([&] { return coord_->GetProgress().miniBatches.running == 1; }));
  auto d = LeaseWork(10, {}, "127.0.0.3");
  ASSERT_EQ(d.leases.size(), 1u);
  EXPECT_EQ(d.leases[0].mini_batch_id, b.leases[0].mini_batch_id);
  EXPECT_EQ(d.leases[0].attempt, 2);
  Report({Done(a.leases[1])}, {}, "127.0.0.1");
  Report({Done(d.leases[0])}, {}, "127.0.0.3");
  EXPECT_EQ(coord_->Wait(), 0);  // runMaxTry 1: nothing counted as a failed try

  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1\nrow 1 attempt 1\nrow 2 attempt 2\nrow 3 attempt 1\n");
  for (const auto& row : ReportRows()) {
    EXPECT_THAT(row, HasSubstr("RUN_DONE"));
    EXPECT_THAT(row, ::testing::Not(HasSubstr("LEASE_EXPIRED")));
  }
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_retried: 0\n"));
  EXPECT_THAT(Read(".parallelrun/journal"),
              HasSubstr("{\"t\":\"released\",\"mb\":2,\"a\":1,\"node\":\"127.0.0.2\"}"));
  EXPECT_THAT(Read("logs/sys/master_role.2.txt"),
              HasSubstr("3 mini-batches were running when the previous coordinator ended"));
}

// The old coordinator journaled a result but died before its answer reached the agent, which
// sends it again to the new one.
TEST_F(CoordinatorTest, ResultSentAgainToARestartedCoordinatorIsAcceptedOnce) {
  MakeFiles(4);  // two mini-batches
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(2);
  ASSERT_EQ(resp.leases.size(), 2u);
  AttemptResult done = Done(resp.leases[0]);
  Report({done});
  coord_.reset();
  Start();
  protocol::RegisterRequest again{"127.0.0.1", 42, {{0, 1}, {1, 1}}};
  ASSERT_EQ(Post("/v1/register", again).status, 200);
  ResultsResponse rr = Report({done});
  ASSERT_EQ(rr.accepted.size(), 1u);  // acknowledged, so the agent stops sending it
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.completed, 1);
  EXPECT_EQ(p.items.succeeded, 2);
  EXPECT_EQ(p.miniBatches.running, 1);  // mini-batch 1, reclaimed
  Report({Done(resp.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\nrow 1 attempt 1\n");
  EXPECT_EQ(coord_->GetProgress().items.succeeded, 4);
  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 2u);  // the resend is acknowledged, not recorded again
  EXPECT_THAT(rows[0], StartsWith("0,1,1,"));
  EXPECT_THAT(rows[1], StartsWith("1,1,1,"));
}

TEST_F(CoordinatorTest, RestartGivesBackAtOnceWhatARestartedAgentNoLongerHas) {
  MakeFiles(4);  // two mini-batches
  spec_.run_max_try = 1;
  // Enough workers that every lease held here counts as running (at most P per node).
  spec_.process_count_per_node = 4;
  Start();
  Register();
  WaitPlanned();
  ASSERT_EQ(LeaseWork(2).leases.size(), 2u);
  coord_.reset();
  Start();
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 2);
  // The agent was restarted too: it holds nothing, so both go back now, not in a lease period.
  Register();
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 0);
  auto again = LeaseWork(10);
  ASSERT_EQ(again.leases.size(), 2u);
  // Renewing an attempt of the previous coordinator that was given back: cancelled.
  EXPECT_EQ(LeaseWork(0, {{0, 1}}).cancel.size(), 1u);
  Report({Done(again.leases[0]), Done(again.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(ReportRows().size(), 2u);
}

TEST_F(CoordinatorTest, TheAgentWhoseReportEndsTheJobHearsItInTheAnswer) {
  MakeFiles(2);
  Start();
  Register("127.0.0.1");
  WaitPlanned();
  auto resp = LeaseWork(1, {}, "127.0.0.1");
  ASSERT_EQ(resp.leases.size(), 1u);
  ResultsResponse last = Report({Done(resp.leases[0])}, {}, "127.0.0.1");
  EXPECT_EQ(last.accepted.size(), 1u);
  EXPECT_TRUE(last.done);
  EXPECT_FALSE(last.stop);
  EXPECT_EQ(coord_->Wait(), 0);
  // Told by that answer: the coordinator need not wait for another call.
  EXPECT_TRUE(coord_->WaitForAgentsToHearTheEnd(std::chrono::milliseconds(0)));
}

TEST_F(CoordinatorTest, AgentsHearTheEndBeforeTheCoordinatorLeaves) {
  MakeFiles(2);
  spec_.node_count = 3;
  Start();
  Register("127.0.0.1");
  Register("127.0.0.2");
  Register("127.0.0.3");
  WaitPlanned();
  auto resp = LeaseWork(1, {}, "127.0.0.1");
  ASSERT_EQ(resp.leases.size(), 1u);
  EXPECT_TRUE(Report({Done(resp.leases[0])}, {}, "127.0.0.1").done);  // node 1 was told
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_FALSE(coord_->WaitForAgentsToHearTheEnd(std::chrono::milliseconds(0)));
  // A results answer after the end says done, and stop for agents that predate done there.
  ResultsResponse late = Report({}, {}, "127.0.0.2");
  EXPECT_TRUE(late.done);
  EXPECT_TRUE(late.stop);
  EXPECT_FALSE(coord_->WaitForAgentsToHearTheEnd(std::chrono::milliseconds(0)));  // node 3
  // A node not heard from for a lease period is gone: nobody to wait for.
  clock_.Advance(std::chrono::seconds(spec_.run_invocation_timeout + 31));
  EXPECT_TRUE(coord_->WaitForAgentsToHearTheEnd(std::chrono::milliseconds(0)));
}

TEST_F(CoordinatorTest, RestartResumesAnUnfinishedPlanAfterItsLastRecord) {
  MakeFiles(6);
  Start();
  WaitPlanned();
  coord_.reset();
  // Simulate a coordinator that died while planning: drop END and the last record.
  std::string plan = Read(".parallelrun/plan");
  auto lines = Lines(plan);
  ASSERT_EQ(lines.size(), 4u);
  ASSERT_EQ(lines[3], "END");
  ASSERT_TRUE(WriteFileAtomic(out_ + "/.parallelrun/plan",
                              lines[0] + "\n" + lines[1] + "\n" + lines[2].substr(0, 5))
                  .ok());
  Start();
  WaitPlanned();
  EXPECT_EQ(Read(".parallelrun/plan"), plan);
  RunAllDone();
  EXPECT_EQ(coord_->Wait(), 0);
}

// Throughput of the HTTP adapter over the coordinator with batched leases and results (SPEC.md §9:
// >= 20,000 mini-batch completions/s). Printed, not asserted: the machine running the tests may be
// busy, and the fdatasync latency of its disk bounds the wall-clock rate of a single agent.
double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

TEST_F(CoordinatorTest, ServesManyBatchedCompletions) {
  constexpr int kFiles = 20000;
  spec_.mini_batch_size = 1;
  spec_.output_action = OutputAction::kSummaryOnly;
  MakeFiles(kFiles);
  for (int agents : {1, 4}) {
    paths_.output_dir = out_ = root_ + "/out" + std::to_string(agents);
    Start();
    WaitPlanned();
    auto start = std::chrono::steady_clock::now();
    double cpu_start = CpuSeconds();
    std::atomic<int64_t> done{0};
    std::vector<std::thread> threads;
    for (int a = 0; a < agents; ++a) {
      threads.emplace_back([&, a] {
        const std::string node = "127.0.0." + std::to_string(a + 1);
        while (true) {
          protocol::LeaseRequest lreq;
          lreq.node = node;
          lreq.max = 100;
          auto leases = Post("/v1/lease", lreq).body.get<LeaseResponse>();
          if (leases.done) break;
          if (leases.leases.empty()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
          }
          protocol::ResultsRequest rreq;
          rreq.node = node;
          for (const auto& l : leases.leases) rreq.results.push_back(Done(l));
          auto rr = Post("/v1/results", rreq).body.get<ResultsResponse>();
          done += static_cast<int64_t>(rr.accepted.size());
        }
      });
    }
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double cpu = CpuSeconds() - cpu_start;
    EXPECT_EQ(done.load(), kFiles);
    EXPECT_EQ(coord_->Wait(), 0);
    std::printf(
        "[ MEASURED ] %d agent thread(s): %lld completions in %.3f s wall (%.0f/s), "
        "%.3f s CPU (%.0f per CPU second); lease 100 + report 100 per round trip, "
        "journal fdatasync per report\n",
        agents, static_cast<long long>(done.load()), secs, static_cast<double>(done.load()) / secs,
        cpu, static_cast<double>(done.load()) / cpu);
    coord_.reset();
  }
}

// Fencing (issue 12): a result counts only from the node holding that very attempt's lease.
TEST_F(CoordinatorTest, ForgedRunDoneForAnAttemptNeverIssuedIs409AndNotCounted) {
  MakeFiles(2);
  Start();
  Register();
  WaitPlanned();
  Lease never;
  never.mini_batch_id = 0;
  never.attempt = 7;
  never.items = 2;
  protocol::ResultsRequest forged;
  forged.node = "127.0.0.1";
  forged.results = {Done(never)};
  HttpResponse r = Post("/v1/results", forged);
  EXPECT_EQ(r.status, 409) << r.body.dump();
  EXPECT_THAT(r.body.value("reason", ""), HasSubstr("refused"));
  auto resp = r.body.get<ResultsResponse>();
  ASSERT_EQ(resp.refused.size(), 1u);
  EXPECT_EQ(resp.refused[0].attempt, 7);
  EXPECT_TRUE(resp.accepted.empty());
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.completed, 0);
  EXPECT_EQ(p.items.succeeded, 0);
  EXPECT_EQ(p.phase, "Running");
  EXPECT_TRUE(ReportRows().empty());
  // The real attempt 1 is still the one that counts.
  auto lease = LeaseWork(1);
  ASSERT_EQ(lease.leases.size(), 1u);
  EXPECT_EQ(lease.leases[0].attempt, 1);
  Report({Done(lease.leases[0])});
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(coord_->GetProgress().items.succeeded, 2);
}

TEST_F(CoordinatorTest, ResultsAndRenewalsFromANodeNotHoldingTheLeaseAreRefused) {
  MakeFiles(4);  // two mini-batches
  Start();
  Register("127.0.0.1");
  Register("127.0.0.2");
  WaitPlanned();
  auto mine = LeaseWork(1, {}, "127.0.0.1");
  auto theirs = LeaseWork(1, {}, "127.0.0.2");
  ASSERT_EQ(mine.leases.size(), 1u);
  ASSERT_EQ(theirs.leases.size(), 1u);
  // Node 2 renews node 1's lease: told to cancel it; node 1's lease is untouched.
  LeaseResponse renew = LeaseWork(0, {LeaseRef{0, 1}}, "127.0.0.2");
  ASSERT_EQ(renew.cancel.size(), 1u);
  // A mixed request from node 2: its own result counts, node 1's is refused and listed.
  protocol::ResultsRequest mixed;
  mixed.node = "127.0.0.2";
  mixed.results = {Done(theirs.leases[0]), Done(mine.leases[0])};
  HttpResponse r = Post("/v1/results", mixed);
  ASSERT_EQ(r.status, 200) << r.body.dump();
  auto resp = r.body.get<ResultsResponse>();
  ASSERT_EQ(resp.accepted.size(), 1u);
  EXPECT_EQ(resp.accepted[0].mini_batch_id, 1);
  ASSERT_EQ(resp.refused.size(), 1u);
  EXPECT_EQ(resp.refused[0].mini_batch_id, 0);
  EXPECT_EQ(coord_->GetProgress().miniBatches.completed, 1);
  // Node 2 cannot give node 1's lease back either.
  protocol::ResultsRequest release;
  release.node = "127.0.0.2";
  release.released = {LeaseRef{0, 1}};
  ASSERT_EQ(Post("/v1/results", release).status, 200);
  EXPECT_EQ(coord_->GetProgress().miniBatches.running, 1);
  Report({Done(mine.leases[0])}, {}, "127.0.0.1");
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 1\nrow 1 attempt 1\n");
  // Each refusal is logged, naming the node, the mini-batch, the attempt and why.
  const std::string log = Read("logs/sys/master_role.1.txt");
  EXPECT_THAT(log, HasSubstr("refused the RUN_DONE result of mini-batch 0 attempt 1 from "
                             "127.0.0.2: it is on lease to 127.0.0.1"));
  EXPECT_THAT(log, HasSubstr("refused the release of mini-batch 0 attempt 1 from 127.0.0.2: it "
                             "is on lease to 127.0.0.1"));
}

TEST_F(CoordinatorTest, AttemptOutsideTheIntegerRangeIs400NotWrapped) {
  MakeFiles(2);
  Start();
  Register();
  WaitPlanned();
  auto lease = LeaseWork(1);
  ASSERT_EQ(lease.leases.size(), 1u);
  nlohmann::json body = protocol::ResultsRequest{"127.0.0.1", {Done(lease.leases[0])}, {}, {}};
  body["results"][0]["attempt"] = (uint64_t{1} << 32) + 1;
  HttpResponse r = Post("/v1/results", body);
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_THAT(r.body.dump(), HasSubstr("attempt"));
  EXPECT_EQ(coord_->GetProgress().miniBatches.completed, 0);
}

// A restarted agent (same node name) gives its old leases back at once, and with runMaxTry 1 the
// mini-batches it lost still run (a lost lease is no try).
TEST_F(CoordinatorTest, AgentRegisteringAgainReleasesItsOldLeasesWithoutATry) {
  MakeFiles(4);  // two mini-batches
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto old = LeaseWork(2);
  ASSERT_EQ(old.leases.size(), 2u);
  // The agent was SIGKILLed and a new one registers: it holds nothing.
  ASSERT_EQ(Post("/v1/register", protocol::RegisterRequest{"127.0.0.1", 43, {}}).status, 200);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.miniBatches.running, 0);
  EXPECT_EQ(p.miniBatches.failed, 0);
  // The old agent's late result is refused (409): its leases are gone.
  HttpResponse late =
      Post("/v1/results", protocol::ResultsRequest{"127.0.0.1", {Done(old.leases[0])}, {}, {}});
  EXPECT_EQ(late.status, 409) << late.body.dump();
  auto again = LeaseWork(2);
  ASSERT_EQ(again.leases.size(), 2u);
  EXPECT_EQ(again.leases[0].attempt, 2);
  std::vector<AttemptResult> done;
  for (const auto& l : again.leases) done.push_back(Done(l));
  Report(done);
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"), "row 0 attempt 2\nrow 1 attempt 2\n");
  EXPECT_EQ(coord_->GetProgress().miniBatches.failed, 0);
}

}  // namespace
}  // namespace parallelrun::rt
