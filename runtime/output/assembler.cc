#include "runtime/output/assembler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "runtime/base/files.h"

namespace parallelrun::rt {
namespace {

constexpr size_t kBufferSize = 1 << 20;
constexpr size_t kMaxMissingExamples = 5;

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return InternalError(what + " " + path + ": " + std::strerror(errno));
}

// Buffered writer over a file descriptor.
class Writer {
 public:
  Writer(int fd, std::string path) : fd_(fd), path_(std::move(path)), buf_(new char[kBufferSize]) {}
  Status Write(const char* data, size_t n) {
    bytes_ += static_cast<int64_t>(n);
    if (n > 0) last_ = data[n - 1];
    while (n > 0) {
      size_t take = std::min(n, kBufferSize - used_);
      std::memcpy(buf_.get() + used_, data, take);
      used_ += take;
      data += take;
      n -= take;
      if (used_ == kBufferSize) PR_RETURN_IF_ERROR(Flush());
    }
    return Status::Ok();
  }
  Status Flush() {
    size_t off = 0;
    while (off < used_) {
      ssize_t w = ::write(fd_, buf_.get() + off, used_ - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("cannot write", path_);
      }
      off += static_cast<size_t>(w);
    }
    used_ = 0;
    return Status::Ok();
  }
  int64_t bytes() const { return bytes_; }
  char last() const { return last_; }

 private:
  int fd_;
  std::string path_;
  std::unique_ptr<char[]> buf_;
  size_t used_ = 0;
  int64_t bytes_ = 0;
  char last_ = '\n';
};

// Copies `path` to `out`; NotFound when it does not exist. Ends the copy with a newline.
Status CopyPart(const std::string& path, Writer& out, char* buf) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError(path);
    return ErrnoStatus("cannot open part file", path);
  }
  int64_t copied = 0;
  while (true) {
    ssize_t n = ::read(fd, buf, kBufferSize);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = ErrnoStatus("cannot read part file", path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    copied += n;
    Status st = out.Write(buf, static_cast<size_t>(n));
    if (!st.ok()) {
      ::close(fd);
      return st;
    }
  }
  ::close(fd);
  if (copied > 0 && out.last() != '\n') return out.Write("\n", 1);
  return Status::Ok();
}

}  // namespace

StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<std::string(int64_t)>& part_path) {
  AssemblyStats stats;
  std::string header;
  if (options.header) {
    for (int64_t i = 0; i < count; ++i) {
      std::string part = part_path(i);
      if (part.empty()) continue;
      auto text = ReadFile(part + ".header");
      if (text.ok()) {
        header = std::move(*text);
        if (!header.empty() && header.back() != '\n') header.push_back('\n');
        break;
      }
      if (text.status().code() != StatusCode::kNotFound) return text.status();
    }
  }

  const std::string dir = Dirname(options.output_file);
  PR_RETURN_IF_ERROR(MakeDirs(dir));
  std::string base = options.output_file.substr(dir.size() + 1);
  std::string tmp = JoinPath(dir, "." + base + ".assembling");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create", tmp);
  auto fail = [&](Status st) -> StatusOr<AssemblyStats> {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };

  Writer out(fd, tmp);
  std::unique_ptr<char[]> buf(new char[kBufferSize]);
  if (!header.empty()) {
    Status st = out.Write(header.data(), header.size());
    if (!st.ok()) return fail(st);
    stats.header_written = true;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (options.cancel && options.cancel->load()) {
      return fail(AbortedError("output assembly of " + options.output_file + " was interrupted"));
    }
    std::string part = part_path(i);
    if (part.empty()) continue;
    Status st = CopyPart(part, out, buf.get());
    if (st.code() == StatusCode::kNotFound) {
      ++stats.missing_parts;
      if (stats.missing_examples.size() < kMaxMissingExamples)
        stats.missing_examples.push_back(part);
    } else if (!st.ok()) {
      return fail(st);
    } else {
      ++stats.parts;
    }
    if (options.on_progress) options.on_progress(stats.parts, out.bytes());
  }
  Status st = out.Flush();
  if (!st.ok()) return fail(st);
  if (::fsync(fd) != 0) return fail(ErrnoStatus("cannot fsync", tmp));
  ::close(fd);
  if (::rename(tmp.c_str(), options.output_file.c_str()) != 0) {
    Status e = ErrnoStatus("cannot rename to", options.output_file);
    ::unlink(tmp.c_str());
    return e;
  }
  PR_RETURN_IF_ERROR(SyncDir(dir));
  stats.bytes = out.bytes();
  return stats;
}

}  // namespace parallelrun::rt
