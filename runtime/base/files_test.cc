#include "runtime/base/files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

class FilesTest : public ::testing::Test {
 protected:
  fakes::TempDir tmp_{"files_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(FilesTest, WriteFileAtomicCreatesFoldersAndReplacesContent) {
  std::string p = dir_ + "/a/b/c.txt";
  ASSERT_TRUE(WriteFileAtomic(p, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(p, "two").ok());
  auto got = ReadFile(p);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "two");
  // No temporary file is left behind.
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir_ + "/a/b")) n += e.is_regular_file();
  EXPECT_EQ(n, 1);
}

TEST_F(FilesTest, ReadMissingFileIsNotFoundNamingThePath) {
  auto got = ReadFile(dir_ + "/nope");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find(dir_ + "/nope"), std::string::npos);
}

TEST_F(FilesTest, AppendFileAppendsAcrossReopen) {
  std::string p = dir_ + "/log/x.txt";
  {
    auto f = AppendFile::Open(p);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->Append("a\n").ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  auto f = AppendFile::Open(p);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->Append("b\n").ok());
  EXPECT_EQ(*ReadFile(p), "a\nb\n");
}

TEST(PathTest, JoinDirnameAbsolute) {
  EXPECT_EQ(JoinPath("/a", "b"), "/a/b");
  EXPECT_EQ(JoinPath("/a/", "b"), "/a/b");
  EXPECT_EQ(JoinPath("/a", "/b"), "/b");
  EXPECT_EQ(Dirname("/a/b/c"), "/a/b");
  EXPECT_EQ(Dirname("c"), ".");
  EXPECT_EQ(AbsolutePath("x/../y/", "/base"), "/base/y");
  EXPECT_EQ(AbsolutePath("/abs/./p", "/base"), "/abs/p");
}

}  // namespace
}  // namespace parallelrun::rt
