#include "tests/cluster/kubelet/container_process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string RandomSuffix() {
  std::random_device rd;
  return std::to_string(getpid()) + "-" + std::to_string(rd() % 1000000);
}

class ContainerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    fs::create_directories(dir_ / "scratch");
  }
  void TearDown() override {
    std::error_code ec;
    for (const auto& p : cleanup_) fs::remove_all(p, ec);
  }

  LaunchSpec Spec(const std::string& script) {
    LaunchSpec spec;
    spec.argv = {"sh", "-c", script};
    spec.search_path = "/usr/bin:/bin";
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.log_path = (dir_ / "out.log").string();
    spec.scratch_dir = (dir_ / "scratch").string();
    return spec;
  }

  // Runs to completion; returns the exit code (or 128+signal).
  int Run(const LaunchSpec& spec) {
    std::string error;
    pid_t pid = LaunchContainer(spec, &error);
    EXPECT_GT(pid, 0) << error;
    if (pid <= 0) return -1;
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  fakes::TempDir tmp_{"container-process-test"};
  fs::path dir_;
  std::vector<fs::path> cleanup_;
};

TEST_F(ContainerProcessTest, RunsCommandFromPathAndAppendsBothStreamsToTheLog) {
  auto spec = Spec("echo out; echo err >&2; exit 3");
  EXPECT_EQ(Run(spec), 3);
  EXPECT_EQ(ReadAll(spec.log_path), "out\nerr\n");
}

TEST_F(ContainerProcessTest, UnknownCommandIsReportedAsExecError) {
  auto spec = Spec("");
  spec.argv = {"no-such-command-xyz"};
  std::string error;
  EXPECT_EQ(LaunchContainer(spec, &error), -1);
  EXPECT_EQ(error, "exec: \"no-such-command-xyz\": executable file not found in $PATH");
}

TEST_F(ContainerProcessTest, EnvironmentIsExactlyTheGivenOne) {
  auto spec = Spec("env | sort");
  spec.env = {"PATH=/usr/bin:/bin", "FOO=bar baz"};
  EXPECT_EQ(Run(spec), 0);
  std::string out = ReadAll(spec.log_path);
  EXPECT_THAT(out, HasSubstr("FOO=bar baz\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("HOME=")));
}

TEST_F(ContainerProcessTest, WorkingDirAndHostnameApply) {
  auto spec = Spec("pwd; hostname");
  spec.working_dir = "/tmp";
  spec.hostname = "my-pod";
  EXPECT_EQ(Run(spec), 0);
  EXPECT_EQ(ReadAll(spec.log_path), "/tmp\nmy-pod\n");
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  EXPECT_NE(std::string(host), "my-pod");
}

TEST_F(ContainerProcessTest, BindMountIsVisibleInsideOnly) {
  fs::create_directories(dir_ / "vol");
  std::ofstream(dir_ / "vol" / "f.txt") << "hello";
  std::string target = "/mnt/pr-kubelet-test-" + RandomSuffix() + "/data";
  cleanup_.push_back(fs::path(target).parent_path());
  auto spec = Spec("cat " + target + "/f.txt; echo new > " + target + "/g.txt");
  spec.mounts = {{(dir_ / "vol").string(), target, false}};
  EXPECT_EQ(Run(spec), 0);
  EXPECT_EQ(ReadAll(spec.log_path), "hello");
  EXPECT_EQ(ReadAll((dir_ / "vol" / "g.txt").string()), "new\n");
  // The mount point was created on the host (under /mnt), but nothing is mounted there.
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_FALSE(fs::exists(fs::path(target) / "f.txt"));
}

TEST_F(ContainerProcessTest, ReadOnlyMountRejectsWrites) {
  fs::create_directories(dir_ / "vol");
  std::string target = "/mnt/pr-kubelet-test-" + RandomSuffix();
  cleanup_.push_back(target);
  auto spec = Spec("touch " + target + "/x");
  spec.mounts = {{(dir_ / "vol").string(), target, true}};
  EXPECT_NE(Run(spec), 0);
  EXPECT_THAT(ReadAll(spec.log_path), HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(dir_ / "vol" / "x"));
}

TEST_F(ContainerProcessTest, MissingMountPointOutsideMntUsesAnOverlayAndLeavesTheHostAlone) {
  fs::create_directories(dir_ / "vol");
  std::ofstream(dir_ / "vol" / "f.txt") << "via overlay";
  std::string top = "/opt/pr-kubelet-test-" + RandomSuffix();
  cleanup_.push_back(top);
  auto spec = Spec("cat " + top + "/a/b/f.txt && ls /opt >/dev/null");
  spec.mounts = {{(dir_ / "vol").string(), top + "/a/b", true}};
  EXPECT_EQ(Run(spec), 0) << ReadAll(spec.log_path);
  EXPECT_EQ(ReadAll(spec.log_path), "via overlay");
  EXPECT_FALSE(fs::exists(top));
}

TEST_F(ContainerProcessTest, FileMountsReplaceEtcHostsAndCreateMissingFiles) {
  std::ofstream(dir_ / "hosts") << "127.0.1.9\tmy-service\n";
  std::ofstream(dir_ / "termination-log") << "";
  auto spec = Spec("cat /etc/hosts; echo bye > /dev/termination-log");
  spec.mounts = {{(dir_ / "hosts").string(), "/etc/hosts", false},
                 {(dir_ / "termination-log").string(), "/dev/termination-log", false}};
  EXPECT_EQ(Run(spec), 0) << ReadAll(spec.log_path);
  EXPECT_EQ(ReadAll(spec.log_path), "127.0.1.9\tmy-service\n");
  EXPECT_EQ(ReadAll((dir_ / "termination-log").string()), "bye\n");
  EXPECT_THAT(ReadAll("/etc/hosts"), ::testing::Not(HasSubstr("my-service")));
}

TEST_F(ContainerProcessTest, MountsNestedInAnotherVolumeAreCreatedInsideIt) {
  fs::create_directories(dir_ / "outer");
  fs::create_directories(dir_ / "inner");
  std::ofstream(dir_ / "inner" / "i.txt") << "inner";
  std::string target = "/mnt/pr-kubelet-test-" + RandomSuffix();
  cleanup_.push_back(target);
  auto spec = Spec("cat " + target + "/sub/dir/i.txt");
  spec.mounts = {{(dir_ / "inner").string(), target + "/sub/dir", true},
                 {(dir_ / "outer").string(), target, false}};
  EXPECT_EQ(Run(spec), 0) << ReadAll(spec.log_path);
  EXPECT_EQ(ReadAll(spec.log_path), "inner");
  EXPECT_TRUE(fs::is_directory(dir_ / "outer" / "sub" / "dir"));
}

TEST_F(ContainerProcessTest, KillProcessGroupReachesChildren) {
  auto spec = Spec("sleep 300 & echo $! > " + (dir_ / "child").string() + "; wait");
  std::string error;
  pid_t pid = LaunchContainer(spec, &error);
  ASSERT_GT(pid, 0) << error;
  fakes::WaitFor([&] { return !ReadAll((dir_ / "child").string()).empty(); });
  pid_t child = std::stoi(ReadAll((dir_ / "child").string()));
  EXPECT_EQ(getpgid(child), pid);
  KillProcessGroup(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  fakes::WaitFor([&] { return ProcessStartTime(child) == 0; });
  EXPECT_EQ(ProcessStartTime(child), 0u);
}

TEST_F(ContainerProcessTest, RecordedProcessesAreKilledAndTheirRecordsRemoved) {
  auto spec = Spec("exec sleep 300");
  std::string error;
  pid_t pid = LaunchContainer(spec, &error);
  ASSERT_GT(pid, 0) << error;
  std::string pids = (dir_ / "pids").string();
  RecordPid(pids, "ns_pod_main", pid);
  // A stale record (a pid that is not ours any more) is dropped without a signal.
  std::ofstream(pids + "/stale.pid") << "1 12345\n";
  EXPECT_EQ(KillRecordedProcesses(pids), 1);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(fs::is_empty(pids));
}

TEST(MayCreateOnHostTest, OnlyHarmlessPlaces) {
  EXPECT_TRUE(MayCreateOnHost("/mnt/code"));
  EXPECT_TRUE(MayCreateOnHost("/var/run/secrets/kubernetes.io/serviceaccount"));
  EXPECT_TRUE(MayCreateOnHost("/etc/parallelrun/x"));
  EXPECT_TRUE(MayCreateOnHost("/dev/termination-log"));
  EXPECT_TRUE(MayCreateOnHost("/data"));
  EXPECT_FALSE(MayCreateOnHost("/etc/app/config"));
  EXPECT_FALSE(MayCreateOnHost("/opt/app"));
  EXPECT_FALSE(MayCreateOnHost("/mnt2/x"));
}

}  // namespace
}  // namespace parallelrun::rt::cluster
