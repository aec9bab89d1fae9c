#include "tests/cluster/kubelet/volumes.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;

struct stat Stat(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st;
}

TEST(ApplyFsGroupTest, ChangesEveryKindButHostPathAsTheKubeletDoes) {
  if (geteuid() != 0) GTEST_SKIP() << "chown to another group needs root";
  fs::path dir = fs::temp_directory_path() / ("fs-group-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  PreparedVolumes volumes;
  for (const char* name : {"scratch", "cfg", "host", "sa"}) {
    fs::create_directories(dir / name / "sub");
    std::ofstream(dir / name / "sub" / "file") << "x";
    fs::permissions(dir / name / "sub" / "file", fs::perms(0644));
    fs::permissions(dir / name, fs::perms(0755));
    if (std::string(name) != "sa") volumes.host_paths[name] = (dir / name).string();
  }
  volumes.service_account_dir = (dir / "sa").string();
  Json pod = {{"spec",
               {{"volumes",
                 {{{"name", "scratch"}, {"emptyDir", Json::object()}},
                  {{"name", "cfg"}, {"configMap", {{"name", "settings"}}}},
                  {{"name", "host"}, {"hostPath", {{"path", (dir / "host").string()}}}}}}}}};

  ApplyFsGroup(pod, volumes, 4242);

  // Writable kinds: group rw, folders g+x and setgid.
  EXPECT_EQ(Stat(dir / "scratch").st_gid, 4242u);
  EXPECT_EQ(Stat(dir / "scratch").st_mode & 07777, 02775u);
  EXPECT_EQ(Stat(dir / "scratch" / "sub").st_mode & 07777, 02775u);
  EXPECT_EQ(Stat(dir / "scratch" / "sub" / "file").st_gid, 4242u);
  EXPECT_EQ(Stat(dir / "scratch" / "sub" / "file").st_mode & 07777, 0664u);
  // Read-only kinds (and the service-account folder): group read only.
  for (const char* name : {"cfg", "sa"}) {
    EXPECT_EQ(Stat(dir / name).st_mode & 07777, 02755u) << name;
    EXPECT_EQ(Stat(dir / name / "sub" / "file").st_gid, 4242u) << name;
    EXPECT_EQ(Stat(dir / name / "sub" / "file").st_mode & 07777, 0644u) << name;
  }
  // hostPath: untouched.
  EXPECT_EQ(Stat(dir / "host").st_gid, 0u);
  EXPECT_EQ(Stat(dir / "host").st_mode & 07777, 0755u);
  EXPECT_EQ(Stat(dir / "host" / "sub" / "file").st_gid, 0u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
