// Group commit of part files: what SyncPartFiles reports for files it can and cannot sync. (That
// the data reaches the disk is the kernel's part; these tests check the agent's side.)
#include "runtime/agent/part_sync.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

class PartSyncTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_.Sub(name);
    std::ofstream(path) << text;
    return path;
  }
  fakes::TempDir dir_{"part_sync_test"};
};

TEST_F(PartSyncTest, OneFileAndItsHeaderAreSynced) {
  std::string part = Write("1.1", "a\nb\n");
  Write("1.1.header", "x y\n");
  std::vector<std::string> errors = SyncPartFiles({part}, true);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "");
}

TEST_F(PartSyncTest, AHeaderCompanionIsOptional) {
  std::string with = Write("1.1", "a\n");
  Write("1.1.header", "x\n");
  std::string without = Write("2.1", "b\n");
  std::vector<std::string> errors = SyncPartFiles({with, without}, true);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST_F(PartSyncTest, SeveralFilesAreSyncedTogether) {
  std::vector<std::string> parts;
  for (int i = 0; i < 5; ++i) parts.push_back(Write(std::to_string(i) + ".1", "row\n"));
  std::vector<std::string> errors = SyncPartFiles(parts, false);
  ASSERT_EQ(errors.size(), 5u);
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

TEST_F(PartSyncTest, AMissingFileIsNamedAndTheOthersAreStillSynced) {
  std::string good = Write("1.1", "row\n");
  std::string missing = dir_.Sub("2.1");
  std::vector<std::string> errors = SyncPartFiles({good, missing}, false);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "");
  EXPECT_NE(errors[1].find(missing), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("No such file"), std::string::npos) << errors[1];

  errors = SyncPartFiles({missing}, true);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(missing), std::string::npos) << errors[0];
}

TEST_F(PartSyncTest, ManyPartsEachGetTheirOwnOutcome) {
  // More parts than fsyncs run at once, with headers, some missing: each error lands on its part.
  std::vector<std::string> parts;
  for (int i = 0; i < 40; ++i) {
    const std::string name = std::to_string(i) + ".1";
    if (i % 7 == 3) {
      parts.push_back(dir_.Sub(name));  // never written
      continue;
    }
    parts.push_back(Write(name, "row " + std::to_string(i) + "\n"));
    if (i % 2 == 0) Write(name + ".header", "h\n");
  }
  std::vector<std::string> errors = SyncPartFiles(parts, true);
  ASSERT_EQ(errors.size(), parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i % 7 == 3) {
      EXPECT_NE(errors[i].find(parts[i] + ":"), std::string::npos) << i << ": " << errors[i];
    } else {
      EXPECT_EQ(errors[i], "") << i;
    }
  }
}

TEST_F(PartSyncTest, AFileThatCannotBeSyncedIsNamedBetweenOthersThatAre) {
  // A character device has no fsync: refused by kernel AIO at submission (EINVAL), then by
  // fsync itself; the files before and after it are still synced.
  std::string before = Write("3.1", "a\n");
  std::string device = dir_.Sub("3.2");
  std::filesystem::create_symlink("/dev/null", device);
  std::string after = Write("3.3", "c\n");
  std::vector<std::string> errors = SyncPartFiles({before, device, after}, false);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "cannot sync part file " + device + ": Invalid argument");
  EXPECT_EQ(errors[2], "");
  // And the next report's files still go (AIO is not given up for one refused file).
  EXPECT_EQ(SyncPartFiles({Write("4.1", "d\n"), Write("4.2", "e\n")}, false),
            (std::vector<std::string>{"", ""}));
}

}  // namespace
}  // namespace parallelrun::rt
