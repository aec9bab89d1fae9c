// A clock tests move by hand (the rt::Clock seam). Thread-safe: the code under test may read it
// from its own threads while the test advances it. Wall and steady time move together.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "runtime/base/time_util.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::fakes {

class FakeClock : public rt::Clock {
 public:
  // Starts at 2026-11-23 11:05:08 UTC (wall) and one hour after the steady epoch.
  static constexpr std::time_t kStartEpochSeconds = 1795431908;

  rt::SystemTime Now() const override {
    return std::chrono::system_clock::from_time_t(kStartEpochSeconds) +
           std::chrono::duration_cast<rt::SystemTime::duration>(Elapsed());
  }
  rt::SteadyTime SteadyNow() const override {
    return rt::SteadyTime() + std::chrono::hours(1) +
           std::chrono::duration_cast<rt::SteadyTime::duration>(Elapsed());
  }
  template <typename Rep, typename Period>
  void Advance(std::chrono::duration<Rep, Period> d) {
    ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }
  std::chrono::nanoseconds Elapsed() const { return std::chrono::nanoseconds(ns_.load()); }

 private:
  std::atomic<int64_t> ns_{0};
};

// Moves `clock` on by `step` until `done` holds (false if it does not within WaitFor's real
// deadline): for code that waits on the clock and must see time pass between its own steps.
template <typename Pred>
bool AdvanceUntil(FakeClock& clock, std::chrono::milliseconds step, Pred done) {
  return WaitFor([&] {
    if (done()) return true;
    clock.Advance(step);
    return false;
  });
}

}  // namespace parallelrun::fakes
