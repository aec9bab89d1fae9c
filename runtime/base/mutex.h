// A std::mutex that clang's -Wthread-safety can check (runtime/base/thread_annotations.h), and
// its scoped lock, which also waits on a std::condition_variable.
//
//   Mutex mu_;
//   bool done_ GUARDED_BY(mu_) = false;
//   std::condition_variable cv_;
//   ...
//   MutexLock lock(mu_);
//   while (!done_) lock.Wait(cv_);  // the condition is read with the lock held
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "runtime/base/thread_annotations.h"

namespace parallelrun::rt {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Releases the lock before the end of the scope.
  void Unlock() RELEASE() { lock_.unlock(); }
  // Releases the lock while waiting for a notification (or a spurious wake-up), then holds it
  // again: callers loop on their condition.
  void Wait(std::condition_variable& cv) { cv.wait(lock_); }
  // As Wait, for at most `d`; false when it timed out.
  template <typename Rep, typename Period>
  bool WaitFor(std::condition_variable& cv, std::chrono::duration<Rep, Period> d) {
    return cv.wait_for(lock_, d) == std::cv_status::no_timeout;
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace parallelrun::rt
