#include "runtime/output/assembler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <tuple>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/output/output_index.h"
#include "runtime/output/output_lock.h"
#include "runtime/output/part_file.h"

namespace parallelrun::rt {
namespace {

class AssemblerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "assembler_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/parts");
  }
  std::string Part(int64_t i) { return dir_ + "/parts/" + std::to_string(i) + ".1"; }
  void WritePart(int64_t i, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomic(Part(i), text).ok());
  }
  std::string Output() { return dir_ + "/out/result.txt"; }
  std::string dir_;
};

TEST_F(AssemblerTest, ConcatenatesPartsInMiniBatchOrderSkippingFailedOnes) {
  WritePart(0, "a\nb\n");
  WritePart(2, "e\n");
  WritePart(1, "c\nd");  // no trailing newline: gets one, rows never merge
  WritePart(3, "");
  AssemblyOptions options;
  options.output_file = Output();
  int64_t progress_calls = 0;
  options.on_progress = [&](int64_t, int64_t) { ++progress_calls; };
  auto stats = AssembleAppendRow(options, 5, [&](int64_t i) {
    return i == 4 ? std::string() : Part(i);  // mini-batch 4 failed: no part
  });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->parts, 4);
  EXPECT_EQ(stats->missing_parts, 0);
  EXPECT_EQ(*ReadFile(Output()), "a\nb\nc\nd\ne\n");
  EXPECT_EQ(stats->bytes, 10);
  EXPECT_EQ(progress_calls, 4);
  EXPECT_FALSE(PathExists(dir_ + "/out/.result.txt.assembling"));
}

TEST_F(AssemblerTest, WritesTheFirstHeaderOnceAtTheTop) {
  WritePart(0, "");
  WritePart(1, "1 2\n");
  ASSERT_TRUE(WriteFileAtomic(Part(1) + ".header", "x y").ok());
  WritePart(2, "3 4\n");
  ASSERT_TRUE(WriteFileAtomic(Part(2) + ".header", "x y\n").ok());
  AssemblyOptions options;
  options.output_file = Output();
  options.header = true;
  auto stats = AssembleAppendRow(options, 3, [&](int64_t i) { return Part(i); });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_TRUE(stats->header_written);
  EXPECT_EQ(*ReadFile(Output()), "x y\n1 2\n3 4\n");
}

TEST_F(AssemblerTest, HeaderFilesAreIgnoredWithoutAppendRowHeader) {
  WritePart(0, "1 2\n");
  ASSERT_TRUE(WriteFileAtomic(Part(0) + ".header", "x y\n").ok());
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 1, [&](int64_t i) { return Part(i); });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(*ReadFile(Output()), "1 2\n");
}

TEST_F(AssemblerTest, CountsMissingPartsThatMayBeMissing) {
  WritePart(0, "a\n");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 2, [&](int64_t i) -> RowSource {
    RowSource s = PartFileSource(Part(i));
    s.must_exist = false;
    return s;
  });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->missing_parts, 1);
  ASSERT_EQ(stats->missing_examples.size(), 1u);
  EXPECT_EQ(stats->missing_examples[0], Part(1));
  EXPECT_EQ(*ReadFile(Output()), "a\n");
}

// Regression (issue 12): a part deleted after its result was accepted was a warning, and the job
// succeeded with its rows missing.
TEST_F(AssemblerTest, MissingAcceptedPartFailsNamingIt) {
  ASSERT_TRUE(WriteFileAtomic(Output(), "old\n").ok());
  WritePart(0, "a\n");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 2, [&](int64_t i) { return Part(i); });
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr("mini-batch 1"));
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr(Part(1)));
  EXPECT_EQ(*ReadFile(Output()), "old\n");
  EXPECT_FALSE(PathExists(dir_ + "/out/.result.txt.assembling"));
}

RowSource Verified(const std::string& path, const std::string& accepted_text) {
  RowSource s = PartFileSource(path);
  s.expected_bytes = static_cast<int64_t>(accepted_text.size());
  s.expected_crc32 = Crc32(0, accepted_text.data(), accepted_text.size());
  return s;
}

TEST_F(AssemblerTest, PartsThatMatchTheirRecordedSizeAndChecksumAreCopied) {
  WritePart(0, "a\nb\n");
  WritePart(1, "c");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(
      options, 2, [&](int64_t i) { return Verified(Part(i), i == 0 ? "a\nb\n" : "c"); });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(*ReadFile(Output()), "a\nb\nc\n");
}

TEST_F(AssemblerTest, TruncatedPartFailsNamingItAndBothSizes) {
  WritePart(0, "a\n");
  WritePart(1, "c\n");  // was "c\nd\n" when accepted
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(
      options, 2, [&](int64_t i) { return Verified(Part(i), i == 0 ? "a\n" : "c\nd\n"); });
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr(Part(1)));
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr("has 2 bytes, but had 4"));
  EXPECT_FALSE(PathExists(Output()));
}

TEST_F(AssemblerTest, RewrittenPartOfTheSameSizeFailsOnItsChecksum) {
  WritePart(0, "x\n");  // was "a\n" when accepted
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 1, [&](int64_t i) { return Verified(Part(i), "a\n"); });
  ASSERT_FALSE(stats.ok());
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr("CRC-32"));
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr(Part(0)));
}

TEST(PartFileTest, Crc32IsTheIeeeCrcOfZlib) {
  const std::string check = "123456789";
  EXPECT_EQ(Crc32(0, check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(Crc32(0, "", 0), 0u);
  // In pieces (across the 8-byte steps) as in one go.
  std::string long_text;
  for (int i = 0; i < 1000; ++i) long_text += static_cast<char>(i * 7);
  uint32_t whole = Crc32(0, long_text.data(), long_text.size());
  uint32_t pieces = Crc32(0, long_text.data(), 13);
  pieces = Crc32(pieces, long_text.data() + 13, long_text.size() - 13);
  EXPECT_EQ(whole, pieces);
}

TEST_F(AssemblerTest, FingerprintFileGivesSizeAndCrc) {
  WritePart(0, "123456789");
  auto f = FingerprintFile(Part(0));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->bytes, 9);
  EXPECT_EQ(f->crc32, 0xCBF43926u);
  EXPECT_EQ(FingerprintFile(Part(1)).status().code(), StatusCode::kNotFound);
}

TEST_F(AssemblerTest, OutputLockHasOneHolderAndNamesIt) {
  const std::string out = dir_ + "/locked";
  EXPECT_EQ(OutputLock::Holder(out), "");  // no folder: nobody, and nothing made
  EXPECT_FALSE(PathExists(out));
  {
    auto first = OutputLock::Acquire(out);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    auto second = OutputLock::Acquire(out);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
    const std::string pid = "pid " + std::to_string(::getpid()) + " host ";
    EXPECT_THAT(second.status().message(), ::testing::HasSubstr(pid));
    EXPECT_THAT(OutputLock::Holder(out), ::testing::HasSubstr(pid));
    // Waiting for it says so once, then gives up naming the holder.
    int waits = 0;
    auto waited = OutputLock::Acquire(out, std::chrono::seconds(1), [&](const std::string& who) {
      ++waits;
      EXPECT_THAT(who, ::testing::HasSubstr(pid));
    });
    EXPECT_EQ(waited.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(waits, 1);
  }
  // Released with its holder: no stale lock.
  EXPECT_EQ(OutputLock::Holder(out), "");
  EXPECT_TRUE(OutputLock::Acquire(out).ok());
}

TEST_F(AssemblerTest, CancelledAssemblyLeavesTheOldFileAndNoTemporary) {
  ASSERT_TRUE(WriteFileAtomic(Output(), "old\n").ok());
  WritePart(0, "a\n");
  std::atomic<bool> cancel{true};
  AssemblyOptions options;
  options.output_file = Output();
  options.cancel = &cancel;
  auto stats = AssembleAppendRow(options, 1, [&](int64_t i) { return Part(i); });
  EXPECT_EQ(stats.status().code(), StatusCode::kAborted);
  EXPECT_EQ(*ReadFile(Output()), "old\n");
  EXPECT_FALSE(PathExists(dir_ + "/out/.result.txt.assembling"));
}

TEST_F(AssemblerTest, LargePartsStreamThroughTheBuffer) {
  std::string big;
  for (int i = 0; i < 300000; ++i) big += "row " + std::to_string(i) + "\n";  // > 1 MiB
  WritePart(0, big);
  WritePart(1, "tail\n");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 2, [&](int64_t i) { return Part(i); });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(*ReadFile(Output()), big + "tail\n");
}

struct IndexLine {
  int64_t id;
  ByteRange range;
};

StatusOr<std::vector<IndexLine>> ReadIndex(const std::string& path, OutputIndexInfo* info) {
  std::vector<IndexLine> lines;
  auto read = ReadOutputIndex(path, [&](int64_t id, ByteRange r) { lines.push_back({id, r}); });
  if (!read.ok()) return read.status();
  *info = *read;
  return lines;
}

TEST_F(AssemblerTest, IndexSaysWhereEachMiniBatchsRowsAreInTheNewFile) {
  WritePart(0, "a\nb\n");
  WritePart(1, "c");  // gets a newline, counted in its range
  WritePart(3, "");
  WritePart(4, "h\n");
  ASSERT_TRUE(WriteFileAtomic(Part(4) + ".header", "col\n").ok());
  const std::string index = dir_ + "/state/output_index";
  ASSERT_TRUE(WriteFileAtomic(index, "stale").ok());
  AssemblyOptions options;
  options.output_file = Output();
  options.header = true;
  options.index_file = index;
  // 2 failed (no part), 5 missing (and allowed to be): neither has an index line.
  auto stats = AssembleAppendRow(options, 6, [&](int64_t i) -> RowSource {
    if (i == 2) return RowSource();
    RowSource s = PartFileSource(Part(i));
    s.must_exist = i != 5;
    return s;
  });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(*ReadFile(Output()), "col\na\nb\nc\nh\n");
  EXPECT_EQ(stats->missing_parts, 1);
  OutputIndexInfo info;
  auto lines = ReadIndex(index, &info);
  ASSERT_TRUE(lines.ok()) << lines.status().ToString();
  EXPECT_EQ(info.file_name, "result.txt");
  EXPECT_EQ(info.file_bytes, 12);
  EXPECT_TRUE(info.has_header);
  EXPECT_EQ(info.header.offset, 0);
  EXPECT_EQ(info.header.length, 4);
  ASSERT_EQ(lines->size(), 4u);
  std::vector<std::tuple<int64_t, int64_t, int64_t>> got;
  for (const auto& l : *lines) got.emplace_back(l.id, l.range.offset, l.range.length);
  EXPECT_EQ(got, (std::vector<std::tuple<int64_t, int64_t, int64_t>>{
                     {0, 4, 4}, {1, 8, 2}, {3, 10, 0}, {4, 10, 2}}));
  EXPECT_FALSE(PathExists(index + ".writing"));
}

TEST_F(AssemblerTest, RowsAndHeaderComeFromByteRangesOfAnEarlierFile) {
  const std::string earlier = dir_ + "/earlier.txt";
  ASSERT_TRUE(WriteFileAtomic(earlier, "col\nr0\nr2\n").ok());
  WritePart(1, "new1\n");
  AssemblyOptions options;
  options.output_file = Output();
  options.header = true;
  options.index_file = dir_ + "/output_index";
  auto range = [&](int64_t offset, int64_t length) {
    RowSource s;
    s.path = earlier;
    s.offset = offset;
    s.length = length;
    s.header_path = earlier;
    s.header_offset = 0;
    s.header_length = 4;
    return s;
  };
  auto stats = AssembleAppendRow(options, 3, [&](int64_t i) -> RowSource {
    if (i == 1) return PartFileSource(Part(1));  // no header file: the earlier one is used
    return i == 0 ? range(4, 3) : range(7, 3);
  });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(*ReadFile(Output()), "col\nr0\nnew1\nr2\n");
  EXPECT_EQ(stats->parts, 3);
  OutputIndexInfo info;
  auto lines = ReadIndex(options.index_file, &info);
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_EQ((*lines)[2].range.offset, 12);
  EXPECT_EQ((*lines)[2].range.length, 3);
}

TEST_F(AssemblerTest, RangeBeyondTheEndOfItsFileFailsAndKeepsTheOldOutputAndIndex) {
  const std::string earlier = dir_ + "/earlier.txt";
  ASSERT_TRUE(WriteFileAtomic(earlier, "r0\n").ok());
  ASSERT_TRUE(WriteFileAtomic(Output(), "old\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/output_index", "old index").ok());
  AssemblyOptions options;
  options.output_file = Output();
  options.index_file = dir_ + "/output_index";
  auto stats = AssembleAppendRow(options, 1, [&](int64_t) {
    RowSource s;
    s.path = earlier;
    s.offset = 2;
    s.length = 5;
    return s;
  });
  ASSERT_FALSE(stats.ok());
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr(earlier + " ends at byte 3"));
  EXPECT_EQ(*ReadFile(Output()), "old\n");
  EXPECT_EQ(*ReadFile(dir_ + "/output_index"), "old index");
  EXPECT_FALSE(PathExists(dir_ + "/output_index.writing"));
  EXPECT_FALSE(PathExists(dir_ + "/out/.result.txt.assembling"));
}

TEST_F(AssemblerTest, MissingPartThatMustExistFailsTheAssembly) {
  WritePart(0, "a\n");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 2, [&](int64_t i) {
    RowSource s = PartFileSource(Part(i));
    s.must_exist = true;
    return s;
  });
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().message(),
            "cannot read the rows of mini-batch 1: " + Part(1) + " does not exist any more");
  EXPECT_FALSE(PathExists(Output()));
}

TEST(OutputIndexTest, MalformedIndexesAreRejectedNamingTheLine) {
  const std::string path = ::testing::TempDir() + "output_index_malformed";
  const std::string head = std::string(kOutputIndexMagic) + "\nfile out.txt\n";
  struct Case {
    std::string text;
    std::string expected;
  } cases[] = {
      {"nonsense\n", "line 1: got \"nonsense\", expected \"parallelrun output index v1\""},
      {std::string(kOutputIndexMagic) + "\nname x\n", "line 2: got \"name x\", expected \"file"},
      {head + "0 0 2\n", "no \"end <bytes>\" line"},
      {head + "0 0 2\n0 2 2\nend 4\n", "line 4: got \"0 2 2\", expected a mini-batch id greater"},
      {head + "0 0 -2\nend 4\n", "line 3: got \"0 0 -2\", expected \"<mini-batch id>"},
      {head + "0 0 2 9\nend 4\n", "line 3"},
      {head + "0 0 2\nheader 0 1\nend 4\n", "line 4: got \"header 0 1\", expected one"},
      {head + "0 0 9\nend 4\n", "a range ends at byte 9, after the end of the file (4 bytes)"},
      {head + "end 4\n0 0 1\n", "line 4: got \"0 0 1\", expected nothing after the end line"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    ASSERT_TRUE(WriteFileAtomic(path, c.text).ok());
    auto info = ReadOutputIndex(path, [](int64_t, ByteRange) {});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(info.status().message(), ::testing::HasSubstr(c.expected));
    EXPECT_THAT(info.status().message(), ::testing::HasSubstr(path));
  }
  auto missing = ReadOutputIndex(path + ".missing", [](int64_t, ByteRange) {});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace parallelrun::rt
