#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::fakes {
namespace {

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  const auto wall = clock.Now();
  const auto steady = clock.SteadyNow();
  EXPECT_EQ(rt::FormatRfc3339(wall), "2026-11-23T11:05:08Z");
  clock.Advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(clock.Now() - wall, std::chrono::milliseconds(1500));
  EXPECT_EQ(clock.SteadyNow() - steady, std::chrono::milliseconds(1500));
}

TEST(TempDirTest, IsFreshAndRemoved) {
  std::string kept;
  {
    TempDir a("fakes"), b("fakes");
    EXPECT_NE(a.path(), b.path());
    EXPECT_TRUE(std::filesystem::is_directory(a.path()));
    std::ofstream(a.Sub("f.txt")) << "x";
    kept = a.path();
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}

TEST(WaitForTest, ReturnsWhenTrueAndGivesUpAfterTheDeadline) {
  std::atomic<bool> flag{false};
  std::thread t([&] { flag = true; });
  EXPECT_TRUE(WaitFor([&] { return flag.load(); }));
  t.join();
  EXPECT_FALSE(WaitFor([] { return false; }, std::chrono::milliseconds(20)));
}

TEST(FakeClockTest, AdvanceUntilStepsUntilTheConditionHolds) {
  FakeClock clock;
  EXPECT_TRUE(AdvanceUntil(clock, std::chrono::seconds(1),
                           [&] { return clock.Elapsed() >= std::chrono::seconds(5); }));
  EXPECT_EQ(clock.Elapsed(), std::chrono::seconds(5)) << "no step past the condition";
}

}  // namespace
}  // namespace parallelrun::fakes
