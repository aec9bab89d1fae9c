#include "runtime/coordinator/line_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace parallelrun::rt {

StatusOr<int64_t> ForEachLine(const std::string& path,
                              const std::function<Status(std::string_view, int64_t)>& on_line) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return int64_t{0};
    return InternalError("cannot open " + path + ": " + std::strerror(errno));
  }
  constexpr size_t kChunk = 1 << 20;
  std::string pending;     // the start of a line that continues in the next chunk
  int64_t pending_at = 0;  // its offset
  int64_t offset = 0;      // bytes read so far
  std::unique_ptr<char[]> buf(new char[kChunk]);
  Status st;
  while (st.ok()) {
    ssize_t n = ::read(fd, buf.get(), kChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      st = InternalError("cannot read " + path + ": " + std::strerror(errno));
      break;
    }
    if (n == 0) break;
    std::string_view chunk(buf.get(), static_cast<size_t>(n));
    size_t pos = 0;
    while (st.ok()) {
      size_t nl = chunk.find('\n', pos);
      if (nl == std::string_view::npos) {
        if (pending.empty()) pending_at = offset + static_cast<int64_t>(pos);
        pending.append(chunk.substr(pos));
        break;
      }
      if (pending.empty()) {
        st = on_line(chunk.substr(pos, nl - pos), offset + static_cast<int64_t>(pos));
      } else {
        pending.append(chunk.substr(pos, nl - pos));
        st = on_line(pending, pending_at);
        pending.clear();
      }
      pos = nl + 1;
    }
    offset += n;
  }
  ::close(fd);
  if (!st.ok()) return st;
  return offset - static_cast<int64_t>(pending.size());
}

Status TruncateFile(const std::string& path, int64_t size) {
  struct stat s;
  if (::stat(path.c_str(), &s) != 0) return Status::Ok();
  if (s.st_size <= size) return Status::Ok();
  if (::truncate(path.c_str(), size) != 0) {
    return InternalError("cannot truncate " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace parallelrun::rt
