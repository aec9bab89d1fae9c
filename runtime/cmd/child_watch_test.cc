#include "runtime/cmd/child_watch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

namespace parallelrun::rt::cmd {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

pid_t StartChild(const std::vector<std::string>& argv) {
  SpawnOptions o;
  o.argv = argv;
  auto pid = Spawn(o);
  EXPECT_TRUE(pid.ok()) << pid.status().ToString();
  return pid.ok() ? *pid : -1;
}

TEST(ChildWatchTest, AWaitEndsWhenAWatchedChildExits) {
  ChildWatch watch;
  const pid_t pid = StartChild({"/bin/sh", "-c", "exit 3"});
  watch.Add(pid);
  const auto deadline = Clock::now() + 60s;
  std::optional<ExitInfo> info;
  while (!(info = watch.TryWait(pid)) && Clock::now() < deadline) watch.WaitUntil(deadline);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->exited);
  EXPECT_EQ(info->code, 3);
  EXPECT_LT(Clock::now(), deadline);
}

TEST(ChildWatchTest, AReapedChildNoLongerEndsWaits) {
  ChildWatch watch;
  const pid_t pid = StartChild({"/bin/true"});
  watch.Add(pid);
  EXPECT_TRUE(watch.Wait(pid).exited);
  // Its pidfd is closed: the wait lasts until the deadline instead of returning at once.
  const auto start = Clock::now();
  watch.WaitUntil(start + 30ms);
  EXPECT_GE(Clock::now() - start, 30ms);
}

TEST(ChildWatchTest, WakeEndsAWaitFromAnotherThread) {
  ChildWatch watch;
  const pid_t pid = StartChild({"/bin/sleep", "60"});
  watch.Add(pid);
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    watch.Wake();
  });
  const auto start = Clock::now();
  watch.WaitUntil(start + 60s);
  EXPECT_LT(Clock::now() - start, 30s);
  waker.join();
  ::kill(pid, SIGKILL);
  EXPECT_FALSE(watch.Wait(pid).exited);
}

TEST(ChildWatchTest, AReadableExtraDescriptorEndsAWait) {
  ChildWatch watch;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  const auto start = Clock::now();
  watch.WaitUntil(start + 60s, fds[0]);
  EXPECT_LT(Clock::now() - start, 30s);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(ChildWatchTest, AWaitEndsAtItsDeadline) {
  ChildWatch watch;
  const auto start = Clock::now();
  watch.WaitUntil(start + 20ms);
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_LT(Clock::now() - start, 20s);
}

}  // namespace
}  // namespace parallelrun::rt::cmd
