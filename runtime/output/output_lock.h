// The exclusive lock on an output folder: `<output>/.parallelrun/lock`, held with flock(2) for
// the whole run by the coordinator (`parallelrun coordinator`, which `parallelrun run` starts), so
// that two runs of a job never write the same output folder at once (SPEC.md §4.3).
//
// Guarantees:
// - One holder per output folder: a second Acquire, from this process or another, fails with
//   FailedPrecondition naming the holder (pid, host and start time, written into the lock file by
//   the holder) and changes nothing in the folder.
// - No stale locks: the kernel drops a flock when its holder's last file descriptor closes,
//   including when the process dies (SIGKILL, OOM, a node lost); the file left behind locks
//   nothing. (Over NFS, Linux maps flock onto NFS byte-range locks, which the server releases
//   when the client's lease ends.)
// - Released when the OutputLock is destroyed.
// Caveats: the lock only binds parallelrun; anything else may still write the folder. Deleting
// the output folder deletes the lock file too: the coordinator notices that its folder is gone
// (Coordinator checks .parallelrun/ every tick) and fails the job.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::rt {

inline constexpr const char* kOutputLockFile = "lock";  // in <output>/.parallelrun/

class OutputLock {
 public:
  // Takes the lock of `output_dir`, creating `<output_dir>/.parallelrun/` if needed, and writes
  // "pid <pid> host <host> since <UTC time>" into the lock file. While another holds it, tries
  // again every second for up to `wait` (a replaced coordinator pod whose predecessor is still
  // ending), calling `on_wait(holder)` once.
  static StatusOr<OutputLock> Acquire(
      const std::string& output_dir, std::chrono::seconds wait = std::chrono::seconds(0),
      const std::function<void(const std::string&)>& on_wait = nullptr);
  // Who holds the lock of `output_dir`: "" when nobody does (or the folder has no lock file).
  // Reads only; never creates anything.
  static std::string Holder(const std::string& output_dir);

  OutputLock(OutputLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
    other.fd_ = -1;
  }
  OutputLock& operator=(OutputLock&& other) noexcept;
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();

  const std::string& path() const { return path_; }

 private:
  static StatusOr<OutputLock> TryAcquire(const std::string& output_dir);
  OutputLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace parallelrun::rt
