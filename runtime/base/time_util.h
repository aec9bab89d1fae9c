// Time formatting and the Clock seam (tests inject a fake clock instead of sleeping).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

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
// "H:MM:SS" (hours unbounded), negative clamps to 0.
std::string FormatDuration(double seconds);

}  // namespace parallelrun::rt
