#include "runtime/cmd/output_check.h"

#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace parallelrun::rt {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr uid_t kJobUid = 10001;

class OutputCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/output-check-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    chmod(root_.c_str(), 0755);
  }
  void TearDown() override {
    for (const auto& p : fs::recursive_directory_iterator(root_)) {
      fs::permissions(p.path(), fs::perms::owner_all, fs::perm_options::add);
    }
    fs::remove_all(root_);
  }

  // spec.output = volume "data" (hostPath root_), path "out/".
  JobSpec HostPathSpec() const {
    JobSpec spec;
    spec.output = {"data", "out/"};
    spec.volumes = nlohmann::json::array({{{"name", "data"}, {"hostPath", {{"path", root_}}}}});
    return spec;
  }

  // CheckOutputWritable as the job's uid would see it: as root, in a child process that drops
  // to uid/gid 10001 (root passes every permission check); otherwise as ourselves.
  Status CheckAsJobUser(const JobSpec& spec, const std::string& dir) {
    if (geteuid() != 0) return CheckOutputWritable(spec, dir);
    int fds[2];
    if (pipe(fds) != 0) return InternalError("pipe");
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      if (setgroups(0, nullptr) != 0 || setresgid(kJobUid, kJobUid, kJobUid) != 0 ||
          setresuid(kJobUid, kJobUid, kJobUid) != 0) {
        _exit(2);
      }
      Status st = CheckOutputWritable(spec, dir);
      std::string text = st.ok() ? "" : st.message();
      if (write(fds[1], text.data(), text.size()) < 0) _exit(3);
      _exit(st.ok() ? 0 : 1);
    }
    close(fds[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) return InternalError("child failed");
    return WEXITSTATUS(status) == 0 ? Status::Ok() : FailedPreconditionError(text);
  }

  // A folder the job's uid may not write: root-owned 0755 (as root) or 0555 (otherwise).
  void MakeUnwritable(const std::string& dir) {
    fs::create_directories(dir);
    chmod(dir.c_str(), geteuid() == 0 ? 0755 : 0555);
  }

  std::string root_;
};

TEST_F(OutputCheckTest, WritableFolderPassesAndLeavesNothingBehind) {
  const std::string out = root_ + "/out";
  fs::create_directories(out);
  chmod(out.c_str(), 0777);
  EXPECT_TRUE(CheckAsJobUser(HostPathSpec(), out).ok());
  EXPECT_TRUE(fs::is_empty(out));
}

TEST_F(OutputCheckTest, RootOwnedHostPathFailsNamingVolumePathUidAndFix) {
  const std::string out = root_ + "/out";
  MakeUnwritable(out);
  if (geteuid() != 0 && access(out.c_str(), W_OK) == 0) GTEST_SKIP() << "CAP_DAC_OVERRIDE";
  Status st = CheckAsJobUser(HostPathSpec(), out);
  ASSERT_FALSE(st.ok());
  const std::string uid = std::to_string(geteuid() == 0 ? kJobUid : geteuid());
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("spec.output (volume \"data\", path \"out/\""));
  EXPECT_THAT(st.message(), HasSubstr("hostPath " + root_ + "/out"));
  EXPECT_THAT(st.message(), HasSubstr("not writable by uid " + uid));
  EXPECT_THAT(st.message(), HasSubstr("Permission denied"));
  EXPECT_THAT(st.message(), HasSubstr("fsGroup does not apply to hostPath"));
  EXPECT_THAT(st.message(), HasSubstr("chown -R " + uid));
}

TEST_F(OutputCheckTest, MissingFolderIsCheckedInItsDeepestExistingParent) {
  MakeUnwritable(root_ + "/parent");
  Status st = CheckAsJobUser(HostPathSpec(), root_ + "/parent/run/out");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("cannot create a file in " + root_ + "/parent "));
  chmod((root_ + "/parent").c_str(), 0777);
  EXPECT_TRUE(CheckAsJobUser(HostPathSpec(), root_ + "/parent/run/out").ok());
  EXPECT_FALSE(fs::exists(root_ + "/parent/run")) << "the check creates no folder";
}

TEST_F(OutputCheckTest, ResumedRunChecksItsStateFolderToo) {
  const std::string out = root_ + "/out";
  fs::create_directories(out);
  chmod(out.c_str(), 0777);
  MakeUnwritable(out + "/.parallelrun");
  Status st = CheckAsJobUser(HostPathSpec(), out);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(out + "/.parallelrun"));
}

TEST_F(OutputCheckTest, ClaimGetsTheFsGroupAdvice) {
  JobSpec spec = HostPathSpec();
  spec.volumes = nlohmann::json::array(
      {{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "results"}}}}});
  MakeUnwritable(root_ + "/out");
  Status st = CheckAsJobUser(spec, root_ + "/out");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("persistentVolumeClaim results"));
  EXPECT_THAT(st.message(), HasSubstr("securityContext.fsGroup"));
}

}  // namespace
}  // namespace parallelrun::rt
