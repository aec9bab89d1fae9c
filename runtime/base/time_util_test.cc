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

TEST(TimeUtilTest, Rfc3339RoundTrips) {
  SystemTime t = std::chrono::system_clock::from_time_t(1795000000);
  EXPECT_EQ(FormatRfc3339(t + std::chrono::milliseconds(900)), "2026-11-18T11:06:40Z");
  auto parsed = ParseRfc3339("2026-11-18T11:06:40Z");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, t);
}

TEST(TimeUtilTest, ParseRfc3339TakesFractionsOffsetsAndNoZone) {
  SystemTime t = std::chrono::system_clock::from_time_t(1795000000);  // 2026-11-18T11:06:40Z
  auto frac = ParseRfc3339("2026-11-18T11:06:40.123456Z");
  ASSERT_TRUE(frac.ok());
  EXPECT_EQ(*frac, t + std::chrono::microseconds(123456));
  auto east = ParseRfc3339("2026-11-18T13:06:40+02:00");
  ASSERT_TRUE(east.ok());
  EXPECT_EQ(*east, t);
  auto west = ParseRfc3339("2026-11-18T10:36:40.5-00:30");
  ASSERT_TRUE(west.ok());
  EXPECT_EQ(*west, t + std::chrono::milliseconds(500));
  auto bare = ParseRfc3339("2026-11-18T11:06:40");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(*bare, t);
}

TEST(TimeUtilTest, ParseRfc3339RejectsWhatIsNotATime) {
  for (const char* text :
       {"", "2026-11-18", "2026-11-18T11:06", "2026-13-18T11:06:40Z", "2026-11-18T25:06:40Z",
        "2026-11-18T11:06:40.Z", "2026-11-18T11:06:40Q", "2026-11-18T11:06:40+0200",
        "x2026-11-18T11:06:40Z", "2026-11-18T11:06:40Z junk"}) {
    auto r = ParseRfc3339(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("RFC 3339"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace parallelrun::rt
