// Time formatting and the Clock seam (tests inject a fake clock instead of sleeping).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace parallelrun::rt {

using SystemTime = std::chrono::system_clock::time_point;
using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime Now() const = 0;        // wall clock, for timestamps in logs
  virtual SteadyTime SteadyNow() const = 0;  // monotonic, for leases and timeouts
};

class RealClock : public Clock {
 public:
  SystemTime Now() const override { return std::chrono::system_clock::now(); }
  SteadyTime SteadyNow() const override { return std::chrono::steady_clock::now(); }
  static const RealClock& Get();
};

// strftime in UTC, e.g. FormatUtc(t, "%Y%m%d%H").
std::string FormatUtc(SystemTime t, const char* format);
// "2026-11-23T11:05:08.123Z".
std::string Iso8601Utc(SystemTime t);
// RFC 3339 in UTC with whole seconds, "2026-11-23T10:00:00Z": what Kubernetes writes in
// metadata timestamps and conditions.
std::string FormatRfc3339(SystemTime t);
// RFC 3339 date-time: "2026-11-23T10:00:00Z", with optional fractions ("...:00.123456Z") and
// numeric offsets ("+02:00"); also "...T10:00:00" without a zone, read as UTC (what the
// coordinator's journal held before it wrote the zone). InvalidArgument naming the text and what
// was expected otherwise.
StatusOr<SystemTime> ParseRfc3339(std::string_view text);
// "H:MM:SS" (hours unbounded), negative clamps to 0.
std::string FormatDuration(double seconds);

}  // namespace parallelrun::rt
