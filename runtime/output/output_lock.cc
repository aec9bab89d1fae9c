#include "runtime/output/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"

namespace parallelrun::rt {
namespace {

std::string LockPath(const std::string& output_dir) {
  return JoinPath(JoinPath(output_dir, ".parallelrun"), kOutputLockFile);
}

std::string HostName() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string HolderText(const std::string& path) {
  auto text = ReadFile(path);
  std::string who = text.ok() ? Trimmed(*text) : std::string();
  return who.empty() ? "a process that has not written its name yet" : who;
}

}  // namespace

StatusOr<OutputLock> OutputLock::Acquire(const std::string& output_dir, std::chrono::seconds wait,
                                         const std::function<void(const std::string&)>& on_wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool said = false;
  while (true) {
    auto lock = TryAcquire(output_dir);
    if (lock.ok() || lock.status().code() != StatusCode::kFailedPrecondition ||
        std::chrono::steady_clock::now() >= deadline) {
      return lock;
    }
    if (!said && on_wait) on_wait(HolderText(LockPath(output_dir)));
    said = true;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

StatusOr<OutputLock> OutputLock::TryAcquire(const std::string& output_dir) {
  const std::string path = LockPath(output_dir);
  // Opening an existing lock file changes nothing: a run that is refused leaves no trace.
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    PR_RETURN_IF_ERROR(MakeDirs(Dirname(path)));
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  }
  if (fd < 0) {
    return InternalError("cannot open the output lock " + path + ": " + std::strerror(errno));
  }
  // A few tries over ~100 ms: Holder's brief shared probe must not refuse a run.
  int locked = -1;
  for (int i = 0; i < 10 && (locked = ::flock(fd, LOCK_EX | LOCK_NB)) != 0; ++i) {
    if (errno != EWOULDBLOCK) break;
    ::usleep(10000);
  }
  if (locked != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) {
      return FailedPreconditionError("the output folder " + output_dir +
                                     " is in use by another run (" + HolderText(path) +
                                     ", holding " + path +
                                     "); nothing was changed in it. Wait for that run to end, "
                                     "stop it, or use another output folder");
    }
    return InternalError("cannot lock " + path + ": " + std::strerror(e));
  }
  OutputLock lock(fd, path);
  const std::string who = "pid " + std::to_string(::getpid()) + " host " + HostName() + " since " +
                          Iso8601Utc(RealClock::Get().Now()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) < 0) {
    return InternalError("cannot write the output lock " + path + ": " + std::strerror(errno));
  }
  return lock;
}

std::string OutputLock::Holder(const std::string& output_dir) {
  const std::string path = LockPath(output_dir);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  // A shared probe: it fails only while someone holds the exclusive lock.
  std::string who;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) who = HolderText(path);
  ::close(fd);  // drops the probe
  return who;
}

OutputLock& OutputLock::operator=(OutputLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace parallelrun::rt
