// ChildWatch: event-driven waits of `parallelrun run` for its children (the coordinator and the
// agents), its signals and its coordinator's address pipe, instead of sleeping in fixed steps.
//
// Each watched child has a pidfd (pidfd_open, Linux >= 5.3), readable once the child has exited;
// Wake() (from the signal thread) and an optional extra fd also end a wait. Where pidfd_open is
// refused (an older kernel, a seccomp filter), a wait ends after at most kFallbackStep and the
// caller checks again, as it did before.
//
// Guarantees: a wait never ends later than its deadline; it may end early (a wake-up, a child that
// exited): callers check their conditions again. A child must be reaped through TryWait/Wait
// here, which close its pidfd (an exited child's pidfd stays readable, so a forgotten one would
// turn every wait into a spin).
// Thread-safety: Wake() may be called from any thread; everything else from one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>

#include "runtime/base/process.h"

namespace parallelrun::rt::cmd {

class ChildWatch {
 public:
  static constexpr std::chrono::milliseconds kFallbackStep{50};

  ChildWatch();
  ~ChildWatch();
  ChildWatch(const ChildWatch&) = delete;
  ChildWatch& operator=(const ChildWatch&) = delete;

  // Starts watching `pid` (a child of this process, not yet reaped).
  void Add(pid_t pid);
  // TryWait/Wait of runtime/base/process.h that stop watching the child once it is reaped.
  std::optional<ExitInfo> TryWait(pid_t pid);
  ExitInfo Wait(pid_t pid);
  // Ends the current or the next wait (async-signal-safe: one write to an eventfd).
  void Wake();
  // Blocks until a watched child has exited, Wake() was called, `extra_fd` (when >= 0) is
  // readable or hung up, or `deadline`.
  void WaitUntil(std::chrono::steady_clock::time_point deadline, int extra_fd = -1);

 private:
  void Forget(pid_t pid);

  int wake_fd_ = -1;
  std::map<pid_t, int> pidfds_;  // -1: pidfd_open refused; waits fall back to kFallbackStep
};

}  // namespace parallelrun::rt::cmd
