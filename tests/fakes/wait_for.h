// Waiting on a condition in tests: poll `done` until it holds or a generous deadline passes (so a
// test is slow, not flaky, on a loaded machine). Never sleep for a fixed time instead.
#pragma once

#include <chrono>
#include <thread>

namespace parallelrun::fakes {

inline constexpr std::chrono::seconds kWaitDeadline{30};

// True as soon as done() is; false if it still is not after `deadline`.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::milliseconds deadline = kWaitDeadline,
             std::chrono::milliseconds every = std::chrono::milliseconds(5)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(every);
  }
  return done();
}

}  // namespace parallelrun::fakes
