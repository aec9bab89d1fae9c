#include "runtime/partitioner/partitioner.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>

#include "runtime/base/files.h"
#include "runtime/partitioner/row_scanner.h"

namespace parallelrun::rt {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class PartitionerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pr_partitioner_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `content` to dir_/rel, creating folders.
  void Write(const std::string& rel, const std::string& content) {
    const fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }

  static Input FileInput(const std::string& pattern = "") {
    Input in;
    in.type = InputType::kFile;
    in.pattern = pattern;
    return in;
  }
  static Input TableInput(TabularFormat format = TabularFormat::kAuto, bool header = true) {
    Input in;
    in.type = InputType::kTabular;
    in.format = format;
    in.header = header;
    return in;
  }
  static JobSpec Spec(std::vector<Input> inputs, int64_t mini_batch_size) {
    JobSpec spec;
    spec.inputs = std::move(inputs);
    spec.mini_batch_size = mini_batch_size;
    return spec;
  }

  // The whole plan; fails the test on an error.
  std::vector<MiniBatch> Plan(const JobSpec& spec, const std::vector<std::string>& dirs) {
    std::vector<MiniBatch> out;
    auto p = MakePartitioner(spec, dirs);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return out;
    while (true) {
      auto next = (*p)->Next();
      EXPECT_TRUE(next.ok()) << next.status().ToString();
      if (!next.ok() || !next->has_value()) break;
      out.push_back(std::move(**next));
    }
    return out;
  }
  std::vector<MiniBatch> Plan(const JobSpec& spec) { return Plan(spec, {dir_}); }

  // The first error of the plan.
  Status PlanError(const JobSpec& spec, const std::vector<std::string>& dirs) {
    auto p = MakePartitioner(spec, dirs);
    if (!p.ok()) return p.status();
    while (true) {
      auto next = (*p)->Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) return Status::Ok();
    }
  }

  static std::vector<std::string> AllFiles(const std::vector<MiniBatch>& plan) {
    std::vector<std::string> files;
    for (const MiniBatch& mb : plan) files.insert(files.end(), mb.files.begin(), mb.files.end());
    return files;
  }

  std::string dir_;
};

// The non-blank rows of `text` (the way pandas sees them), each with its newline.
std::vector<std::string> Rows(std::string_view text, bool csv) {
  std::vector<std::string> rows;
  int64_t begin = 0;
  for (int64_t end : RowEnds(text, csv)) {
    std::string row(text.substr(begin, end - begin));
    begin = end;
    if (row.find_first_not_of(csv ? " \t\r\n" : " \t\r\n\f\v") == std::string::npos) continue;
    if (row.back() != '\n') row += '\n';
    rows.push_back(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// File inputs

TEST_F(PartitionerTest, FilesComeDepthFirstInByteOrderOfEntryNamesAtEachLevel) {
  for (const char* f : {"b", "a0", "a.txt", "a-b", "a/x", "a/b/y", "_z", "B.txt"}) Write(f, "x");
  auto plan = Plan(Spec({FileInput()}, 100));
  // 'B' < '_' < 'a'; the folder "a" sorts by its own name, before "a-b" ('-' > end of name), so
  // its content comes before "a-b" even though "a-b" < "a/x" as whole paths.
  EXPECT_THAT(AllFiles(plan),
              ElementsAre("B.txt", "_z", "a/b/y", "a/x", "a-b", "a.txt", "a0", "b"));
}

TEST_F(PartitionerTest, WalkOrderMatchesAReferenceWalkOnAWideNestedTree) {
  std::mt19937 rng(7);
  const std::string alphabet = "aAzZ09_-.~ ";
  std::vector<std::string> folders = {""};
  for (int i = 0; i < 600; ++i) {
    std::string name;
    for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k) {
      name += alphabet[rng() % alphabet.size()];
    }
    const std::string parent = folders[rng() % folders.size()];
    if (fs::exists(fs::path(dir_) / (parent + name))) continue;
    if (rng() % 4 == 0) {
      fs::create_directories(fs::path(dir_) / (parent + name));
      folders.push_back(parent + name + "/");
    } else {
      Write(parent + name, "x");
    }
  }
  // Reference: recursive, entries of each folder sorted as strings.
  std::vector<std::string> expected;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / rel)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      if (fs::is_directory(fs::path(dir_) / (rel + n))) {
        walk(rel + n + "/");
      } else {
        expected.push_back(rel + n);
      }
    }
  };
  walk("");
  ASSERT_GT(expected.size(), 300u);
  EXPECT_EQ(AllFiles(Plan(Spec({FileInput()}, 7))), expected);
}

TEST_F(PartitionerTest, FifosAndDanglingLinksAreLeftOutAndListedInOneWarning) {
  Write("a.txt", "a");
  Write("sub/b.txt", "b");
  ASSERT_EQ(::mkfifo((dir_ + "/pipe").c_str(), 0644), 0);
  ASSERT_EQ(::symlink("/nonexistent/target", (dir_ + "/sub/dead").c_str()), 0);
  ASSERT_EQ(::mkfifo((dir_ + "/skip.fifo").c_str(), 0644), 0);  // not matched by the pattern
  auto p = MakePartitioner(Spec({FileInput("*[!o]")}, 10), {dir_});
  ASSERT_TRUE(p.ok());
  auto mb = (*p)->Next();
  ASSERT_TRUE(mb.ok() && mb->has_value());
  EXPECT_EQ((**mb).files, (std::vector<std::string>{"a.txt", "sub/b.txt"}));
  ASSERT_TRUE((*p)->Next().ok());
  std::vector<std::string> warnings = (*p)->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "spec.inputs[0]: left out 2 entries of " + dir_ +
                             " that are not a regular file: pipe (a FIFO), sub/dead (a dangling "
                             "symbolic link)");
  EXPECT_TRUE((*p)->TakeWarnings().empty());  // each once
}

TEST_F(PartitionerTest, PatternStarMatchesAcrossFolders) {
  for (const char* f : {"x.jpg", "d/y.jpg", "d/e/z.jpg", "d/e/w.png", "q.JPG"}) Write(f, "x");
  EXPECT_THAT(AllFiles(Plan(Spec({FileInput("*.jpg")}, 10))),
              ElementsAre("d/e/z.jpg", "d/y.jpg", "x.jpg"));
  EXPECT_THAT(AllFiles(Plan(Spec({FileInput("d/*")}, 10))),
              ElementsAre("d/e/w.png", "d/e/z.jpg", "d/y.jpg"));
  EXPECT_THAT(AllFiles(Plan(Spec({FileInput("d/?.jpg")}, 10))), ElementsAre("d/y.jpg"));
}

TEST_F(PartitionerTest, FilesAreCutIntoMiniBatchesOfTheGivenCount) {
  for (int i = 0; i < 25; ++i) Write("f" + std::to_string(100 + i), "x");
  auto plan = Plan(Spec({FileInput()}, 10));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].items, 10);
  EXPECT_EQ(plan[1].items, 10);
  EXPECT_EQ(plan[2].items, 5);
  EXPECT_EQ(plan[2].files.front(), "f120");
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].id, static_cast<int64_t>(i));
    EXPECT_EQ(static_cast<int64_t>(plan[i].files.size()), plan[i].items);
  }
  EXPECT_EQ(Plan(Spec({FileInput()}, 1)).size(), 25u);
  EXPECT_EQ(Plan(Spec({FileInput()}, 25)).size(), 1u);
}

TEST_F(PartitionerTest, IdsContinueAcrossInputsAndNoMiniBatchSpansTwo) {
  for (const char* f : {"one/a", "one/b", "one/c", "two/a", "two/b", "two/c", "two/d"}) {
    Write(f, "x");
  }
  fs::create_directories(dir_ + "/empty");
  auto plan = Plan(Spec({FileInput(), FileInput(), FileInput()}, 2),
                   {dir_ + "/one", dir_ + "/empty", dir_ + "/two"});
  ASSERT_EQ(plan.size(), 4u);
  std::vector<std::pair<int, std::vector<std::string>>> got;
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].id, static_cast<int64_t>(i));
    got.emplace_back(plan[i].input_index, plan[i].files);
  }
  using V = std::vector<std::string>;
  EXPECT_THAT(got, ElementsAre(std::pair(0, V{"a", "b"}), std::pair(0, V{"c"}),
                               std::pair(2, V{"a", "b"}), std::pair(2, V{"c", "d"})));
}

TEST_F(PartitionerTest, EmptyFolderGivesNoMiniBatches) {
  EXPECT_TRUE(Plan(Spec({FileInput()}, 10)).empty());
  EXPECT_TRUE(Plan(Spec({TableInput()}, 1024)).empty());
  fs::create_directories(dir_ + "/a/b/c");
  EXPECT_TRUE(Plan(Spec({FileInput()}, 10)).empty());
}

TEST_F(PartitionerTest, SymlinksToFilesCountAndOtherEntriesAreSkipped) {
  Write("real/f", "x");
  fs::create_symlink(dir_ + "/real/f", dir_ + "/link_to_file");
  fs::create_symlink(dir_ + "/nowhere", dir_ + "/dangling");
  fs::create_directory_symlink(dir_, dir_ + "/real/loop");  // back to the root: not walked again
  fs::create_directory_symlink(dir_ + "/real", dir_ + "/z_linked_folder");
  ASSERT_EQ(::mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
  EXPECT_THAT(AllFiles(Plan(Spec({FileInput()}, 10))),
              ElementsAre("link_to_file", "real/f", "z_linked_folder/f"));
}

TEST_F(PartitionerTest, MissingInputFolderIsNotFoundNamingTheInputAndFolder) {
  fs::create_directories(dir_ + "/there");
  auto p =
      MakePartitioner(Spec({FileInput(), FileInput()}, 10), {dir_ + "/there", dir_ + "/not-there"});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(p.status().message(), HasSubstr("spec.inputs[1].source"));
  EXPECT_THAT(p.status().message(), HasSubstr(dir_ + "/not-there"));
}

TEST_F(PartitionerTest, InputThatIsAFileIsRejected) {
  Write("plain", "x");
  auto p = MakePartitioner(Spec({FileInput()}, 10), {dir_ + "/plain"});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("spec.inputs[0].source"));
  EXPECT_THAT(p.status().message(), HasSubstr("not a folder"));
}

TEST_F(PartitionerTest, FolderThatCannotBeOpenedIsAnErrorNamingIt) {
  // A path longer than PATH_MAX cannot be opened even by root (who ignores permissions).
  Write("a_first", "x");
  int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  const std::string long_name(200, 'd');
  for (int i = 0; i < 25; ++i) {
    ASSERT_EQ(::mkdirat(fd, long_name.c_str(), 0700), 0);
    int sub = ::openat(fd, long_name.c_str(), O_RDONLY | O_DIRECTORY);
    ::close(fd);
    ASSERT_GE(sub, 0);
    fd = sub;
  }
  ::close(fd);
  Status st = PlanError(Spec({FileInput()}, 1), {dir_});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("spec.inputs[0]"));
  EXPECT_THAT(st.message(), HasSubstr("cannot read folder " + dir_ + "/" + long_name + "/"));
  // Rename the chain to short names so the fixture can remove it.
  fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  for (int i = 0; i < 25 && fd >= 0; ++i) {
    ::renameat(fd, long_name.c_str(), fd, "s");
    int sub = ::openat(fd, "s", O_RDONLY | O_DIRECTORY);
    ::close(fd);
    fd = sub;
  }
  if (fd >= 0) ::close(fd);
}

TEST_F(PartitionerTest, UnreadableTableIsAnErrorNamingIt) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  Write("t.csv", "a\n1\n");
  ::chmod((dir_ + "/t.csv").c_str(), 0);
  Status st = PlanError(Spec({TableInput()}, 1024), {dir_});
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr(dir_ + "/t.csv"));
}

TEST_F(PartitionerTest, HeaderWithAnUnclosedQuoteIsAnErrorNamingTheFile) {
  Write("t.csv", "a,\"b\n1,2\n3,4\n");
  Status st = PlanError(Spec({TableInput()}, 1024), {dir_});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), AllOf(HasSubstr(dir_ + "/t.csv"), HasSubstr("never closed")));
}

TEST_F(PartitionerTest, HeaderOnlyFilesAreEmptyTables) {
  Write("a.csv", "x,y\n");
  Write("b.csv", "x,y");
  Write("c.csv", "x,y\r\n\r\n");
  Write("d.csv", "n\r1\r");
  auto plan = Plan(Spec({TableInput()}, 1024));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].file, "d.csv");
  EXPECT_EQ(plan[0].items, 1);
}

TEST_F(PartitionerTest, NonUtf8FileNameIsAnErrorUnlessThePatternLeavesItOut) {
  Write("ok.jpg", "x");
  Write("bad\xff.txt", "x");
  Status st = PlanError(Spec({FileInput()}, 10), {dir_});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("bad\\xff.txt"));
  EXPECT_THAT(st.message(), HasSubstr("spec.inputs[0].pattern"));
  EXPECT_THAT(AllFiles(Plan(Spec({FileInput("*.jpg")}, 10))), ElementsAre("ok.jpg"));
}

TEST_F(PartitionerTest, ErrorIsStickyOnLaterCalls) {
  Write("x.txt", "a\n");
  auto p = MakePartitioner(Spec({TableInput()}, 10), {dir_});
  ASSERT_TRUE(p.ok());
  auto first = (*p)->Next();
  ASSERT_FALSE(first.ok());
  auto second = (*p)->Next();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(), first.status().message());
}

// ---------------------------------------------------------------------------------------------
// Row splitting

struct RowEndsCase {
  std::string name;
  std::string data;
  bool csv;
  std::vector<int64_t> ends;
};

TEST(RowEndsTest, FindsRowEndsHonouringCsvQuotes) {
  const std::vector<RowEndsCase> cases = {
      {"empty", "", true, {}},
      {"simple", "a,b\n1,2\n", true, {4, 8}},
      {"no final newline", "a\nb", true, {2, 3}},
      {"quoted separator", "\"a,b\",c\n1\n", true, {8, 10}},
      {"doubled quotes", "\"a\"\"b\",c\n1\n", true, {9, 11}},
      {"newline in quotes", "\"a\nb\",c\n1\n", true, {8, 10}},
      {"newline in quoted later field", "1,\"x\ny\"\n2\n", true, {8, 10}},
      {"doubled quote then newline in quotes", "\"a\"\"\nb\"\n", true, {8}},
      {"crlf", "a,b\r\n1,2\r\n", true, {5, 10}},
      {"blank lines are rows here", "a\n\n\r\nb\n", true, {2, 3, 5, 7}},
      {"cr only (old Mac)", "a,b\r1,2\r3,4", true, {4, 8, 11}},
      {"cr, crlf and lf mixed", "a\rb\r\nc\nd\r", true, {2, 5, 7, 9}},
      {"blank cr rows", "a\r\r \rb\r", true, {2, 3, 5, 7}},
      {"cr in quotes is data", "\"a\rb\",c\r1\r", true, {8, 10}},
      {"cr after closing quote ends the row", "\"a\"\r1\r", true, {4, 6}},
      {"jsonl rows end at lf only", "{}\r{}\n{}", false, {6, 8}},
      {"quote inside unquoted field is literal", "5'10\",x\ny\n", true, {8, 10}},
      {"text after closing quote is unquoted", "\"a\"b\"\nc\n", true, {6, 8}},
      {"quote after blanks is literal", "  \"a\nb\n", true, {5, 7}},
      {"empty quoted field", "\"\",\"\"\n\"\"\n", true, {6, 9}},
      {"unterminated quote runs to the end", "\"abc\ndef", true, {8}},
      {"jsonl ignores quotes", "{\"a\":\"x\n{}\n", false, {8, 11}},
      {"jsonl no final newline", "{}\n{}", false, {3, 5}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(RowEnds(c.data, c.csv), c.ends) << c.name;
  }
}

TEST(RowEndsTest, SameRowEndsWhateverTheWordAlignment) {
  // The scanner skips 8 bytes at a time; hits must be found at every offset of a word.
  for (int pad = 0; pad < 17; ++pad) {
    const std::string prefix(pad, 'x');
    const std::string data = prefix + ",\"q,\n\"\"\",z\n" + prefix + "\n";
    EXPECT_THAT(RowEnds(data, true), ElementsAre(pad + 11, static_cast<int64_t>(data.size())))
        << pad;
  }
}

// Rows (end, blank) found by one scanner fed `data` in pieces of `piece` bytes.
std::vector<std::pair<int64_t, bool>> ScanInPieces(std::string_view data, bool csv, size_t piece) {
  internal::RowScanner scanner(csv);
  std::vector<std::pair<int64_t, bool>> rows;
  for (size_t at = 0; at < data.size(); at += piece) {
    scanner.Scan(data.data() + at, std::min(piece, data.size() - at), 0, static_cast<int64_t>(at),
                 [&rows](int64_t end, bool blank) {
                   rows.emplace_back(end, blank);
                   return true;
                 });
  }
  bool blank = false;
  if (scanner.PendingRow(&blank)) rows.emplace_back(static_cast<int64_t>(data.size()), blank);
  return rows;
}

std::string RandomCsv(std::mt19937& rng, size_t target_size, bool header);

TEST(RowEndsTest, BlockPathAgreesWithTheByteStateMachine) {
  // Pieces under 64 bytes only ever see the byte-by-byte state machine; whole pieces go through
  // the 64-byte block path, which hands blocks with stray quotes to the state machine.
  std::mt19937 rng(11);
  for (int i = 0; i < 20; ++i) {
    const std::string data = RandomCsv(rng, 20000, i % 2 == 0);
    const auto whole = ScanInPieces(data, true, data.size());
    ASSERT_FALSE(whole.empty());
    for (size_t piece : {1, 7, 63, 64, 65, 1000}) {
      EXPECT_EQ(ScanInPieces(data, true, piece), whole) << "piece " << piece;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tabular inputs

TEST_F(PartitionerTest, CsvRowsAreCountedExactlyWithQuotedSeparatorsQuotesAndNewlines) {
  const std::string header = "id,text\n";
  const std::string body =
      "1,\"a, b\"\n"
      "2,\"she said \"\"hi\"\"\"\n"
      "3,\"two\nlines\"\n"
      "4,\"\"\"\"\n"
      "5,plain\n";
  Write("t.csv", header + body);
  auto one = Plan(Spec({TableInput()}, 1 << 20));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].file, "t.csv");
  EXPECT_EQ(one[0].format, TabularFormat::kCsv);
  EXPECT_EQ(one[0].header_end, static_cast<int64_t>(header.size()));
  EXPECT_EQ(one[0].begin, static_cast<int64_t>(header.size()));
  EXPECT_EQ(one[0].end, static_cast<int64_t>(header.size() + body.size()));
  EXPECT_EQ(one[0].items, 5);
  auto each = Plan(Spec({TableInput()}, 1));
  ASSERT_EQ(each.size(), 5u);
  for (const MiniBatch& mb : each) EXPECT_EQ(mb.items, 1);
  EXPECT_EQ(each[2].end - each[2].begin,
            static_cast<int64_t>(std::string("3,\"two\nlines\"\n").size()));
}

TEST_F(PartitionerTest, RangeEndsAtFirstRowEndAtOrAfterStartPlusSize) {
  std::string body;
  for (int i = 0; i < 10; ++i) body += "row_" + std::to_string(i) + "____\n";  // 10 bytes each
  Write("t.csv", "h\n" + body);
  auto plan = Plan(Spec({TableInput()}, 25));
  // From 2: 27 is inside the third row, which ends at 32; then 57 → 62; then 87 → 92; last 102.
  ASSERT_EQ(plan.size(), 4u);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const MiniBatch& mb : plan) ranges.emplace_back(mb.begin, mb.end);
  EXPECT_THAT(
      ranges,
      ElementsAre(std::pair<int64_t, int64_t>(2, 32), std::pair<int64_t, int64_t>(32, 62),
                  std::pair<int64_t, int64_t>(62, 92), std::pair<int64_t, int64_t>(92, 102)));
  EXPECT_EQ(plan[3].items, 1);
  // Exactly on a row end: 30 bytes end the range at 32, not at the next row.
  auto exact = Plan(Spec({TableInput()}, 30));
  ASSERT_EQ(exact.size(), 4u);
  EXPECT_EQ(exact[0].end, 32);
}

TEST_F(PartitionerTest, EveryCsvFileCarriesItsOwnHeader) {
  Write("a.csv", "x,y\n1,2\n3,4\n");
  Write("b.csv", "longer_header,z\n5,6\n");
  auto plan = Plan(Spec({TableInput()}, 1));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].file, "a.csv");
  EXPECT_EQ(plan[0].header_end, 4);
  EXPECT_EQ(plan[1].header_end, 4);
  EXPECT_EQ(plan[2].file, "b.csv");
  EXPECT_EQ(plan[2].header_end, 16);
  EXPECT_EQ(plan[2].begin, 16);
  EXPECT_EQ(plan[2].items, 1);
}

TEST_F(PartitionerTest, CsvWithoutHeaderCountsTheFirstRow) {
  Write("a.csv", "1,2\n3,4\n");
  auto plan = Plan(Spec({TableInput(TabularFormat::kAuto, /*header=*/false)}, 1 << 20));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].header_end, 0);
  EXPECT_EQ(plan[0].begin, 0);
  EXPECT_EQ(plan[0].items, 2);
}

TEST_F(PartitionerTest, CrlfAndMissingFinalNewline) {
  Write("a.csv", "h1,h2\r\n1,2\r\n3,4");
  auto plan = Plan(Spec({TableInput()}, 1));
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].header_end, 7);
  EXPECT_EQ(plan[0].begin, 7);
  EXPECT_EQ(plan[0].end, 12);
  EXPECT_EQ(plan[1].begin, 12);
  EXPECT_EQ(plan[1].end, 15);
  EXPECT_EQ(plan[1].items, 1);
}

TEST_F(PartitionerTest, BlankLinesAreNotRowsAndNeverMakeAMiniBatch) {
  // Blank: empty, "\r", or only spaces and tabs (pandas skips them all).
  Write("a.csv", "\n\r\nh\n1\n\n \t\r\n2\n\n\n\n");
  auto plan = Plan(Spec({TableInput()}, 1 << 20));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].header_end, 5);  // leading blank lines go with the header
  EXPECT_EQ(plan[0].items, 2);
  EXPECT_EQ(plan[0].end, 17);
  auto small = Plan(Spec({TableInput()}, 1));
  ASSERT_EQ(small.size(), 2u);  // the trailing blank lines alone are not a mini-batch
  EXPECT_EQ(small[0].items, 1);
  EXPECT_EQ(small[1].items, 1);
  Write("b.csv", "\n\n\r\n");
  Write("c.jsonl", " \n\n");
  EXPECT_EQ(Plan(Spec({TableInput()}, 1)).size(), 2u);  // b.csv and c.jsonl add nothing
}

TEST_F(PartitionerTest, EmptyAndHeaderOnlyFilesGiveNoMiniBatches) {
  Write("a_empty.csv", "");
  Write("b_header.csv", "x,y\n");
  Write("c_header_no_newline.csv", "x,y");
  Write("d.csv", "x,y\n1,2\n");
  auto plan = Plan(Spec({TableInput()}, 1 << 20));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].file, "d.csv");
  EXPECT_EQ(plan[0].id, 0);
}

TEST_F(PartitionerTest, JsonLinesRowsAreLinesAndQuotesDoNotMatter) {
  Write("a.jsonl", "{\"a\": \"x\\\"\"}\n{\"a\": \"\\\"y\"}\n\n{\"a\": 3}");
  auto plan = Plan(Spec({TableInput()}, 1 << 20));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].format, TabularFormat::kJsonl);
  EXPECT_EQ(plan[0].header_end, 0);  // header applies to csv only
  EXPECT_EQ(plan[0].items, 3);
  EXPECT_EQ(Plan(Spec({TableInput()}, 1)).size(), 3u);
}

TEST_F(PartitionerTest, FormatComesFromTheExtensionUnlessGiven) {
  Write("a.CSV", "h\n1\n");
  Write("b.json", "{}\n");
  Write("c.ndjson", "{}\n");
  auto plan = Plan(Spec({TableInput()}, 1 << 20));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].format, TabularFormat::kCsv);
  EXPECT_EQ(plan[1].format, TabularFormat::kJsonl);
  EXPECT_EQ(plan[2].format, TabularFormat::kJsonl);
  Write("d/data.txt", "h\n1\n");
  Status st = PlanError(Spec({TableInput()}, 1 << 20), {dir_});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("d/data.txt"));
  EXPECT_THAT(st.message(), HasSubstr("set spec.inputs[0].format"));
  auto given = Plan(Spec({TableInput(TabularFormat::kCsv, /*header=*/false)}, 1 << 20));
  ASSERT_EQ(given.size(), 4u);
  EXPECT_EQ(given[1].format, TabularFormat::kCsv);  // b.json read as csv when told so
  EXPECT_EQ(given[3].file, "d/data.txt");
}

TEST_F(PartitionerTest, TabularPatternSelectsFiles) {
  Write("keep/a.csv", "h\n1\n");
  Write("skip/b.csv", "h\n1\n");
  Write("notes.md", "not a table");
  Input in = TableInput();
  in.pattern = "keep/*.csv";
  auto plan = Plan(Spec({in}, 1));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].file, "keep/a.csv");
}

// Random CSV with quoted separators, doubled quotes, newlines in quotes, LF, CRLF and lone-CR
// line endings and blank lines.
std::string RandomCsv(std::mt19937& rng, size_t target_size, bool header) {
  std::string out = header ? "id,name,note\r\n" : "";
  const std::vector<std::string> fields = {"plain",          "\"a, b\"", "\"say \"\"hi\"\"\"",
                                           "\"two\nlines\"", "\"\"",     "",
                                           "\"x\r\ny\"",     "12.5",     "\"x\ry\"",
                                           "\"\"\"\"",       "5'10\"",   "\"trailing\"text"};
  int64_t id = 0;
  while (out.size() < target_size) {
    if (rng() % 50 == 0) out += rng() % 2 ? "\n" : "\r\n";  // blank line
    if (rng() % 30 == 0) out += " \"lead\n";                // a quote after a blank byte is literal
    out += std::to_string(id++);
    for (int k = 0; k < 2; ++k) out += "," + fields[rng() % fields.size()];
    const unsigned ending = rng() % 6;
    out += ending < 2 ? "\r\n" : ending == 2 ? "\r" : "\n";
  }
  if (rng() % 2 == 0 && out.back() == '\n') out.pop_back();  // no final newline
  return out;
}

// Checks that header + each range parses to exactly the file's rows, in order, once each.
void ExpectRangesCoverEveryRowOnce(const std::string& dir, const std::vector<MiniBatch>& plan,
                                   bool csv, bool header) {
  std::map<std::string, std::vector<const MiniBatch*>> by_file;
  for (const MiniBatch& mb : plan) by_file[mb.file].push_back(&mb);
  for (const auto& [file, batches] : by_file) {
    auto content = ReadFile(dir + "/" + file);
    ASSERT_TRUE(content.ok());
    std::vector<std::string> expected = Rows(*content, csv);
    const std::string header_row = header && !expected.empty() ? expected.front() : "";
    if (header && !expected.empty()) expected.erase(expected.begin());
    std::vector<std::string> got;
    for (const MiniBatch* mb : batches) {
      ASSERT_LT(mb->begin, mb->end);
      const std::string text =
          content->substr(0, mb->header_end) + content->substr(mb->begin, mb->end - mb->begin);
      std::vector<std::string> rows = Rows(text, csv);
      if (header) {
        ASSERT_FALSE(rows.empty());
        EXPECT_EQ(rows.front(), header_row);
        rows.erase(rows.begin());
      }
      EXPECT_EQ(static_cast<int64_t>(rows.size()), mb->items) << file << " " << mb->begin;
      got.insert(got.end(), rows.begin(), rows.end());
    }
    EXPECT_EQ(got, expected) << file;
  }
}

TEST_F(PartitionerTest, RangesCoverEveryRowExactlyOnce) {
  std::mt19937 rng(42);
  // One file larger than the 1 MiB read buffer, so buffer boundaries fall inside quoted fields.
  Write("big.csv", RandomCsv(rng, 3 << 20, true));
  for (int i = 0; i < 20; ++i) {
    Write("small" + std::to_string(i) + ".csv", RandomCsv(rng, rng() % 3000, true));
  }
  for (int64_t size : {1, 7, 100, 4096, 300000, 1 << 20, 64 << 20}) {
    SCOPED_TRACE(size);
    auto plan = Plan(Spec({TableInput()}, size));
    ExpectRangesCoverEveryRowOnce(dir_, plan, /*csv=*/true, /*header=*/true);
    for (size_t i = 0; i < plan.size(); ++i) EXPECT_EQ(plan[i].id, static_cast<int64_t>(i));
  }
}

TEST_F(PartitionerTest, RangesCoverEveryJsonLineExactlyOnce) {
  std::mt19937 rng(3);
  std::string text;
  for (int i = 0; i < 20000; ++i) {
    text += "{\"i\": " + std::to_string(i) + ", \"s\": \"" + std::string(rng() % 40, 'q') + "\"}";
    text += rng() % 20 == 0 ? "\n\n" : "\n";
  }
  Write("a.jsonl", text);
  for (int64_t size : {1, 1000, 65536}) {
    auto plan = Plan(Spec({TableInput()}, size));
    ExpectRangesCoverEveryRowOnce(dir_, plan, /*csv=*/false, /*header=*/false);
  }
}

TEST_F(PartitionerTest, PlanIsDeterministic) {
  std::mt19937 rng(5);
  for (int i = 0; i < 5; ++i)
    Write("d" + std::to_string(i) + "/t.csv", RandomCsv(rng, 20000, true));
  auto encode = [&] {
    std::vector<std::string> lines;
    for (const MiniBatch& mb : Plan(Spec({TableInput()}, 1000))) {
      lines.push_back(EncodePlanRecord(mb));
    }
    return lines;
  };
  auto first = encode();
  EXPECT_GT(first.size(), 50u);
  EXPECT_EQ(encode(), first);
}

// ---------------------------------------------------------------------------------------------
// Plan records

TEST(PlanRecordTest, FileRecordRoundTripsCompactly) {
  MiniBatch mb;
  mb.id = 12;
  mb.input_index = 1;
  mb.files = {"a.jpg", "sub/b \"q\".jpg", "ü.jpg"};
  mb.items = 3;
  const std::string line = EncodePlanRecord(mb);
  EXPECT_EQ(line, R"({"id":12,"in":1,"f":["a.jpg","sub/b \"q\".jpg","ü.jpg"],"n":3})");
  auto back = DecodePlanRecord(line);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 12);
  EXPECT_EQ(back->input_index, 1);
  EXPECT_EQ(back->files, mb.files);
  EXPECT_EQ(back->items, 3);
  EXPECT_TRUE(back->file.empty());
}

TEST(PlanRecordTest, TabularRecordRoundTrips) {
  MiniBatch mb;
  mb.id = 7;
  mb.file = "d/t.jsonl";
  mb.format = TabularFormat::kJsonl;
  mb.header_end = 0;
  mb.begin = 1048580;
  mb.end = 2097200;
  mb.items = 9000;
  const std::string line = EncodePlanRecord(mb);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto back = DecodePlanRecord(line);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 7);
  EXPECT_EQ(back->file, "d/t.jsonl");
  EXPECT_EQ(back->format, TabularFormat::kJsonl);
  EXPECT_EQ(back->begin, mb.begin);
  EXPECT_EQ(back->end, mb.end);
  EXPECT_EQ(back->items, mb.items);
  EXPECT_TRUE(back->files.empty());
  mb.format = TabularFormat::kCsv;
  mb.header_end = 10;
  back = DecodePlanRecord(EncodePlanRecord(mb));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->format, TabularFormat::kCsv);
  EXPECT_EQ(back->header_end, 10);
  EXPECT_EQ(back->file_size, -1);  // no fingerprint: an older plan
  // The file's fingerprint at planning travels with the record.
  mb.file_size = 2097200;
  mb.file_mtime_ns = 1765000000123456789;
  back = DecodePlanRecord(EncodePlanRecord(mb));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->file_size, 2097200);
  EXPECT_EQ(back->file_mtime_ns, 1765000000123456789);
}

TEST(PlanRecordTest, MalformedRecordsAreRejected) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "one JSON object"},
      {"END", "one JSON object"},
      {"[1]", "one JSON object"},
      {R"({"id":0,"in":0,"f":["a"],"n":1)", "one JSON object"},
      {R"({"in":0,"f":["a"],"n":1})", "\"id\""},
      {R"({"id":-1,"in":0,"f":["a"],"n":1})", "\"id\""},
      {R"({"id":1.5,"in":0,"f":["a"],"n":1})", "\"id\""},
      {R"({"id":18446744073709551615,"in":0,"f":["a"],"n":1})", "\"id\""},
      {R"({"id":0,"f":["a"],"n":1})", "\"in\""},
      {R"({"id":0,"in":0,"f":["a"]})", "\"n\""},
      {R"({"id":0,"in":0,"f":[],"n":0})", "\"f\""},
      {R"({"id":0,"in":0,"f":[3],"n":1})", "\"f\""},
      {R"({"id":0,"in":0,"f":["a","b"],"n":1})", "number of files"},
      {R"({"id":0,"in":0,"n":1})", "\"f\" (files) or \"p\""},
      {R"({"id":0,"in":0,"p":"t.csv","fmt":"tsv","h":0,"b":0,"e":5,"n":1})", "\"fmt\""},
      {R"({"id":0,"in":0,"p":"t.csv","fmt":"csv","h":0,"b":0,"n":1})", "\"e\""},
      {R"({"id":0,"in":0,"p":"t.csv","fmt":"csv","h":9,"b":4,"e":5,"n":1})", "h <= b <= e"},
      {R"({"id":0,"in":0,"p":"t.csv","fmt":"csv","h":0,"b":6,"e":5,"n":1})", "h <= b <= e"},
      {R"({"id":0,"in":0,"p":"t.csv","fmt":"csv","h":0,"b":0,"e":5,"n":1,"sz":5})", "\"mt\""},
  };
  for (const auto& [line, why] : cases) {
    auto got = DecodePlanRecord(line);
    ASSERT_FALSE(got.ok()) << line;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << line;
    EXPECT_THAT(got.status().message(), HasSubstr("plan record")) << line;
    EXPECT_THAT(got.status().message(), HasSubstr(why)) << line;
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming

long PeakRssKb() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

TEST_F(PartitionerTest, SplittingA50MbCsvDoesNotHoldTheFile) {
  const std::string path = dir_ + "/big.csv";
  int64_t rows = 0;
  int64_t written = 0;
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::string chunk;
    std::fputs("id,name,note\n", f);
    while (written < (50 << 20) + 4096) {
      chunk += std::to_string(rows++) + ",\"Doe, Jane\",\"said \"\"ok\"\"\nthen left\",12.5\n";
      if (chunk.size() > (1 << 16)) {
        written += static_cast<int64_t>(chunk.size());
        std::fwrite(chunk.data(), 1, chunk.size(), f);
        chunk.clear();
      }
    }
    std::fwrite(chunk.data(), 1, chunk.size(), f);
    std::fclose(f);
  }
  ASSERT_GT(fs::file_size(path), 50u << 20);
  const long before = PeakRssKb();
  auto p = MakePartitioner(Spec({TableInput()}, 1 << 20), {dir_});
  ASSERT_TRUE(p.ok());
  int64_t items = 0, batches = 0;
  while (true) {
    auto next = (*p)->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    items += (*next)->items;
    ++batches;
  }
  EXPECT_EQ(items, rows);
  EXPECT_GE(batches, 50);
  EXPECT_LT(PeakRssKb() - before, 20 * 1024) << "peak RSS grew by more than 20 MB";
}

}  // namespace
}  // namespace parallelrun::rt
