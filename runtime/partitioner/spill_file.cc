#include "runtime/partitioner/spill_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace parallelrun::rt::internal {
namespace {

constexpr size_t kSpillBuffer = size_t{1} << 16;

Status Errno(const std::string& what) { return InternalError(what + ": " + std::strerror(errno)); }

}  // namespace

SpillFile::~SpillFile() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<SpillFile>> SpillFile::Open(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {  // file systems without O_TMPFILE (some NFS): a named file, unlinked at once
    std::string name = dir + "/.parallelrun-partitions-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0) return Errno("cannot make a temporary file in " + dir + " for partitioning");
    ::unlink(name.c_str());
  }
  return std::unique_ptr<SpillFile>(new SpillFile(fd, dir));
}

Status SpillFile::Append(const void* data, size_t n) {
  buffer_.append(static_cast<const char*>(data), n);
  size_ += static_cast<int64_t>(n);
  return buffer_.size() >= kSpillBuffer ? Flush() : Status::Ok();
}

Status SpillFile::Flush() {
  PR_RETURN_IF_ERROR(WriteAt(buffer_.data(), buffer_.size(), written_));
  written_ += static_cast<int64_t>(buffer_.size());
  buffer_.clear();
  return Status::Ok();
}

Status SpillFile::WriteAt(const void* data, size_t n, int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd_, p, n, offset);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Errno("cannot write a temporary file in " + dir_);
    p += w;
    n -= static_cast<size_t>(w);
    offset += w;
  }
  return Status::Ok();
}

Status SpillFile::ReadAt(void* data, size_t n, int64_t offset) const {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd_, p, n, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Errno("cannot read back a temporary file in " + dir_);
    p += r;
    n -= static_cast<size_t>(r);
    offset += r;
  }
  return Status::Ok();
}

}  // namespace parallelrun::rt::internal
