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

std::string FormatRfc3339(SystemTime t) { return FormatUtc(t, "%Y-%m-%dT%H:%M:%SZ"); }

namespace {

// Reads exactly `width` digits at text[*pos]; false if they are not all digits.
bool ReadDigits(std::string_view text, size_t* pos, int width, int* out) {
  if (*pos + static_cast<size_t>(width) > text.size()) return false;
  int v = 0;
  for (int i = 0; i < width; ++i) {
    const char c = text[*pos + static_cast<size_t>(i)];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += static_cast<size_t>(width);
  *out = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

// The zone suffix at text[pos]: "Z", "+hh:mm", "-hh:mm" or nothing (UTC). Sets the offset east
// of UTC in seconds.
bool ReadZone(std::string_view text, size_t pos, long* offset) {
  *offset = 0;
  if (pos == text.size()) return true;
  if ((text[pos] == 'Z' || text[pos] == 'z') && pos + 1 == text.size()) return true;
  if (text[pos] != '+' && text[pos] != '-') return false;
  const int sign = text[pos] == '-' ? -1 : 1;
  int hh = 0, mm = 0;
  ++pos;
  if (!ReadDigits(text, &pos, 2, &hh) || !Expect(text, &pos, ':') ||
      !ReadDigits(text, &pos, 2, &mm) || pos != text.size() || hh > 23 || mm > 59) {
    return false;
  }
  *offset = sign * (hh * 3600L + mm * 60L);
  return true;
}

}  // namespace

StatusOr<SystemTime> ParseRfc3339(std::string_view text) {
  const auto bad = [&] {
    return InvalidArgumentError("\"" + std::string(text) +
                                "\" is not an RFC 3339 time (expected e.g. 2026-11-23T10:00:00Z)");
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  size_t pos = 0;
  if (!ReadDigits(text, &pos, 4, &year) || !Expect(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &month) || !Expect(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &day) ||
      !(Expect(text, &pos, 'T') || Expect(text, &pos, 't') || Expect(text, &pos, ' ')) ||
      !ReadDigits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
      !ReadDigits(text, &pos, 2, &minute) || !Expect(text, &pos, ':') ||
      !ReadDigits(text, &pos, 2, &second)) {
    return bad();
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) nanos = nanos * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad();
    for (int i = digits; i < 9; ++i) nanos *= 10;
  }
  long offset = 0;
  if (!ReadZone(text, pos, &offset)) return bad();
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const SystemTime whole = std::chrono::system_clock::from_time_t(timegm(&tm) - offset);
  return whole + std::chrono::duration_cast<SystemTime::duration>(std::chrono::nanoseconds(nanos));
}

std::string FormatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  long long s = static_cast<long long>(seconds + 0.5);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace parallelrun::rt
