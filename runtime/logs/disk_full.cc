#include "runtime/logs/disk_full.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace parallelrun::rt {

bool IsDiskFullError(const std::string& error) {
  for (const std::string& needle :
       {std::string(std::strerror(ENOSPC)), std::string(std::strerror(EDQUOT)),
        std::string("[Errno 28]"), std::string("[Errno 122]"), std::string("ENOSPC")}) {
    if (error.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string DiskFullMessage(const std::string& what, const std::string& error) {
  return "no space left on the disk: cannot write " + what + " (" + error +
         "). Free space on that file system (or raise the quota) and run the same command "
         "again: the mini-batches already completed are kept and do not run again";
}

Status SpaceReserve::Create(const std::string& path, int64_t bytes) {
  path_ = path;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return InternalError("cannot create " + path + ": " + std::strerror(errno));
  std::vector<char> block(64 * 1024, '\0');
  int64_t left = bytes;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(block.size())));
    ssize_t w = ::write(fd, block.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return InternalError("cannot write " + path + ": " + std::strerror(e));
    }
    left -= w;
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return InternalError("cannot write " + path + ": " + std::strerror(e));
  }
  ::close(fd);
  return Status::Ok();
}

bool SpaceReserve::Release() {
  if (path_.empty()) return false;
  bool existed = ::unlink(path_.c_str()) == 0;
  path_.clear();
  return existed;
}

}  // namespace parallelrun::rt
