#include "runtime/partitioner/plan_record_scan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace parallelrun::rt {
namespace {

// Every field of a MiniBatch, so that two decodings can be compared.
std::string Describe(const MiniBatch& mb) {
  std::string out = "id=" + std::to_string(mb.id) + " in=" + std::to_string(mb.input_index) +
                    " n=" + std::to_string(mb.items) + " file=" + mb.file +
                    " fmt=" + std::to_string(static_cast<int>(mb.format)) +
                    " h=" + std::to_string(mb.header_end) + " b=" + std::to_string(mb.begin) +
                    " e=" + std::to_string(mb.end) + " sz=" + std::to_string(mb.file_size) +
                    " mt=" + std::to_string(mb.file_mtime_ns) + " files=";
  for (const auto& f : mb.files) out += f + "|";
  out += " fz=";
  for (int64_t v : mb.file_sizes) out += std::to_string(v) + "|";
  out += " fm=";
  for (int64_t v : mb.file_mtimes_ns) out += std::to_string(v) + "|";
  out += " k=" + std::to_string(mb.partition_key_value.size()) +
         " s=" + std::to_string(mb.segments.size());
  return out;
}

std::vector<MiniBatch> Samples() {
  std::vector<MiniBatch> out;
  MiniBatch files;
  files.id = 12;
  files.input_index = 1;
  files.files = {"a.jpg", "sub/b.jpg", "c d.jpg"};
  files.items = 3;
  out.push_back(files);
  files.file_sizes = {0, 1234567, -1};
  files.file_mtimes_ns = {1765000000123456789, -1, 0};
  out.push_back(files);
  MiniBatch table;
  table.id = 9223372036854775807;
  table.input_index = 2147483647;
  table.file = "d/t.jsonl";
  table.format = TabularFormat::kJsonl;
  table.begin = 1048580;
  table.end = 2097200;
  table.items = 9000;
  out.push_back(table);
  table.format = TabularFormat::kCsv;
  table.header_end = 10;
  table.file_size = 2097200;
  table.file_mtime_ns = 1765000000123456789;
  out.push_back(table);
  return out;
}

TEST(PlanRecordScanTest, DecodesWhatEncodePlanRecordWritesAsTheGenericDecoderDoes) {
  for (const MiniBatch& mb : Samples()) {
    const std::string line = EncodePlanRecord(mb);
    auto fast = ScanPlanRecord(line);
    ASSERT_TRUE(fast.has_value()) << line;
    auto dom = DecodePlanRecordDom(line);
    ASSERT_TRUE(dom.ok()) << line;
    EXPECT_EQ(Describe(*fast), Describe(*dom)) << line;
    EXPECT_EQ(Describe(*fast), Describe(mb)) << line;
  }
}

TEST(PlanRecordScanTest, LeavesOtherFormsToTheGenericDecoder) {
  MiniBatch keyed = Samples()[0];
  keyed.partition_key_value = {{"region", "eu"}};
  MiniBatch segments;
  segments.items = 2;
  segments.partition_key_value = {{"k", "v"}};
  segments.segments.push_back(TableSegment{"t.csv", TabularFormat::kCsv, 4, {{4, 9}}, 9, 1});
  const std::vector<std::string> valid = {
      EncodePlanRecord(keyed),
      EncodePlanRecord(segments),
      R"({"id":1,"in":0,"f":["\u00fc.jpg"],"n":1})",
      R"({"id":1,"in":0,"f":["ü.jpg"],"n":1})",
      R"({"id":1,"in":0,"f":["b \"q\".jpg"],"n":1})",
      R"({ "id":1,"in":0,"f":["a"],"n":1})",
      R"({"id":1,"in":0,"f":["a"],"n":1} )",
      R"({"id":1,"in":0,"f":["a"],"n":1,"later":true})",
      R"({"id":1,"in":0,"f":["a"],"n":1,"id":2})",
      R"({"id":1,"in":0,"f":["a"],"n":1,"p":7})",
  };
  for (const std::string& line : valid) {
    EXPECT_FALSE(ScanPlanRecord(line).has_value()) << line;
    auto dom = DecodePlanRecordDom(line);
    ASSERT_TRUE(dom.ok()) << line << ": " << dom.status().ToString();
    auto got = DecodePlanRecord(line);
    ASSERT_TRUE(got.ok()) << line;
    EXPECT_EQ(Describe(*got), Describe(*dom)) << line;
  }
}

TEST(PlanRecordScanTest, AcceptsNothingTheGenericDecoderRejects) {
  const std::vector<std::string> bad = {
      R"({"id":01,"in":0,"f":["a"],"n":1})",
      R"({"id":-,"in":0,"f":["a"],"n":1})",
      R"({"id":1e3,"in":0,"f":["a"],"n":1})",
      R"({"id":9223372036854775808,"in":0,"f":["a"],"n":1})",
      R"({"id":0,"in":2147483648,"f":["a"],"n":1})",
      R"({"id":0,"in":0,"f":["a"],"fz":[1],"n":1})",
      R"({"id":0,"in":0,"f":["a"],"fz":[1],"fm":[1,2],"n":1})",
      R"({"id":0,"in":0,"f":["a"],"fz":[-2],"fm":[1],"n":1})",
      R"({"id":0,"in":0,"f":[""],"n":1})",
      R"({"id":0,"in":0,"p":"","fmt":"csv","h":0,"b":0,"e":5,"n":1})",
      R"({"id":0,"in":0,"p":"t","fmt":"csv","h":0,"b":0,"e":5,"n":1,"sz":-1,"mt":0})",
      R"({"id":0,"in":0,"p":"t","h":0,"b":0,"e":5,"n":1})",
      R"({"id":0,"in":0,"f":["a"],"n":1}})",
      R"({"id":0,"in":0,"f":["a",],"n":1})",
      R"({"id":0,"in":0,"f":["a"],"n":1,})",
      "{}",
  };
  for (const std::string& line : bad) {
    EXPECT_FALSE(ScanPlanRecord(line).has_value()) << line;
    EXPECT_FALSE(DecodePlanRecord(line).ok()) << line;
  }
}

// Every truncation and every one-byte change of the sample records: whatever the scanner
// accepts, the generic decoder accepts with the same result.
TEST(PlanRecordScanTest, AgreesWithTheGenericDecoderOnDamagedRecords) {
  const std::string replacements = "0-9\"\\,:[]{}ae. \x01\xc3";
  int accepted = 0;
  for (const MiniBatch& mb : Samples()) {
    const std::string line = EncodePlanRecord(mb);
    std::vector<std::string> variants;
    for (size_t i = 0; i <= line.size(); ++i) variants.push_back(line.substr(0, i));
    for (size_t i = 0; i < line.size(); ++i) {
      for (char c : replacements) {
        std::string v = line;
        v[i] = c;
        variants.push_back(v);
      }
    }
    for (const std::string& v : variants) {
      auto fast = ScanPlanRecord(v);
      if (!fast) continue;
      ++accepted;
      auto dom = DecodePlanRecordDom(v);
      ASSERT_TRUE(dom.ok()) << v;
      EXPECT_EQ(Describe(*fast), Describe(*dom)) << v;
    }
  }
  EXPECT_GT(accepted, 100);  // the variants that stay valid (other digits, other names)
}

}  // namespace
}  // namespace parallelrun::rt
