// Partitioning by spec.partitionKeys (key_partitioner.h) and the partition format it uses.
#include "runtime/partitioner/key_partitioner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/jobspec/partition_format.h"
#include "runtime/partitioner/partitioner.h"

namespace parallelrun::rt {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

class KeyPartitionerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pr_key_partitioner_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/in");
    fs::create_directories(dir_ + "/scratch");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& content) {
    const fs::path p = fs::path(dir_) / "in" / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  std::string Read(const std::string& rel, int64_t b, int64_t e) {
    std::ifstream f(fs::path(dir_) / "in" / rel, std::ios::binary);
    std::string s(static_cast<size_t>(e - b), '\0');
    f.seekg(b);
    f.read(s.data(), e - b);
    return s;
  }

  static JobSpec Spec(Input in, std::vector<std::string> keys) {
    JobSpec spec;
    spec.inputs = {std::move(in)};
    spec.partition_keys = std::move(keys);
    spec.mini_batch_size = 10;
    return spec;
  }
  static Input Files(const std::string& format) {
    Input in;
    in.type = InputType::kFile;
    in.partition_format = format;
    return in;
  }
  static Input Table() {
    Input in;
    in.type = InputType::kTabular;
    return in;
  }

  StatusOr<std::vector<MiniBatch>> Plan(const JobSpec& spec) {
    PR_ASSIGN_OR_RETURN(auto p, MakePartitioner(spec, {dir_ + "/in"}, dir_ + "/scratch"));
    std::vector<MiniBatch> out;
    while (true) {
      PR_ASSIGN_OR_RETURN(auto next, p->Next());
      if (!next) break;
      out.push_back(std::move(*next));
    }
    warnings_ = p->TakeWarnings();
    return out;
  }

  // The rows of a tabular mini-batch, each segment's ranges concatenated.
  std::string Rows(const MiniBatch& mb) {
    std::string out;
    for (const TableSegment& seg : mb.segments) {
      for (const auto& [b, e] : seg.ranges) out += Read(seg.file, b, e);
    }
    return out;
  }

  std::string dir_;
  std::vector<std::string> warnings_;
};

TEST(PartitionFormatTest, CapturesWithinOnePathComponent) {
  auto f = PartitionFormat::Parse("{user}/{season}/{genres}.wav");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_THAT(f->names(), ElementsAre("user", "season", "genres"));
  std::vector<std::string> v;
  ASSERT_TRUE(f->Match("ann/summer/rock.live.wav", &v));
  EXPECT_THAT(v, ElementsAre("ann", "summer", "rock.live"));
  EXPECT_FALSE(f->Match("ann/summer/rock.mp3", &v));
  EXPECT_FALSE(f->Match("ann/summer/x/rock.wav", &v));  // a capture never crosses '/'
  EXPECT_FALSE(f->Match("ann//rock.wav", &v));          // nor is it empty
  auto star = PartitionFormat::Parse("{store}/*.csv");
  ASSERT_TRUE(star.ok());
  ASSERT_TRUE(star->Match("s1/.csv", &v));
  EXPECT_THAT(v, ElementsAre("s1"));
}

TEST(PartitionFormatTest, BadFormatsSayWhatIsWrong) {
  EXPECT_THAT(PartitionFormat::Parse("{a").status().message(), HasSubstr("without its '}'"));
  EXPECT_THAT(PartitionFormat::Parse("a}").status().message(), HasSubstr("without its '{'"));
  EXPECT_THAT(PartitionFormat::Parse("{a}/{a}").status().message(), HasSubstr("appears twice"));
  EXPECT_THAT(PartitionFormat::Parse("{a}{b}").status().message(), HasSubstr("text between"));
  EXPECT_THAT(PartitionFormat::Parse("/{a}").status().message(), HasSubstr("relative"));
  EXPECT_THAT(PartitionFormat::Parse("{}").status().message(), HasSubstr("a key name"));
  EXPECT_THAT(PartitionFormat::Parse("{d:yyyy}").status().message(), HasSubstr("not supported"));
}

TEST(SplitCsvRowTest, UnquotesAsPandasDoes) {
  using internal::SplitCsvRow;
  EXPECT_THAT(SplitCsvRow("a,\"b,c\",\"say \"\"hi\"\"\",,x\"y"),
              ElementsAre("a", "b,c", "say \"hi\"", "", "x\"y"));
  EXPECT_THAT(SplitCsvRow(""), ElementsAre(""));
  EXPECT_THAT(SplitCsvRow("\"a\"b,\"multi\nline\""), ElementsAre("ab", "multi\nline"));
}

TEST_F(KeyPartitionerTest, FilePartitionsGatherFilesAcrossFoldersInFirstAppearanceOrder) {
  Write("ann/summer/rock.wav", "1");
  Write("ann/winter/jazz.wav", "2");
  Write("ann/winter/rock.wav", "3");
  Write("bob/summer/rock.wav", "4");
  Write("bob/winter/rock.wav", "5");
  Write("README.md", "not audio");
  auto plan = Plan(Spec(Files("{user}/{season}/{genres}.wav"), {"user", "genres"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 3u);
  EXPECT_THAT((*plan)[0].files, ElementsAre("ann/summer/rock.wav", "ann/winter/rock.wav"));
  EXPECT_EQ((*plan)[0].partition_key_value, (KeyValues{{"user", "ann"}, {"genres", "rock"}}));
  EXPECT_THAT((*plan)[1].files, ElementsAre("ann/winter/jazz.wav"));
  EXPECT_EQ((*plan)[1].partition_key_value, (KeyValues{{"user", "ann"}, {"genres", "jazz"}}));
  EXPECT_THAT((*plan)[2].files, ElementsAre("bob/summer/rock.wav", "bob/winter/rock.wav"));
  for (size_t i = 0; i < plan->size(); ++i) {
    EXPECT_EQ((*plan)[i].id, static_cast<int64_t>(i));
    EXPECT_EQ((*plan)[i].items, static_cast<int64_t>((*plan)[i].files.size()));
  }
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_THAT(warnings_[0], HasSubstr("spec.inputs[0].partitionFormat: left out 1 file"));
  EXPECT_THAT(warnings_[0], HasSubstr("README.md"));
}

// Each file of a file partition carries its size and mtime as planned, like a mini-batch without
// keys, so that an attempt on a file rewritten after planning fails naming it.
TEST_F(KeyPartitionerTest, FilePartitionsCarryEachFilesFingerprint) {
  Write("ann/summer/rock.wav", "1");
  Write("ann/winter/rock.wav", "three");
  Write("bob/summer/jazz.wav", "");
  auto plan = Plan(Spec(Files("{user}/{season}/{genres}.wav"), {"user", "genres"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 2u);
  for (const MiniBatch& mb : *plan) {
    ASSERT_EQ(mb.file_sizes.size(), mb.files.size());
    ASSERT_EQ(mb.file_mtimes_ns.size(), mb.files.size());
    for (size_t i = 0; i < mb.files.size(); ++i) {
      const fs::path p = fs::path(dir_) / "in" / mb.files[i];
      struct stat st;
      ASSERT_EQ(::stat(p.c_str(), &st), 0);
      EXPECT_EQ(mb.file_sizes[i], st.st_size) << mb.files[i];
      EXPECT_EQ(mb.file_mtimes_ns[i], st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    }
  }
  EXPECT_THAT((*plan)[0].file_sizes, ElementsAre(1, 5));
  EXPECT_THAT((*plan)[1].file_sizes, ElementsAre(0));
  // And through the plan file, as the coordinator hands them out.
  auto back = DecodePlanRecord(EncodePlanRecord((*plan)[0]));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->file_sizes, (*plan)[0].file_sizes);
  EXPECT_EQ(back->file_mtimes_ns, (*plan)[0].file_mtimes_ns);
  EXPECT_EQ(back->partition_key_value, (*plan)[0].partition_key_value);
}

TEST_F(KeyPartitionerTest, NoFileMatchingTheFormatIsAnErrorListingThem) {
  Write("a.txt", "x");
  Write("b/c.txt", "y");
  auto plan = Plan(Spec(Files("{user}/{genres}.wav"), {"user"}));
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("spec.inputs[0].partitionFormat: none of the 2"));
  EXPECT_THAT(plan.status().message(), HasSubstr("a.txt, b/c.txt"));
}

TEST_F(KeyPartitionerTest, TabularPartitionsTakeEveryRowOfAKeyWhateverFileItIsIn) {
  Write("a.csv", "Store,Brand,qty\n1,tropicana,3\n1,dominicks,4\n\n2,tropicana,5\n1,tropicana,6\n");
  Write("b.csv", "qty,Brand,Store\r\n7,tropicana,2\r\n8,\"tropicana\",1\r\n9,minute maid,2\r\n");
  auto plan = Plan(Spec(Table(), {"Store", "Brand"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 4u);
  const MiniBatch& first = (*plan)[0];
  EXPECT_EQ(first.partition_key_value, (KeyValues{{"Store", "1"}, {"Brand", "tropicana"}}));
  EXPECT_EQ(first.items, 3);
  ASSERT_EQ(first.segments.size(), 2u);
  EXPECT_EQ(first.segments[0].file, "a.csv");
  EXPECT_EQ(first.segments[0].header_end, 16);
  EXPECT_EQ(first.segments[1].file, "b.csv");
  EXPECT_EQ(Rows(first), "1,tropicana,3\n1,tropicana,6\n8,\"tropicana\",1\r\n");
  EXPECT_EQ((*plan)[1].partition_key_value, (KeyValues{{"Store", "1"}, {"Brand", "dominicks"}}));
  EXPECT_EQ(Rows((*plan)[2]), "2,tropicana,5\n7,tropicana,2\r\n");
  EXPECT_EQ(Rows((*plan)[3]), "9,minute maid,2\r\n");
  EXPECT_EQ((*plan)[3].segments[0].file_size, 66);
  EXPECT_TRUE(plan->back().file.empty());
}

TEST_F(KeyPartitionerTest, ConsecutiveRowsOfAPartitionAreOneRange) {
  std::ostringstream csv;
  csv << "k,v\n";
  for (int i = 0; i < 3000; ++i) csv << (i < 1000 ? "a" : i < 2000 ? "b" : "a") << "," << i << "\n";
  Write("big.csv", csv.str());
  auto plan = Plan(Spec(Table(), {"k"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0].items, 2000);
  ASSERT_EQ((*plan)[0].segments.size(), 1u);
  EXPECT_EQ((*plan)[0].segments[0].ranges.size(), 2u);
  EXPECT_EQ((*plan)[1].segments[0].ranges.size(), 1u);
}

TEST_F(KeyPartitionerTest, ManyInterleavedPartitionsSpillAndComeBackComplete) {
  std::ostringstream csv;
  csv << "id,k\n";
  std::map<std::string, int> expected;
  for (int i = 0; i < 200000; ++i) {
    const std::string k = "p" + std::to_string((i * 7919) % 5000);
    csv << i << "," << k << "\n";
    ++expected[k];
  }
  Write("rows.csv", csv.str());
  auto plan = Plan(Spec(Table(), {"k"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), expected.size());
  int64_t total = 0;
  for (const MiniBatch& mb : *plan) {
    EXPECT_EQ(mb.items, expected[mb.partition_key_value[0].second]);
    total += mb.items;
    const std::string rows = Rows(mb);
    EXPECT_EQ(std::count(rows.begin(), rows.end(), '\n'), mb.items);
  }
  EXPECT_EQ(total, 200000);
  EXPECT_EQ((*plan)[0].partition_key_value[0].second, "p0");  // first appearance
  EXPECT_EQ((*plan)[1].partition_key_value[0].second, "p2919");
}

long PeakRssKb() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// The worst case for the spill: every row starts a new run (1000 partitions, round robin), so
// the spill files hold a record per row; memory must not follow the rows.
TEST_F(KeyPartitionerTest, PartitioningA40MbCsvRowByRowDoesNotHoldItsRows) {
  const std::string path = dir_ + "/in/big.csv";
  int64_t rows = 0;
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::string chunk = "id,store,note\n";
    int64_t written = 0;
    while (written < (40 << 20)) {
      chunk += std::to_string(rows) + ",s" + std::to_string(rows % 1000) + ",\"a, b\"\n";
      ++rows;
      if (chunk.size() > (1 << 16)) {
        written += static_cast<int64_t>(chunk.size());
        std::fwrite(chunk.data(), 1, chunk.size(), f);
        chunk.clear();
      }
    }
    std::fwrite(chunk.data(), 1, chunk.size(), f);
    std::fclose(f);
  }
  const long before = PeakRssKb();
  auto p = MakePartitioner(Spec(Table(), {"store"}), {dir_ + "/in"}, dir_ + "/scratch");
  ASSERT_TRUE(p.ok());
  int64_t items = 0, batches = 0;
  while (true) {
    auto next = (*p)->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    items += (*next)->items;
    EXPECT_EQ(static_cast<int64_t>((*next)->segments[0].ranges.size()), (*next)->items);
    ++batches;
  }
  EXPECT_EQ(items, rows);
  EXPECT_EQ(batches, 1000);
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in quarantine and adds shadow memory: RSS says nothing here.
  (void)before;
#else
  EXPECT_LT(PeakRssKb() - before, 20 * 1024) << "peak RSS grew by more than 20 MB";
#endif
  EXPECT_TRUE(fs::is_empty(dir_ + "/scratch"));  // the spill files have no names
}

TEST_F(KeyPartitionerTest, MissingColumnIsAnErrorNamingTheFileAndColumn) {
  Write("a.csv", "Store,Brand\n1,x\n");
  Write("b.csv", "Store,brand\n1,x\n");
  auto plan = Plan(Spec(Table(), {"Store", "Brand"}));
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("b.csv: has no column \"Brand\""));
  EXPECT_THAT(plan.status().message(), HasSubstr("its columns: Store, brand"));

  fs::remove(dir_ + "/in/a.csv");
  fs::remove(dir_ + "/in/b.csv");
  Write("c.jsonl", "{\"Store\": 1, \"Brand\": \"x\"}\n{\"Store\": 2}\n");
  plan = Plan(Spec(Table(), {"Store", "Brand"}));
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(),
              HasSubstr("c.jsonl: the row at byte 27 has no column \"Brand\""));
}

TEST_F(KeyPartitionerTest, CsvWithoutHeaderNamesItsColumnsByIndexAsPandasDoes) {
  Write("a.csv", "x,1\ny,2\nx,3\n");
  Input in = Table();
  in.header = false;
  auto plan = Plan(Spec(in, {"0"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0].partition_key_value, (KeyValues{{"0", "x"}}));
  EXPECT_EQ(Rows((*plan)[0]), "x,1\nx,3\n");
  EXPECT_EQ((*plan)[0].segments[0].header_end, 0);
  auto bad = Plan(Spec(in, {"Store"}));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("a.csv: has no header, so its columns are named"));
}

TEST_F(KeyPartitionerTest, JsonLinesPartitionByValueText) {
  Write("r.jsonl",
        "{\"s\": 1, \"b\": \"x\"}\n{\"s\": 2, \"b\": \"x\"}\n{\"s\": 1, \"b\": \"x\"}\n");
  auto plan = Plan(Spec(Table(), {"s", "b"}));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0].partition_key_value, (KeyValues{{"s", "1"}, {"b", "x"}}));
  EXPECT_EQ((*plan)[0].items, 2);
  EXPECT_EQ((*plan)[0].segments[0].format, TabularFormat::kJsonl);
  EXPECT_EQ((*plan)[0].segments[0].header_end, 0);
}

TEST(KeyPlanRecordTest, PartitionedRecordsRoundTrip) {
  MiniBatch mb;
  mb.id = 4;
  mb.items = 3;
  mb.partition_key_value = {{"Store", "1"}, {"Brand", "a \"b\""}};
  mb.segments.push_back(
      TableSegment{"x/a.csv", TabularFormat::kCsv, 10, {{10, 20}, {30, 45}}, 100, 1234});
  mb.segments.push_back(TableSegment{"b.jsonl", TabularFormat::kJsonl, 0, {{0, 9}}, 9, 5});
  const std::string record = EncodePlanRecord(mb);
  auto back = DecodePlanRecord(record);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << record;
  EXPECT_EQ(back->partition_key_value, mb.partition_key_value);
  ASSERT_EQ(back->segments.size(), 2u);
  EXPECT_EQ(back->segments[0].ranges, mb.segments[0].ranges);
  EXPECT_EQ(back->segments[1].format, TabularFormat::kJsonl);
  EXPECT_EQ(back->segments[0].file_mtime_ns, 1234);
  EXPECT_EQ(EncodePlanRecord(*back), record);

  MiniBatch files;
  files.files = {"ann/rock.wav"};
  files.items = 1;
  files.partition_key_value = {{"user", "ann"}};
  auto f = DecodePlanRecord(EncodePlanRecord(files));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->partition_key_value, files.partition_key_value);
  EXPECT_THAT(f->files, ElementsAre("ann/rock.wav"));

  EXPECT_FALSE(DecodePlanRecord(R"({"id":0,"in":0,"n":1,"s":[]})").ok());
  EXPECT_FALSE(DecodePlanRecord(R"({"id":0,"in":0,"n":1,"k":[["a"]],"f":["x"]})").ok());
  EXPECT_FALSE(
      DecodePlanRecord(R"({"id":0,"in":0,"n":1,"s":[{"p":"a","h":5,"r":[[1,4]],"sz":1,"mt":1}]})")
          .ok());
}

}  // namespace
}  // namespace parallelrun::rt
