#include "runtime/coordinator/journal.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/coordinator/line_file.h"
#include "runtime/coordinator/plan_file.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

TEST(LineFileTest, SkipsATornLastLineAndReportsWhereToContinue) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("f");
  ASSERT_TRUE(WriteFileAtomic(path, "one\ntwo\nthr").ok());
  std::vector<std::pair<std::string, int64_t>> lines;
  auto valid = ForEachLine(path, [&](std::string_view l, int64_t off) {
    lines.emplace_back(std::string(l), off);
    return Status::Ok();
  });
  ASSERT_TRUE(valid.ok());
  EXPECT_EQ(*valid, 8);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], std::make_pair(std::string("two"), int64_t{4}));
  ASSERT_TRUE(TruncateFile(path, *valid).ok());
  EXPECT_EQ(*ReadFile(path), "one\ntwo\n");
  auto missing =
      ForEachLine(path + ".none", [](std::string_view, int64_t) { return Status::Ok(); });
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(*missing, 0);
}

TEST(LineFileTest, LinesLongerThanTheReadBufferArriveWhole) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("f");
  std::string longline(3 << 20, 'x');
  ASSERT_TRUE(WriteFileAtomic(path, "a\n" + longline + "\nb\n").ok());
  std::vector<std::string> lines;
  auto valid = ForEachLine(path, [&](std::string_view l, int64_t) {
    lines.emplace_back(l);
    return Status::Ok();
  });
  ASSERT_TRUE(valid.ok());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], longline);
  EXPECT_EQ(lines[2], "b");
}

TEST(JournalTest, RecordsRoundTripThroughReplay) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  {
    auto j = Journal::Open(path, 0);
    ASSERT_TRUE(j.ok());
    protocol::AttemptResult r;
    r.mini_batch_id = 4;
    r.attempt = 2;
    r.status = "RUN_DONE";
    r.error = "bad \xff byte";  // invalid UTF-8 must not make the record unwritable
    r.part_bytes = 1234;
    r.part_crc32 = 0xCBF43926u;
    Decision d{Outcome::kCompleted, true, 9, 1};
    std::string lines = JournalStartLine(1, SystemTime(), "owner") + JournalLeaseLine(4, 2, "n1") +
                        JournalResultLine(r, "n1", d) +
                        JournalExpiredLine(5, 1, "n2", Outcome::kRetry) +
                        JournalCarriedLine(6, 3, 7, 2) + JournalReleasedLine(7, 2, "n3");
    auto off = (*j)->Append(lines);
    ASSERT_TRUE(off.ok());
    ASSERT_TRUE((*j)->SyncTo(*off).ok());
    ASSERT_TRUE((*j)->Append("{\"t\":\"lea").ok());  // torn
  }
  std::vector<JournalRecord> records;
  auto valid = Journal::Replay(path, [&](const JournalRecord& r) {
    records.push_back(r);
    return Status::Ok();
  });
  ASSERT_TRUE(valid.ok()) << valid.status().ToString();
  ASSERT_EQ(records.size(), 6u);
  EXPECT_EQ(records[0].type, "start");
  EXPECT_EQ(records[0].start_index, 1);
  EXPECT_EQ(records[1].type, "lease");
  EXPECT_EQ(records[1].attempt, 2);
  EXPECT_EQ(records[2].type, "result");
  EXPECT_EQ(records[2].outcome, Outcome::kCompleted);
  EXPECT_EQ(records[2].succeeded, 9);
  EXPECT_EQ(records[2].part_bytes, 1234);
  EXPECT_EQ(records[2].part_crc32, 0xCBF43926u);
  EXPECT_EQ(records[3].part_bytes, -1);  // none recorded
  EXPECT_EQ(records[3].type, "expired");
  EXPECT_EQ(records[3].mini_batch_id, 5);
  EXPECT_EQ(records[3].outcome, Outcome::kRetry);
  EXPECT_EQ(records[4].type, "carried");
  EXPECT_EQ(records[4].mini_batch_id, 6);
  EXPECT_EQ(records[4].attempt, 3);
  EXPECT_EQ(records[4].outcome, Outcome::kCompleted);
  EXPECT_EQ(records[4].succeeded, 7);
  EXPECT_EQ(records[5].type, "released");
  EXPECT_EQ(records[5].mini_batch_id, 7);
  EXPECT_EQ(records[5].attempt, 2);
  EXPECT_EQ(records[5].node, "n3");
  EXPECT_EQ(records[5].outcome, Outcome::kGivenBack);
  EXPECT_NE(ReadFile(path)->find("\"error\":\"bad \\ufffd byte\""), std::string::npos);
  // Reopening at the valid size cuts the torn record.
  auto j = Journal::Open(path, *valid);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(ReadFile(path)->back(), '\n');
}

TEST(JournalTest, StringsAreEscapedAndAlwaysValidJson) {
  struct Case {
    std::string in, json;
  } cases[] = {
      {"plain", "\"plain\""},
      {"q\"b\\", "\"q\\\"b\\\\\""},
      {"line\nnext\t", "\"line\\u000anext\\u0009\""},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
       "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
      {"\xff\xc3", "\"\\ufffd\\ufffd\""},
      {"\xc0\xaf", "\"\\ufffd\\ufffd\""},             // overlong
      {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},  // surrogate
  };
  for (const auto& c : cases) {
    protocol::AttemptResult r;
    r.status = "RUN_EXCEPTION";
    r.error = c.in;
    std::string line = JournalResultLine(r, "n", Decision{});
    EXPECT_NE(line.find("\"error\":" + c.json + ","), std::string::npos) << line;
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << line;
  }
}

TEST(JournalTest, ResultLineKeepsWhatItsReportRowShows) {
  protocol::AttemptResult r;
  r.mini_batch_id = 4;
  r.attempt = 2;
  r.process = "process003";
  r.status = "RUN_DONE";
  r.total = 10;
  r.succeeded = 9;
  r.failed = 1;
  r.start_utc = "2026-12-07T15:00:00.000Z";
  r.elapsed_s = 1.25;
  r.cpu_s = 0.5;
  r.run_s = 1.125;
  Decision d;
  d.outcome = Outcome::kCompleted;
  d.accepted = true;
  d.succeeded = 9;
  d.failed = 1;
  auto back = ParseJournalLine(JournalResultLine(r, "node-1", d));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->process, "process003");
  EXPECT_EQ(back->status, "RUN_DONE");
  EXPECT_EQ(back->items, 10);
  EXPECT_EQ(back->reported_succeeded, 9);
  EXPECT_EQ(back->reported_failed, 1);
  EXPECT_EQ(back->start_utc, "2026-12-07T15:00:00.000Z");
  EXPECT_DOUBLE_EQ(back->elapsed_s, 1.25);
  EXPECT_DOUBLE_EQ(back->cpu_s, 0.5);
  EXPECT_DOUBLE_EQ(back->run_s, 1.125);
}

TEST(JournalTest, ReplayNamesTheLineOfACorruptRecord) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  ASSERT_TRUE(WriteFileAtomic(
                  path, JournalLeaseLine(0, 1, "n") + "not json\n" + JournalLeaseLine(1, 1, "n"))
                  .ok());
  auto valid = Journal::Replay(path, [](const JournalRecord&) { return Status::Ok(); });
  ASSERT_FALSE(valid.ok());
  EXPECT_NE(valid.status().message().find("line 2"), std::string::npos);
}

TEST(JournalTest, ATornLastLineIsSkippedWithAWarning) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  const std::string good = JournalLeaseLine(0, 1, "n") + JournalLeaseLine(1, 1, "n");
  ASSERT_TRUE(WriteFileAtomic(path, good + "{\"t\":\"result\",\"mb\":0,\"a\n").ok());
  int records = 0;
  std::string warning;
  auto valid = Journal::Replay(
      path,
      [&](const JournalRecord&) {
        ++records;
        return Status::Ok();
      },
      &warning);
  ASSERT_TRUE(valid.ok()) << valid.status().ToString();
  EXPECT_EQ(*valid, static_cast<int64_t>(good.size()));
  EXPECT_EQ(records, 2);
  EXPECT_NE(warning.find(path), std::string::npos) << warning;
  EXPECT_NE(warning.find("line 3"), std::string::npos) << warning;
  std::string described = Journal::DescribeTornTail(path, *valid);
  EXPECT_NE(described.find(path + ": skipped a torn last line (line 3"), std::string::npos)
      << described;
  EXPECT_EQ(Journal::DescribeTornTail(path, static_cast<int64_t>(good.size()) + 1000), "");
}

TEST(JournalTest, ATornLastLineWithoutNewlineIsReportedToo) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  const std::string good = JournalLeaseLine(0, 1, "n");
  ASSERT_TRUE(WriteFileAtomic(path, good + "{\"t\":\"lea").ok());
  std::string warning;
  auto valid = Journal::Replay(
      path, [](const JournalRecord&) { return Status::Ok(); }, &warning);
  ASSERT_TRUE(valid.ok());
  EXPECT_EQ(*valid, static_cast<int64_t>(good.size()));
  EXPECT_NE(warning.find("line 2"), std::string::npos) << warning;
}

TEST(JournalTest, ADamagedMiddleLineIsAnErrorNamingFileAndLine) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  ASSERT_TRUE(WriteFileAtomic(path, JournalLeaseLine(0, 1, "n") + "{\"t\":\"res\n" +
                                        JournalLeaseLine(1, 1, "n"))
                  .ok());
  std::string warning;
  auto valid = Journal::Replay(
      path, [](const JournalRecord&) { return Status::Ok(); }, &warning);
  ASSERT_FALSE(valid.ok());
  EXPECT_NE(valid.status().message().find(path + " line 2"), std::string::npos)
      << valid.status().message();
  EXPECT_TRUE(warning.empty());
}

TEST(JournalTest, ConcurrentSyncsAllReturnDurable) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("journal");
  auto j = Journal::Open(path, 0);
  ASSERT_TRUE(j.ok());
  std::mutex append_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        int64_t off;
        {
          std::lock_guard<std::mutex> lock(append_mu);
          off = *(*j)->Append(JournalLeaseLine(t * 100 + i, 1, "n"));
        }
        EXPECT_TRUE((*j)->SyncTo(off).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  int n = 0;
  ASSERT_TRUE(Journal::Replay(path, [&](const JournalRecord&) {
                ++n;
                return Status::Ok();
              }).ok());
  EXPECT_EQ(n, 200);
}

// retryFrom compares how two runs cut their inputs: a tabular file's fingerprint (which differs
// once the file is touched, and which plans of older versions lack) is not part of that.
TEST(PlanFileTest, RecordHashLeavesOutTheFileFingerprint) {
  MiniBatch mb;
  mb.file = "t.csv";
  mb.begin = 10;
  mb.end = 90;
  mb.items = 4;
  const uint64_t without = PlanRecordHash(EncodePlanRecord(mb));
  mb.file_size = 90;
  mb.file_mtime_ns = 1765000000000000001;
  const uint64_t with = PlanRecordHash(EncodePlanRecord(mb));
  mb.file_mtime_ns = 1765000000000000002;
  EXPECT_EQ(with, without);
  EXPECT_EQ(PlanRecordHash(EncodePlanRecord(mb)), without);
  mb.end = 91;  // another cut
  EXPECT_NE(PlanRecordHash(EncodePlanRecord(mb)), without);
}

TEST(PlanFileTest, RecordHashLeavesOutEachFilesFingerprint) {
  MiniBatch mb;
  mb.files = {"a]\",\"fz\":[1].txt", "b.txt"};
  mb.items = 2;
  const uint64_t without = PlanRecordHash(EncodePlanRecord(mb));
  mb.file_sizes = {12, -1};
  mb.file_mtimes_ns = {1765000000000000001, -1};
  EXPECT_EQ(PlanRecordHash(EncodePlanRecord(mb)), without);
  mb.file_sizes = {13, 5};
  EXPECT_EQ(PlanRecordHash(EncodePlanRecord(mb)), without);
  auto back = DecodePlanRecord(EncodePlanRecord(mb));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->file_sizes, (std::vector<int64_t>{13, 5}));
  EXPECT_EQ(back->file_mtimes_ns, (std::vector<int64_t>{1765000000000000001, -1}));
  mb.files[1] = "c.txt";  // another cut
  EXPECT_NE(PlanRecordHash(EncodePlanRecord(mb)), without);
}

TEST(PlanFileTest, WriterReaderAndLoaderAgree) {
  const fakes::TempDir dir("journal_test");
  std::string path = dir.Sub("plan");
  std::vector<PlanEntry> entries;
  {
    auto w = PlanWriter::Open(path, 0);
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 3; ++i) {
      MiniBatch mb;
      mb.id = i;
      mb.files = {"a" + std::to_string(i), "b"};
      mb.items = 2;
      entries.push_back((*w)->Add(mb));
    }
    EXPECT_EQ((*w)->buffered_records(), 3u);
    ASSERT_TRUE((*w)->Flush().ok());
  }
  auto r = PlanReader::Open(path);
  ASSERT_TRUE(r.ok());
  auto mb = (*r)->Read(entries[1]);
  ASSERT_TRUE(mb.ok()) << mb.status().ToString();
  EXPECT_EQ(mb->id, 1);
  EXPECT_EQ(mb->files[0], "a1");

  std::vector<PlanEntry> loaded;
  auto plan = LoadPlan(path, [&](const PlanEntry& e) { loaded.push_back(e); });
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->records, 3);
  EXPECT_FALSE(plan->complete);
  ASSERT_EQ(loaded.size(), 3u);
  EXPECT_EQ(loaded[2].plan_offset, entries[2].plan_offset);
  EXPECT_EQ(loaded[2].plan_length, entries[2].plan_length);
  EXPECT_EQ(loaded[2].items, 2);

  auto w = PlanWriter::Open(path, plan->valid_bytes);
  ASSERT_TRUE(w.ok());
  (*w)->AddEnd();
  ASSERT_TRUE((*w)->Flush().ok());
  plan = LoadPlan(path, [](const PlanEntry&) {});
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->complete);
  EXPECT_EQ(plan->valid_bytes, static_cast<int64_t>(ReadFile(path)->size()));
}

}  // namespace
}  // namespace parallelrun::rt
