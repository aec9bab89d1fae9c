// A full disk under the output folder (ENOSPC, or a quota: EDQUOT) ends the job with reason
// DiskFull instead of a stream of write errors: the coordinator recognises the error text of a
// failed write (its own, or a worker's), and frees a small reserve file it made at the start so
// that logs/job_result.txt can still be written on the full file system.
//
// Guarantees: SpaceReserve::Create writes real blocks (not a sparse file), so deleting it frees
// them; Release() is idempotent. Thread-safety: none (the coordinator calls it under its lock).
#pragma once

#include <cstdint>
#include <string>

#include "runtime/base/status.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt {

inline constexpr const char* kReasonDiskFull = reason::kDiskFull;
// Bytes kept free for the end of a job: job_result.txt, result.json, the last overview lines.
inline constexpr int64_t kSpaceReserveBytes = 256 * 1024;

// True when `error` is the text of a failed write on a full disk or an exhausted quota, as the
// runtime (strerror) or the Python host ("[Errno 28] ...") words it.
bool IsDiskFullError(const std::string& error);

// The job result message of a DiskFull ending: what could not be written, and what to do.
std::string DiskFullMessage(const std::string& what, const std::string& error);

class SpaceReserve {
 public:
  SpaceReserve() = default;
  ~SpaceReserve() = default;
  SpaceReserve(const SpaceReserve&) = delete;
  SpaceReserve& operator=(const SpaceReserve&) = delete;

  // Creates (or re-creates) `path` holding `bytes` bytes. An error when the disk is already full.
  Status Create(const std::string& path, int64_t bytes);
  // Deletes the file. True when it existed.
  bool Release();

 private:
  std::string path_;
};

}  // namespace parallelrun::rt
