// The part file of one prn_run() call (row_sink.h).

#include "runtime/hosts/native/row_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "runtime/base/files.h"
#include "runtime/hosts/native/host_util.h"

namespace parallelrun::rt::native {
namespace {

constexpr size_t kPartBufferBytes = 1 << 20;  // rows buffered before a write to the part file

}  // namespace

RowSink::RowSink(std::string path, std::set<std::string>* known_dirs)
    : path_(std::move(path)), known_dirs_(known_dirs) {}

RowSink::~RowSink() {
  if (fd_ >= 0) ::close(fd_);
}

int RowSink::Emit(const char* row, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || !error_.empty()) return -1;
  ++rows_;
  if (path_.empty()) return 0;
  buffer_.append(row, len);
  buffer_ += '\n';
  if (buffer_.size() >= kPartBufferBytes && !Flush()) return -1;
  return 0;
}

int RowSink::EmitCallback(void* host, const char* row, size_t len) {
  if (host == nullptr || (row == nullptr && len > 0)) return -1;
  return static_cast<RowSink*>(host)->Emit(row, len);
}

bool RowSink::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  if (path_.empty()) return error_.empty();
  if (!error_.empty() || !Flush()) return false;
  if (::fsync(fd_) != 0) return Fail("fsync", errno);
  ::close(fd_);
  fd_ = -1;
  std::string folder = Dirname(path_);
  if (known_dirs_->insert(folder).second) {
    // The folder is synced after the first file created in it (it may be new itself); later
    // files rely on their own fsync, as in the Python host (see its write_file).
    Status st = SyncDir(folder);
    if (!st.ok()) {
      known_dirs_->erase(folder);
      error_ = st.message();
      return false;
    }
  }
  return true;
}

void RowSink::Discard() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
}

int64_t RowSink::rows() {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_;
}

std::string RowSink::error() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

bool RowSink::Fail(const char* what, int e) {
  error_ = std::string(what) + ": " + Errno(e);
  return false;
}

bool RowSink::Flush() {
  if (fd_ < 0) {
    std::string folder = Dirname(path_);
    if (known_dirs_->count(folder) == 0) {
      Status st = MakeDirs(folder);
      if (!st.ok()) {
        error_ = st.message();
        return false;
      }
    }
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return Fail("open", errno);
  }
  if (!WriteAll(fd_, buffer_)) return Fail("write", errno);
  buffer_.clear();
  return true;
}

}  // namespace parallelrun::rt::native
