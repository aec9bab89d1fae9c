// retryFrom end to end through the coordinator service: a first run where some mini-batches fail,
// then a second coordinator on a new output folder with paths.retry_from_dir naming the first.
#include "runtime/coordinator/retry_from.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "runtime/base/files.h"
#include "runtime/coordinator/coordinator_testing.h"
#include "runtime/coordinator/journal.h"
#include "runtime/output/part_file.h"

namespace parallelrun::rt {
namespace {

// Every file under a folder with its content and modification time.
struct FileState {
  std::string content;
  std::filesystem::file_time_type mtime;
  bool operator==(const FileState& o) const { return content == o.content && mtime == o.mtime; }
};
std::map<std::string, FileState> Snapshot(const std::string& dir) {
  std::map<std::string, FileState> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    FileState f;
    f.mtime = e.last_write_time();
    if (e.is_regular_file()) f.content = *ReadFile(e.path().string());
    out[e.path().string()] = f;
  }
  return out;
}

int CountOf(const std::vector<std::string>& rows, const std::string& needle) {
  int n = 0;
  for (const auto& r : rows) n += r.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

class RetryFromTest : public CoordinatorTest {
 protected:
  // Runs the job in out_ where the mini-batches in `fail` fail (runMaxTry 1); returns the folder.
  std::string RunFirst(std::set<int64_t> fail, const std::string& suffix = " first") {
    spec_.run_max_try = 1;
    row_suffix_ = suffix;
    Start();
    Register();
    WaitPlanned();
    auto resp = LeaseWork(1000);
    std::vector<AttemptResult> results;
    for (const auto& l : resp.leases) {
      results.push_back(fail.count(l.mini_batch_id) ? Failed(l) : Done(l));
    }
    Report(results);
    EXPECT_EQ(coord_->Wait(), 0);
    coord_.reset();
    return out_;
  }
  // Starts a coordinator on a new output folder `name` retrying `earlier`.
  void StartRetry(const std::string& earlier, const std::string& name, const std::string& suffix) {
    paths_.output_dir = out_ = root_ + "/" + name;
    paths_.retry_from_dir = earlier;
    row_suffix_ = suffix;
    Start();
  }
  static std::vector<int64_t> Ids(const LeaseResponse& resp) {
    std::vector<int64_t> ids;
    for (const auto& l : resp.leases) ids.push_back(l.mini_batch_id);
    return ids;
  }
  // Leases everything left and reports it done; returns the ids that were run.
  std::vector<int64_t> RunTheRest() {
    Register();
    WaitPlanned();
    auto resp = LeaseWork(1000);
    std::vector<AttemptResult> results;
    for (const auto& l : resp.leases) results.push_back(Done(l));
    if (!results.empty()) Report(results);
    return Ids(resp);
  }
};

TEST_F(RetryFromTest, RerunsOnlyFailedMiniBatchesAndCarriesTheRestInOrderExactlyOnce) {
  MakeFiles(10);  // five mini-batches of 2 files
  const std::string first = RunFirst({1, 3});
  ASSERT_EQ(ReadFile(first + "/parallel_run_step.txt").value(),
            "row 0 attempt 1 first\nrow 2 attempt 1 first\nrow 4 attempt 1 first\n");
  EXPECT_TRUE(PathExists(first + "/.parallelrun/output_index"));
  auto before = Snapshot(first);

  StartRetry(first, "out2", " second");
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1000);
  EXPECT_THAT(Ids(resp), ElementsAre(1, 3));
  EXPECT_EQ(resp.leases[0].attempt, 1);
  EXPECT_EQ(resp.leases[0].part_file, out_ + "/.parallelrun/parts/1.1");
  Report({Done(resp.leases[1]), Done(resp.leases[0])});
  EXPECT_EQ(coord_->Wait(), 0);

  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1 first\nrow 1 attempt 1 second\nrow 2 attempt 1 first\n"
            "row 3 attempt 1 second\nrow 4 attempt 1 first\n");
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Succeeded");
  EXPECT_EQ(p.miniBatches.total, 5);
  EXPECT_EQ(p.miniBatches.completed, 5);
  EXPECT_EQ(p.miniBatches.failed, 0);
  EXPECT_EQ(p.items.succeeded, 10);
  std::string result = Read("logs/job_result.txt");
  EXPECT_THAT(result, StartsWith("Succeeded\n"));
  EXPECT_THAT(result, HasSubstr("mini_batches_succeeded: 5\n"));
  EXPECT_THAT(result,
              HasSubstr("mini_batches_carried_over: 3\ncarried_over_from: " + first + "\n"));
  EXPECT_THAT(result, HasSubstr("3 mini-batches carried over from " + first));
  auto json = nlohmann::json::parse(Read(".parallelrun/result.json"));
  EXPECT_EQ(json["mini_batches_carried_over"], 3);

  auto rows = ReportRows();
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(CountOf(rows, ",CARRIED_OVER,"), 3);
  EXPECT_THAT(rows[0], StartsWith("0,1,1,,,,2,2,0,"));
  EXPECT_THAT(rows[0], HasSubstr("CARRIED_OVER,,carried over from " + first));
  EXPECT_EQ(CountOf(Lines(Read(".parallelrun/journal")), "\"t\":\"carried\""), 3);
  std::string overview = Read("logs/job_progress_overview.2026112311.txt");
  EXPECT_THAT(overview, HasSubstr("Retry of the earlier run in " + first +
                                  ": it completed 3 of 5 mini batches (2 failed, 0 not run); the "
                                  "completed ones are carried over from " +
                                  first + " with their rows from its output index"));
  EXPECT_THAT(overview, HasSubstr("3 of them carried over from " + first + ", 2 to run"));
  EXPECT_TRUE(PathExists(out_ + "/.parallelrun/output_index"));
  EXPECT_FALSE(PathExists(out_ + "/.parallelrun/parts"));

  EXPECT_EQ(Snapshot(first), before);  // the earlier run is only read
}

TEST_F(RetryFromTest, HeaderLineIsCarriedOnceAtTheTop) {
  MakeFiles(6);  // three mini-batches
  spec_.append_row_header = true;
  spec_.run_max_try = 1;
  row_suffix_ = " first";
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 3u);
  for (const auto& l : resp.leases) std::ofstream(l.part_file + ".header") << "name score\n";
  // Mini-batch 0 fails: the earlier file's header came from mini-batch 1.
  Report({Failed(resp.leases[0]), Done(resp.leases[1]), Done(resp.leases[2])});
  EXPECT_EQ(coord_->Wait(), 0);
  coord_.reset();
  const std::string first = out_;
  ASSERT_EQ(ReadFile(first + "/parallel_run_step.txt").value(),
            "name score\nrow 1 attempt 1 first\nrow 2 attempt 1 first\n");

  // The rerun writes no header file of its own: the carried header is the first one there is.
  StartRetry(first, "out2", " second");
  EXPECT_THAT(RunTheRest(), ElementsAre(0));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"),
            "name score\nrow 0 attempt 1 second\nrow 1 attempt 1 first\nrow 2 attempt 1 first\n");
}

TEST_F(RetryFromTest, UnfinishedEarlierRunLendsItsPartFiles) {
  MakeFiles(6);  // three mini-batches
  row_suffix_ = " first";
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  Report({Done(resp.leases[0]), Failed(resp.leases[1])});  // 1 would be retried, 2 still runs
  coord_->Stop();
  EXPECT_EQ(coord_->Wait(), 130);
  coord_.reset();
  const std::string first = out_;
  ASSERT_TRUE(PathExists(first + "/.parallelrun/parts/0.1"));
  ASSERT_FALSE(PathExists(first + "/.parallelrun/output_index"));
  auto before = Snapshot(first);

  StartRetry(first, "out2", " second");
  EXPECT_THAT(RunTheRest(), ElementsAre(1, 2));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1 first\nrow 1 attempt 1 second\nrow 2 attempt 1 second\n");
  EXPECT_THAT(Read("logs/job_progress_overview.2026112311.txt"),
              HasSubstr("it completed 1 of 3 mini batches (0 failed, 2 not run); the completed "
                        "ones are carried over from " +
                        first +
                        " with their rows from its part "
                        "files"));
  EXPECT_EQ(Snapshot(first), before);
}

// Issue 12: a part file lost after its result was accepted fails the assembly naming it (never a
// success with fewer rows); the message says how to finish, and a retryFrom run reruns only the
// mini-batch whose rows were lost.
TEST_F(RetryFromTest, AssemblyFailedOnALostPartIsFinishedByARetryOfThatMiniBatchAlone) {
  MakeFiles(6);  // three mini-batches
  row_suffix_ = " first";
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(3);
  ASSERT_EQ(resp.leases.size(), 3u);
  std::vector<AttemptResult> results;
  for (const auto& l : resp.leases) {
    results.push_back(Done(l));
    auto fp = FingerprintFile(l.part_file);
    ASSERT_TRUE(fp.ok());
    results.back().part_bytes = fp->bytes;
    results.back().part_crc32 = fp->crc32;
  }
  Report({results[0], results[1]});
  std::filesystem::remove(out_ + "/.parallelrun/parts/1.1");
  Report({results[2]});
  EXPECT_EQ(coord_->Wait(), 42);
  const std::string result = Read("logs/job_result.txt");
  EXPECT_THAT(result, StartsWith("Failed: OutputAssemblyFailed\n"));
  EXPECT_THAT(result, HasSubstr(out_ + "/.parallelrun/parts/1.1 does not exist any more"));
  EXPECT_THAT(result, HasSubstr("retryFrom: " + out_));
  EXPECT_FALSE(PathExists(out_ + "/parallel_run_step.txt"));
  coord_.reset();
  const std::string first = out_;

  StartRetry(first, "out2", " second");
  EXPECT_THAT(RunTheRest(), ElementsAre(1));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1 first\nrow 1 attempt 1 second\nrow 2 attempt 1 first\n");
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_carried_over: 2\n"));
}

TEST_F(RetryFromTest, IncompatiblePlanFailsWithInvalidInputSayingWhatDiffers) {
  MakeFiles(6);  // f000..f005: three mini-batches
  const std::string first = RunFirst({1});
  auto before = Snapshot(first);
  struct Case {
    const char* name;
    std::function<void(const std::string&)> change;  // applied to the input folder
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"renamed",
       [](const std::string& in) { std::filesystem::rename(in + "/f005.jpg", in + "/f005b.jpg"); },
       "mini-batch 2 differs: the earlier run planned input \"images\": 2 files f004.jpg .. "
       "f005.jpg; this run plans input \"images\": 2 files f004.jpg .. f005b.jpg"},
      {"more", [](const std::string& in) { std::ofstream(in + "/f006.jpg") << 6; },
       "this run plans more mini-batches than the 3 of the earlier run: mini-batch 3 is input "
       "\"images\": 1 file f006.jpg"},
      {"fewer",
       [](const std::string& in) {
         std::filesystem::remove(in + "/f004.jpg");
         std::filesystem::remove(in + "/f005.jpg");
       },
       "this run plans 2 mini-batches, the earlier run planned 3"},
  };
  const std::string pristine = root_ + "/pristine";
  std::filesystem::copy(in_, pristine);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::filesystem::remove_all(in_);
    std::filesystem::copy(pristine, in_);
    c.change(in_);
    StartRetry(first, std::string("out-") + c.name, "");
    EXPECT_EQ(coord_->Wait(), 1);
    auto p = coord_->GetProgress();
    EXPECT_EQ(p.reason, "InvalidInput");
    EXPECT_THAT(p.message, StartsWith("spec.retryFrom (" + first + "): " + c.expected));
    EXPECT_THAT(p.message, HasSubstr("use the same inputs, miniBatchSize and input settings"));
    EXPECT_THAT(Read("logs/job_result.txt"), StartsWith("Failed: InvalidInput\nexit_code: 1\n"));
    EXPECT_FALSE(PathExists(out_ + "/.parallelrun/result.json"));  // fixed input runs again
    EXPECT_FALSE(PathExists(out_ + "/parallel_run_step.txt"));
    Register();
    LeaseResponse after = LeaseWork(10);
    EXPECT_TRUE(after.leases.empty());
    EXPECT_TRUE(after.stop);
    coord_.reset();
  }
  EXPECT_EQ(Snapshot(first), before);
}

TEST_F(RetryFromTest, FolderThatIsNoParallelrunOutputFailsWithInvalidInput) {
  MakeFiles(2);
  std::filesystem::create_directories(root_ + "/not-an-output");
  StartRetry(root_ + "/not-an-output", "out2", "");
  EXPECT_EQ(coord_->Wait(), 1);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "InvalidInput");
  EXPECT_THAT(p.message,
              StartsWith("spec.retryFrom (" + root_ +
                         "/not-an-output): not the output folder of a parallelrun run: " + root_ +
                         "/not-an-output/.parallelrun/plan does not exist"));
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("look_first: spec.retryFrom"));
  EXPECT_FALSE(PathExists(root_ + "/not-an-output/.parallelrun"));
  coord_.reset();

  StartRetry(root_ + "/missing", "out3", "");
  EXPECT_EQ(coord_->Wait(), 1);
  EXPECT_THAT(coord_->GetProgress().message,
              HasSubstr("spec.retryFrom (" + root_ + "/missing): folder " + root_ +
                        "/missing does not exist"));
}

TEST_F(RetryFromTest, OwnOutputFolderIsRefusedAndLeftUntouched) {
  MakeFiles(4);
  const std::string first = RunFirst({1});
  auto before = Snapshot(first);
  paths_.retry_from_dir = first + "/./";
  Start();
  EXPECT_EQ(coord_->Wait(), 1);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.phase, "Failed");
  EXPECT_EQ(p.reason, "InvalidInput");
  EXPECT_THAT(p.message, HasSubstr("names this job's own output folder " + first));
  EXPECT_THAT(Echoed().back(), HasSubstr("Failed: InvalidInput: spec.retryFrom"));
  Register();
  EXPECT_TRUE(LeaseWork(10).stop);
  coord_.reset();
  EXPECT_EQ(Snapshot(first), before);
}

TEST_F(RetryFromTest, ThresholdsCountFinalOutcomesAcrossBothRuns) {
  MakeFiles(6);  // three mini-batches of 2 items
  spec_.run_max_try = 1;
  Start();
  Register();
  WaitPlanned();
  auto resp = LeaseWork(10);
  ASSERT_EQ(resp.leases.size(), 3u);
  Report({Done(resp.leases[0], /*succeeded=*/1), Failed(resp.leases[1]), Done(resp.leases[2])});
  EXPECT_EQ(coord_->Wait(), 0);
  coord_.reset();
  const std::string first = out_;

  // One failed item carried over plus one in the rerun exceed errorThreshold 1; the rerun alone
  // would not.
  spec_.error_threshold = 1;
  StartRetry(first, "out2", "");
  Register();
  WaitPlanned();
  resp = LeaseWork(10);
  EXPECT_THAT(Ids(resp), ElementsAre(1));
  Report({Done(resp.leases[0], /*succeeded=*/1)});
  EXPECT_EQ(coord_->Wait(), 42);
  auto p = coord_->GetProgress();
  EXPECT_EQ(p.reason, "ErrorThresholdExceeded");
  EXPECT_THAT(p.message, HasSubstr("2 failed items exceed errorThreshold 1"));
  EXPECT_EQ(p.items.failed, 2);
  EXPECT_EQ(p.items.succeeded, 4);
}

TEST_F(RetryFromTest, RestartedRetryRunResumesWithoutCarryingTwice) {
  MakeFiles(10);
  const std::string first = RunFirst({1, 3});
  StartRetry(first, "out2", " second");
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1000);
  ASSERT_THAT(Ids(resp), ElementsAre(1, 3));
  Report({Done(resp.leases[0])});
  coord_->Stop();
  EXPECT_EQ(coord_->Wait(), 130);
  coord_.reset();

  Start();
  EXPECT_EQ(coord_->GetProgress().miniBatches.completed, 4);
  row_suffix_ = " third";
  EXPECT_THAT(RunTheRest(), ElementsAre(3));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1 first\nrow 1 attempt 1 second\nrow 2 attempt 1 first\n"
            "row 3 attempt 2 third\nrow 4 attempt 1 first\n");
  auto rows = ReportRows();
  EXPECT_EQ(CountOf(rows, ",CARRIED_OVER,"), 3);
  EXPECT_EQ(rows.size(), 5u);
  EXPECT_EQ(CountOf(Lines(Read(".parallelrun/journal")), "\"t\":\"carried\""), 3);
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_carried_over: 3\n"));
}

TEST_F(RetryFromTest, RetryOfARetryTakesEveryRowFromTheLatestOutput) {
  MakeFiles(10);
  const std::string first = RunFirst({1, 3});
  spec_.run_max_try = 1;
  StartRetry(first, "out2", " second");
  Register();
  WaitPlanned();
  auto resp = LeaseWork(1000);
  ASSERT_THAT(Ids(resp), ElementsAre(1, 3));
  Report({Done(resp.leases[0]), Failed(resp.leases[1])});
  EXPECT_EQ(coord_->Wait(), 0);
  coord_.reset();
  const std::string second = out_;

  StartRetry(second, "out3", " third");
  EXPECT_THAT(RunTheRest(), ElementsAre(3));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(Read("parallel_run_step.txt"),
            "row 0 attempt 1 first\nrow 1 attempt 1 second\nrow 2 attempt 1 first\n"
            "row 3 attempt 1 third\nrow 4 attempt 1 first\n");
  EXPECT_THAT(Read("logs/job_result.txt"),
              HasSubstr("mini_batches_carried_over: 4\ncarried_over_from: " + second + "\n"));
}

TEST_F(RetryFromTest, EarlierOutputChangedSinceItsRunIsRefused) {
  MakeFiles(4);
  const std::string first = RunFirst({1});
  std::ofstream(first + "/parallel_run_step.txt", std::ios::app) << "edited by hand\n";
  StartRetry(first, "out2", "");
  EXPECT_EQ(coord_->Wait(), 1);
  EXPECT_THAT(
      coord_->GetProgress().message,
      HasSubstr("its output file " + first + "/parallel_run_step.txt has 37 bytes, but " + first +
                "/.parallelrun/output_index says 22: the file was changed after that run"));
}

TEST_F(RetryFromTest, SummaryOnlyRetryCarriesCountsWithoutRows) {
  MakeFiles(6);
  spec_.output_action = OutputAction::kSummaryOnly;
  const std::string first = RunFirst({0});
  StartRetry(first, "out2", "");
  EXPECT_THAT(RunTheRest(), ElementsAre(0));
  EXPECT_EQ(coord_->Wait(), 0);
  EXPECT_EQ(coord_->GetProgress().items.succeeded, 6);
  EXPECT_FALSE(PathExists(out_ + "/parallel_run_step.txt"));
  EXPECT_THAT(Read("logs/job_result.txt"), HasSubstr("mini_batches_carried_over: 2\n"));
}

TEST(EarlierRunTest, CompletedMiniBatchWithoutRowsRunsAgain) {
  // An earlier run whose accepted part of mini-batch 1 vanished: only 0 can be carried over.
  const fakes::TempDir tmp("earlier_run_without_rows");
  const std::string& dir = tmp.path();
  std::filesystem::create_directories(dir + "/.parallelrun/parts");
  MiniBatch a;
  a.files = {"a"};
  a.items = 1;
  MiniBatch b = a;
  b.id = 1;
  b.files = {"b"};
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/plan",
                              EncodePlanRecord(a) + "\n" + EncodePlanRecord(b) + "\nEND\n")
                  .ok());
  Decision done{Outcome::kCompleted, true, 1, 0};
  protocol::AttemptResult r;
  r.status = "RUN_DONE";
  r.attempt = 2;
  std::string journal = JournalStartLine(1, SystemTime(), "o") + JournalResultLine(r, "n", done);
  r.mini_batch_id = 1;
  journal += JournalResultLine(r, "n", done);
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/journal", journal).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/parts/0.2", "x\n").ok());

  auto run = EarlierRun::Load(dir, /*need_rows=*/true);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ((*run)->completed(), 2);
  EXPECT_EQ((*run)->without_rows(), 1);
  ASSERT_TRUE((*run)->Carried(0).has_value());
  EXPECT_EQ((*run)->Carried(0)->attempt, 2);
  EXPECT_EQ((*run)->RowsOf(0).path, dir + "/.parallelrun/parts/0.2");
  EXPECT_TRUE((*run)->RowsOf(0).must_exist);
  EXPECT_FALSE((*run)->Carried(1).has_value());
  // Without rows to carry (summary_only), both count.
  run = EarlierRun::Load(dir, /*need_rows=*/false);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE((*run)->Carried(1).has_value());
  std::filesystem::remove_all(dir);
}

// Issue 12: an accepted part file that was lost or changed after its result was accepted is
// never carried over as if its rows were there. Gone or another size: it runs again. Same size
// but other bytes: its CRC-32 is checked as its rows are copied.
TEST(EarlierRunTest, LostOrResizedPartFilesRunAgainAndCarriedOnesKeepTheirFingerprint) {
  const fakes::TempDir tmp("earlier_run_changed_parts");
  const std::string& dir = tmp.path();
  std::filesystem::create_directories(dir + "/.parallelrun/parts");
  std::string plan;
  for (int64_t id = 0; id < 4; ++id) {
    MiniBatch mb;
    mb.id = id;
    mb.files = {"f" + std::to_string(id)};
    mb.items = 1;
    plan += EncodePlanRecord(mb) + "\n";
  }
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/plan", plan + "END\n").ok());
  Decision done{Outcome::kCompleted, true, 1, 0};
  std::string journal = JournalStartLine(1, SystemTime(), "o");
  for (int64_t id = 0; id < 4; ++id) {
    const std::string part = dir + "/.parallelrun/parts/" + std::to_string(id) + ".1";
    ASSERT_TRUE(WriteFileAtomic(part, "row " + std::to_string(id) + "\n").ok());
    auto fp = FingerprintFile(part);
    ASSERT_TRUE(fp.ok());
    protocol::AttemptResult r;
    r.status = "RUN_DONE";
    r.mini_batch_id = id;
    r.attempt = 1;
    r.part_bytes = fp->bytes;
    r.part_crc32 = fp->crc32;
    journal += JournalResultLine(r, "n", done);
  }
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/journal", journal).ok());
  std::filesystem::remove(dir + "/.parallelrun/parts/1.1");  // lost
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/parts/2.1", "row 2 and more\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/.parallelrun/parts/3.1", "row 9\n").ok());  // same size

  auto run = EarlierRun::Load(dir, /*need_rows=*/true);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ((*run)->completed(), 4);
  EXPECT_EQ((*run)->without_rows(), 2);
  EXPECT_TRUE((*run)->Carried(0).has_value());
  EXPECT_FALSE((*run)->Carried(1).has_value());
  EXPECT_FALSE((*run)->Carried(2).has_value());
  ASSERT_TRUE((*run)->Carried(3).has_value());
  const RowSource rows = (*run)->RowsOf(3);
  EXPECT_EQ(rows.expected_bytes, 6);
  ASSERT_TRUE(rows.expected_crc32.has_value());
  EXPECT_EQ(*rows.expected_crc32, Crc32(0, "row 3\n", 6));  // as accepted, not as it is now
  EXPECT_NE(*rows.expected_crc32, FingerprintFile(dir + "/.parallelrun/parts/3.1")->crc32);
}

}  // namespace
}  // namespace parallelrun::rt
