#include "runtime/output/part_cleanup.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "runtime/base/files.h"

namespace parallelrun::rt {
namespace {

std::string TestDir() {
  std::string dir = ::testing::TempDir() + "part_cleanup_test_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(RemovePartsFolderTest, RemovesEveryPartFolderAndTheFolderItself) {
  const std::string parts = TestDir() + "/parts";
  std::filesystem::create_directories(parts + "/sub/deeper");
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(WriteFileAtomic(parts + "/" + std::to_string(i) + ".1", "row\n").ok());
  }
  ASSERT_TRUE(WriteFileAtomic(parts + "/7.1.header", "a b\n").ok());
  ASSERT_TRUE(WriteFileAtomic(parts + "/sub/deeper/x", "x").ok());
  std::filesystem::create_symlink(parts + "/sub", parts + "/link");
  ASSERT_TRUE(RemovePartsFolder(parts).ok());
  EXPECT_FALSE(std::filesystem::exists(parts));
}

TEST(RemovePartsFolderTest, FollowsNoLinkOutOfTheFolder) {
  const std::string dir = TestDir();
  std::filesystem::create_directories(dir + "/kept");
  ASSERT_TRUE(WriteFileAtomic(dir + "/kept/file", "x").ok());
  std::filesystem::create_directories(dir + "/parts");
  std::filesystem::create_directory_symlink(dir + "/kept", dir + "/parts/link");
  ASSERT_TRUE(RemovePartsFolder(dir + "/parts", 1).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/parts"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/kept/file"));
}

TEST(RemovePartsFolderTest, AMissingFolderIsNothingToDo) {
  EXPECT_TRUE(RemovePartsFolder(TestDir() + "/never-made").ok());
}

TEST(RemovePartsFolderTest, SaysWhatCouldNotBeRemoved) {
  const std::string dir = TestDir();
  // A folder under a file's name cannot be removed: the path goes through a file.
  ASSERT_TRUE(WriteFileAtomic(dir + "/file", "x").ok());
  Status st = RemovePartsFolder(dir + "/file/parts");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir + "/file/parts"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace parallelrun::rt
