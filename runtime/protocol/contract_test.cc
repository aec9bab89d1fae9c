#include "runtime/protocol/contract.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace parallelrun::rt {
namespace {

TEST(ContractTest, AttemptStatusNamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(AttemptStatus::kInitTimeout); ++i) {
    const auto status = static_cast<AttemptStatus>(i);
    auto back = ParseAttemptStatus(AttemptStatusName(status));
    ASSERT_TRUE(back.has_value()) << AttemptStatusName(status);
    EXPECT_EQ(*back, status);
  }
  EXPECT_STREQ(AttemptStatusName(AttemptStatus::kRunDone), "RUN_DONE");
  EXPECT_STREQ(AttemptStatusName(AttemptStatus::kInitTimeout), "INIT_TIMEOUT");
  EXPECT_FALSE(ParseAttemptStatus("run_done").has_value());
  EXPECT_FALSE(ParseAttemptStatus("").has_value());
  std::ostringstream os;
  os << AttemptStatus::kWorkerDied;
  EXPECT_EQ(os.str(), "WORKER_DIED");
  EXPECT_EQ(AttemptStatusNames(),
            "RUN_DONE, RUN_EXCEPTION, RUN_TIMEOUT, RUN_WRONG_TYPE, WORKER_DIED, CANCELLED, "
            "LEASE_EXPIRED, INIT_FAILED, INIT_TIMEOUT");
}

TEST(ContractTest, ExitCodesAndReasons) {
  EXPECT_TRUE(IsFinalCoordinatorExit(kCoordinatorExitJobFailed));
  EXPECT_TRUE(IsFinalCoordinatorExit(kCoordinatorExitInvalid));
  EXPECT_FALSE(IsFinalCoordinatorExit(kCoordinatorExitInterrupted));
  EXPECT_FALSE(IsFinalCoordinatorExit(137));
  EXPECT_TRUE(reason::IsThreshold(reason::kNoSucceededItems));
  EXPECT_FALSE(reason::IsThreshold(reason::kCompleted));
  EXPECT_FALSE(reason::IsThreshold(std::string("Failed")));
}

}  // namespace
}  // namespace parallelrun::rt
