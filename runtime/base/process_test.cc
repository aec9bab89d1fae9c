#include "runtime/base/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "runtime/base/files.h"
#include "tests/fakes/temp_dir.h"

namespace parallelrun::rt {
namespace {

TEST(ProcessTest, SpawnRedirectsOutputAndReportsExitCode) {
  fakes::TempDir tmp("pr_proc_test");
  const std::string& dir = tmp.path();
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo out; echo err >&2; echo $PR_X; exit 3"};
  o.env = {"PR_X=hello"};
  o.stdout_path = dir + "/out";
  o.stderr_path = dir + "/err";
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  ExitInfo info = Wait(*pid);
  EXPECT_TRUE(info.exited);
  EXPECT_EQ(info.code, 3);
  EXPECT_EQ(*ReadFile(dir + "/out"), "out\nhello\n");
  EXPECT_EQ(*ReadFile(dir + "/err"), "err\n");
}

TEST(ProcessTest, SpawnOfMissingProgramIsNotFound) {
  SpawnOptions o;
  o.argv = {"/nonexistent/program"};
  auto pid = Spawn(o);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), StatusCode::kNotFound);
}

TEST(ProcessTest, KilledChildReportsSignal) {
  SpawnOptions o;
  o.argv = {"sleep", "30"};
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok());
  ::kill(*pid, SIGKILL);
  ExitInfo info = Wait(*pid);
  EXPECT_FALSE(info.exited);
  EXPECT_EQ(info.signal, SIGKILL);
  EXPECT_NE(info.ToString().find("signal 9"), std::string::npos);
}

TEST(ProcessTest, PickFreePortReturnsABindablePort) {
  auto port = PickFreePort("127.0.0.1");
  ASSERT_TRUE(port.ok());
  EXPECT_GT(*port, 0);
}

}  // namespace
}  // namespace parallelrun::rt

namespace parallelrun::rt {
namespace {

TEST(ProcessTest, KeyValueCounterReadsOneKeyOfProcFiles) {
  const std::string vmstat = "pgfault 10\noom_kill_x 7\noom_kill 3\nswap 0\n";
  EXPECT_EQ(KeyValueCounter(vmstat, "oom_kill"), 3);
  EXPECT_EQ(KeyValueCounter("low 0\nhigh 0\nmax 4\noom 2\noom_kill 1", "oom_kill"), 1);
  EXPECT_EQ(KeyValueCounter("oom 2\n", "oom_kill"), -1);
  EXPECT_GE(OomKillCount(), 0);
}

TEST(ProcessTest, ChildPidsListsChildrenOfEveryThreadAndZombies) {
  SpawnOptions sleeper;
  sleeper.argv = {"/bin/sleep", "30"};
  SpawnOptions quick;
  quick.argv = {"/bin/true"};
  auto here = Spawn(sleeper);
  ASSERT_TRUE(here.ok());
  StatusOr<pid_t> there = InternalError("not spawned");
  std::thread([&] { there = Spawn(sleeper); }).join();  // its thread has ended since
  ASSERT_TRUE(there.ok());
  auto zombie = Spawn(quick);
  ASSERT_TRUE(zombie.ok());
  for (int i = 0; i < 500 && !IsZombie(*zombie); ++i) usleep(10000);
  ASSERT_TRUE(IsZombie(*zombie));

  const std::vector<pid_t> children = ChildPids(::getpid());
  for (pid_t pid : {*here, *there, *zombie}) {
    EXPECT_NE(std::find(children.begin(), children.end(), pid), children.end()) << pid;
  }
  EXPECT_EQ(std::find(children.begin(), children.end(), ::getpid()), children.end());
  for (pid_t pid : {*here, *there}) ::kill(pid, SIGKILL);
  for (pid_t pid : {*here, *there, *zombie}) Wait(pid);
  const std::vector<pid_t> after = ChildPids(::getpid());
  for (pid_t pid : {*here, *there, *zombie}) {
    EXPECT_EQ(std::find(after.begin(), after.end(), pid), after.end()) << pid;
  }
}

TEST(ProcessTest, DescendantPidsFindsGrandchildren) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "sleep 30 & wait"};
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok());
  std::vector<pid_t> found;
  for (int i = 0; i < 500 && found.size() < 2; ++i) {
    found = DescendantPids(::getpid());
    usleep(10000);
  }
  EXPECT_GE(found.size(), 2u);  // sh and its sleep
  EXPECT_NE(std::find(found.begin(), found.end(), *pid), found.end());
  for (pid_t p : found) ::kill(p, SIGKILL);
  Wait(*pid);
}

}  // namespace
}  // namespace parallelrun::rt
