#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/base/files.h"
#include "runtime/logs/disk_full.h"
#include "runtime/logs/error_summary.h"
#include "runtime/logs/job_result.h"
#include "runtime/logs/log_layout.h"
#include "runtime/logs/overview.h"
#include "runtime/logs/readme_text.h"
#include "runtime/logs/report_csv.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using parallelrun::fakes::FakeClock;  // starts 2026-11-23 11:05:08 UTC
using parallelrun::fakes::TempDir;

std::string Slurp(const std::string& path) {
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : "";
}

TEST(CsvFieldTest, QuotesOnlyWhenNeeded) {
  struct Case {
    std::string in, out;
  } cases[] = {
      {"", ""},
      {"plain", "plain"},
      {"a,b", "\"a,b\""},
      {"say \"hi\"", "\"say \"\"hi\"\"\""},
      {"line1\nline2", "\"line1\nline2\""},
      {"cr\r", "\"cr\r\""},
      {"spaces are fine", "spaces are fine"},
  };
  for (const auto& c : cases) EXPECT_EQ(CsvField(c.in), c.out) << c.in;
}

TEST(ReportCsvTest, WritesHeaderOnceAndOneRecordPerRow) {
  TempDir tmp("logs_test");
  const std::string dir = tmp.path();
  std::string path = JoinPath(dir, kReportCsvFile);
  {
    auto csv = ReportCsv::Open(path);
    ASSERT_TRUE(csv.ok()) << csv.status().ToString();
    ReportRow row;
    row.mini_batch_id = 7;
    row.attempt = 2;
    row.accepted = true;
    row.node = "127.0.0.1";
    row.process = "process000";
    row.start_utc = "2026-11-23T11:05:08.000Z";
    row.total = 10;
    row.succeeded = 9;
    row.failed = 1;
    row.elapsed_s = 1.5;
    row.status = "RUN_DONE";
    row.detail = "Traceback:\n  line, with comma";
    ASSERT_TRUE((*csv)->Append({row}).ok());
  }
  {
    auto csv = ReportCsv::Open(path);  // reopening does not repeat the header
    ASSERT_TRUE(csv.ok());
  }
  EXPECT_EQ(Slurp(path), std::string(kReportCsvHeader) +
                             "\n7,2,1,127.0.0.1,process000,2026-11-23T11:05:08.000Z,10,9,1,1.500,"
                             "0.000,0.000,RUN_DONE,,\"Traceback:\n  line, with comma\"\n");
}

TEST(OverviewLogTest, TimestampsLinesEchoesThemAndStartsANewFileEachUtcDay) {
  TempDir tmp("logs_test");
  const std::string dir = tmp.path();
  FakeClock clock;
  std::vector<std::string> echoed;
  OverviewLog log(dir, &clock, [&](const std::string& l) { echoed.push_back(l); });
  EXPECT_EQ(log.Write("Scheduling started"), "2026-11-23 11:05:08 UTC: Scheduling started");
  clock.Advance(std::chrono::hours(1));  // same day: same file
  log.Write("later");
  clock.Advance(std::chrono::hours(13));  // next UTC day
  log.Write("next day");
  EXPECT_EQ(echoed.size(), 3u);
  EXPECT_EQ(Slurp(JoinPath(dir, "job_progress_overview.2026112311.txt")),
            "2026-11-23 11:05:08 UTC: Scheduling started\n2026-11-23 12:05:08 UTC: later\n");
  EXPECT_EQ(Slurp(JoinPath(dir, "job_progress_overview.2026112401.txt")),
            "2026-11-24 01:05:08 UTC: next day\n");
  EXPECT_EQ(log.current_path(), JoinPath(dir, "job_progress_overview.2026112401.txt"));
}

TEST(JobResultTest, TextStartsWithTheOutcomeAndListsKeyValues) {
  JobResult r;
  r.succeeded = false;
  r.reason = "InitFailed";
  r.message = "every node gave up\nstarting workers";
  r.exit_code = 42;
  r.mini_batches_total = 3;
  r.duration_s = 65;
  r.look_first = {"logs/user/error.txt: init errors"};
  r.traceback = "Traceback (most recent call last):\nValueError: no model";
  std::string text = FormatJobResultText(r);
  EXPECT_THAT(text, StartsWith("Failed: InitFailed\nexit_code: 42\nreason: InitFailed\n"));
  EXPECT_THAT(text, HasSubstr("message: every node gave up starting workers\n"));
  EXPECT_THAT(text, HasSubstr("mini_batches_total: 3\n"));
  EXPECT_THAT(text, HasSubstr("duration: 0:01:05\n"));
  EXPECT_THAT(text, HasSubstr("output_file: none\n"));
  EXPECT_THAT(text, HasSubstr("look_first: logs/user/error.txt: init errors\n"));
  EXPECT_THAT(text, HasSubstr("traceback:\n  Traceback (most recent call last):\n  ValueError"));

  r.succeeded = true;
  EXPECT_EQ(JobResultHeadline(r), "Succeeded");
}

TEST(JobResultTest, CarriedOverLinesOnlyForARetry) {
  JobResult r;
  r.mini_batches_retried = 1;
  EXPECT_THAT(FormatJobResultText(r), Not(HasSubstr("carried")));
  r.mini_batches_carried_over = 7;
  r.carried_over_from = "/data/run1";
  EXPECT_THAT(FormatJobResultText(r),
              HasSubstr("mini_batches_retried: 1\nmini_batches_carried_over: 7\n"
                        "carried_over_from: /data/run1\n"));
  // A result written before these fields existed still reads.
  nlohmann::json old = JobResultToJson(JobResult());
  old.erase("mini_batches_carried_over");
  old.erase("carried_over_from");
  auto back = JobResultFromJson(old);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->mini_batches_carried_over, 0);
}

TEST(JobResultTest, JsonRoundTrips) {
  JobResult r;
  r.succeeded = true;
  r.reason = "Completed";
  r.exit_code = 0;
  r.items_succeeded = 12;
  r.look_first = {"a", "b"};
  auto back = JobResultFromJson(JobResultToJson(r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(JobResultToJson(*back), JobResultToJson(r));
  EXPECT_FALSE(JobResultFromJson(nlohmann::json::array()).ok());
  EXPECT_FALSE(JobResultFromJson(nlohmann::json{{"exit_code", "x"}}).ok());
}

TEST(ErrorSummaryTest, OneLineNamingWhereAndWhat) {
  ErrorSummaryEntry e;
  e.time = std::chrono::system_clock::from_time_t(1795431908);
  e.node = "127.0.0.1";
  e.process = "process001";
  e.mini_batch_id = 12;
  e.attempt = 2;
  e.status = "RUN_EXCEPTION";
  e.error = "ValueError: bad\nrow";
  EXPECT_EQ(FormatErrorSummaryLine(e),
            "2026-11-23 11:05:08 UTC node=127.0.0.1 process=process001 mini_batch=12 attempt=2 "
            "status=RUN_EXCEPTION error=ValueError: bad row (traceback: "
            "user/error/127.0.0.1/process001.txt)\n");
}

TEST(LogLayoutTest, MasterRoleIndexCountsExistingFiles) {
  TempDir tmp("logs_test");
  const std::string dir = tmp.path();
  EXPECT_EQ(NextMasterRoleIndex(dir), 1);
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, MasterRoleFile(1)), "x").ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, MasterRoleFile(2)), "x").ok());
  EXPECT_EQ(NextMasterRoleIndex(dir), 3);
  EXPECT_THAT(LogsReadmeText(), HasSubstr("processed_mini-batches.csv"));
}

TEST(DiskFullTest, RecognisesTheRuntimesAndThePythonHostsWording) {
  EXPECT_TRUE(IsDiskFullError("cannot write /out/.parallelrun/journal: No space left on device"));
  EXPECT_TRUE(IsDiskFullError("writing the part file /out/p: OSError: [Errno 28] No space left"));
  EXPECT_TRUE(IsDiskFullError("OSError: [Errno 122] Disk quota exceeded"));
  EXPECT_FALSE(IsDiskFullError("ValueError: bad row"));
  EXPECT_THAT(DiskFullMessage("the journal /out/j", "No space left on device"),
              ::testing::HasSubstr("cannot write the journal /out/j"));
}

TEST(DiskFullTest, SpaceReserveHoldsRealBlocksAndIsReleasedOnce) {
  TempDir tmp("reserve_test");
  const std::string dir = tmp.path();
  SpaceReserve reserve;
  ASSERT_TRUE(reserve.Create(dir + "/space-reserve", 100000).ok());
  EXPECT_EQ(std::filesystem::file_size(dir + "/space-reserve"), 100000u);
  EXPECT_TRUE(reserve.Release());
  EXPECT_FALSE(std::filesystem::exists(dir + "/space-reserve"));
  EXPECT_FALSE(reserve.Release());
}

}  // namespace
}  // namespace parallelrun::rt
