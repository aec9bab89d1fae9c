// The check of a file lease's inputs against the plan (InputChanged, job_settings.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/agent/agent_impl.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

using fakes::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A file lease over `paths` as planned now (their sizes and mtimes).
protocol::Lease PlannedLease(const std::vector<std::string>& paths) {
  protocol::Lease lease;
  lease.input_type = "file";
  for (const std::string& p : paths) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    lease.files.push_back(p);
    lease.file_sizes.push_back(st.st_size);
    lease.file_mtimes_ns.push_back(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
  }
  return lease;
}

TEST(InputChangedTest, FilesAreLookedUpWhereTheirPathsLeadNow) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/in";
  const std::string other = tmp.path() + "/other";
  std::filesystem::create_directories(dir);
  std::filesystem::create_directories(other);
  WriteText(dir + "/a.txt", "a\n");
  WriteText(dir + "/b.txt", "bb\n");
  WriteText(other + "/c.txt", "c\n");
  const protocol::Lease lease = PlannedLease({dir + "/a.txt", other + "/c.txt", dir + "/b.txt"});
  EXPECT_EQ(InputChanged(lease), std::nullopt);
  EXPECT_EQ(InputChanged(lease), std::nullopt);  // the folders are open now: same answer

  // The folder is replaced by another with other files under the same names: they are the ones
  // the worker would read, so they are the ones checked.
  std::filesystem::rename(dir, tmp.path() + "/in.old");
  std::filesystem::create_directories(dir);
  WriteText(dir + "/a.txt", "a\n");
  WriteText(dir + "/b.txt", "a longer b\n");
  auto changed = InputChanged(lease);
  ASSERT_TRUE(changed.has_value());
  EXPECT_THAT(*changed, HasSubstr(dir + "/b.txt (size 3 bytes"));
  EXPECT_THAT(*changed, HasSubstr("now 11 bytes"));
  EXPECT_THAT(*changed, Not(HasSubstr("c.txt")));

  // Gone: named with the reason.
  std::filesystem::remove_all(dir);
  changed = InputChanged(lease);
  ASSERT_TRUE(changed.has_value());
  EXPECT_THAT(*changed, HasSubstr(dir + "/a.txt (cannot be read now: No such file or directory)"));
  EXPECT_THAT(*changed, HasSubstr(dir + "/b.txt (cannot be read now"));
  EXPECT_THAT(*changed, Not(HasSubstr("c.txt")));
}

TEST(InputChangedTest, AFileChangedInPlaceIsNamed) {
  TempDir tmp;
  const std::string a = tmp.path() + "/a.txt";
  WriteText(a, "one\n");
  protocol::Lease lease = PlannedLease({a});
  lease.files.push_back("relative-name-that-does-not-exist.txt");  // no folder in the path
  lease.file_sizes.push_back(5);
  lease.file_mtimes_ns.push_back(0);
  auto changed = InputChanged(lease);
  ASSERT_TRUE(changed.has_value());
  EXPECT_THAT(*changed, HasSubstr("relative-name-that-does-not-exist.txt (cannot be read now"));
  EXPECT_THAT(*changed, Not(HasSubstr(a)));
  WriteText(a, "two, longer\n");
  changed = InputChanged(lease);
  ASSERT_TRUE(changed.has_value());
  EXPECT_THAT(*changed, HasSubstr(a + " (size 4 bytes"));
}

}  // namespace
}  // namespace parallelrun::rt
