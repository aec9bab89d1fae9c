#include "runtime/base/time_util.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

TEST(TimeUtilTest, FormatDurationIsHoursMinutesSeconds) {
  EXPECT_EQ(FormatDuration(0), "0:00:00");
  EXPECT_EQ(FormatDuration(59.6), "0:01:00");
  EXPECT_EQ(FormatDuration(3661), "1:01:01");
  EXPECT_EQ(FormatDuration(100 * 3600), "100:00:00");
  EXPECT_EQ(FormatDuration(-5), "0:00:00");
}

TEST(TimeUtilTest, FormatUtcUsesUtc) {
  SystemTime t = std::chrono::system_clock::from_time_t(1795000000);  // 2026-11-18T11:06:40Z
  EXPECT_EQ(FormatUtc(t, "%Y%m%d%H"), "2026111811");
  EXPECT_EQ(Iso8601Utc(t + std::chrono::milliseconds(7)), "2026-11-18T11:06:40.007Z");
}

}  // namespace
}  // namespace parallelrun::rt
