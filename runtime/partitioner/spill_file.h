// SpillFile: an unnamed temporary file that the key partitioner spills fixed-size records to,
// appended through a buffer and read back (or rewritten) by offset. Internal to the partitioner.
//
// Guarantees: the file has no name (O_TMPFILE, or a name unlinked at once where the file system
// lacks O_TMPFILE), so it vanishes with its descriptor, even if the process is killed. Errors
// name the folder. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::rt::internal {

class SpillFile {
 public:
  ~SpillFile();
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  static StatusOr<std::unique_ptr<SpillFile>> Open(const std::string& dir);
  // Buffers `n` bytes at the end (written out every 64 KiB and by Flush).
  Status Append(const void* data, size_t n);
  Status Flush();
  // Positioned write and read; ReadAt needs what it reads flushed.
  Status WriteAt(const void* data, size_t n, int64_t offset);
  Status ReadAt(void* data, size_t n, int64_t offset) const;
  // Bytes appended so far, buffered ones included.
  int64_t size() const { return size_; }

 private:
  SpillFile(int fd, std::string dir) : fd_(fd), dir_(std::move(dir)) {}
  int fd_;
  std::string dir_;
  std::string buffer_;
  int64_t written_ = 0;
  int64_t size_ = 0;
};

}  // namespace parallelrun::rt::internal
