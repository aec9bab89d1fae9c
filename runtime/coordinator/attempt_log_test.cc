#include "runtime/coordinator/attempt_log.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/base/log.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

class AttemptLogTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.Sub(name); }
  std::string Read(const std::string& name) const {
    auto text = ReadFile(Path(name));
    return text.ok() ? *text : "<" + text.status().message() + ">";
  }
  std::unique_ptr<AttemptLog> Open(Journal* journal) {
    auto report = ReportCsv::Open(Path("report.csv"));
    EXPECT_TRUE(report.ok());
    auto errors = AppendFile::Open(Path("error.txt"));
    EXPECT_TRUE(errors.ok());
    return std::make_unique<AttemptLog>(journal, std::move(*report), std::move(*errors),
                                        spdlog::default_logger());
  }
  fakes::TempDir dir_{"attempt_log_test"};
};

TEST_F(AttemptLogTest, OneDecisionWritesItsJournalLineRowAndErrorLine) {
  auto journal = Journal::Open(Path("journal"), 0);
  ASSERT_TRUE(journal.ok());
  auto log = Open(journal->get());
  protocol::AttemptResult r;
  r.mini_batch_id = 3;
  r.attempt = 2;
  r.process = "process001";
  r.status = "RUN_EXCEPTION";
  r.error = "ValueError: bad";
  ReportRow row = ReportRowOf(r, "n1", false);
  EXPECT_EQ(row.node, "n1");
  EXPECT_EQ(row.error, "ValueError: bad");
  ErrorSummaryEntry e{SystemTime(), "n1", r.process, 3, 2, r.status, r.error};
  AttemptLog::Batch batch;
  batch.Add(JournalLeaseLine(4, 1, "n1"));  // a decision with no row
  batch.Add(JournalResultLine(r, "n1", Decision{Outcome::kRetry, false, 0, 0}), &row, &e);
  EXPECT_EQ(batch.rows(), 1);
  auto off = log->Write(batch);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_GT(*off, 0);
  EXPECT_EQ(Read("journal"),
            JournalLeaseLine(4, 1, "n1") +
                JournalResultLine(r, "n1", Decision{Outcome::kRetry, false, 0, 0}));
  EXPECT_EQ(Read("report.csv"), std::string(kReportCsvHeader) + "\n" + FormatReportRow(row));
  EXPECT_EQ(Read("error.txt"), FormatErrorSummaryLine(e));
  EXPECT_EQ(*log->Write(AttemptLog::Batch()), -1);  // nothing journaled
}

TEST_F(AttemptLogTest, AJournalThatCannotBeWrittenWritesNothingElse) {
  // A journal on /dev/full: every append fails with ENOSPC.
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto journal = Journal::Open("/dev/full", 0);
  ASSERT_TRUE(journal.ok()) << journal.status().ToString();
  auto log = Open(journal->get());
  ReportRow row;
  row.mini_batch_id = 1;
  ErrorSummaryEntry e{SystemTime(), "n1", "", 1, 1, "LEASE_EXPIRED", "gone"};
  AttemptLog::Batch batch;
  batch.Add(JournalExpiredLine(1, 1, "n1", Outcome::kRetry), &row, &e);
  auto off = log->Write(batch);
  ASSERT_FALSE(off.ok());
  EXPECT_NE(off.status().message().find("No space left"), std::string::npos)
      << off.status().message();
  EXPECT_EQ(Read("report.csv"), std::string(kReportCsvHeader) + "\n");
  EXPECT_EQ(Read("error.txt"), "");
}

}  // namespace
}  // namespace parallelrun::rt
