#include "runtime/output/assembler.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/base/files.h"

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

TEST_F(AssemblerTest, CountsMissingParts) {
  WritePart(0, "a\n");
  AssemblyOptions options;
  options.output_file = Output();
  auto stats = AssembleAppendRow(options, 2, [&](int64_t i) { return Part(i); });
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->missing_parts, 1);
  ASSERT_EQ(stats->missing_examples.size(), 1u);
  EXPECT_EQ(stats->missing_examples[0], Part(1));
  EXPECT_EQ(*ReadFile(Output()), "a\n");
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

}  // namespace
}  // namespace parallelrun::rt
