#include "runtime/base/time_util.h"

#include <cstdio>
#include <ctime>

namespace parallelrun::rt {

const RealClock& RealClock::Get() {
  static const RealClock clock;
  return clock;
}

std::string FormatUtc(SystemTime t, const char* format) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[128];
  size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

std::string Iso8601Utc(SystemTime t) {
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  char buf[8];
  std::snprintf(buf, sizeof buf, ".%03lldZ", static_cast<long long>(ms < 0 ? ms + 1000 : ms));
  return FormatUtc(t, "%Y-%m-%dT%H:%M:%S") + buf;
}

std::string FormatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  long long s = static_cast<long long>(seconds + 0.5);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace parallelrun::rt
