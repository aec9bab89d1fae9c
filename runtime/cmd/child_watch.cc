#include "runtime/cmd/child_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture since Linux 5.3
#endif

namespace parallelrun::rt::cmd {

ChildWatch::ChildWatch() : wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ChildWatch::~ChildWatch() {
  for (const auto& [pid, fd] : pidfds_) {
    if (fd >= 0) ::close(fd);
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ChildWatch::Add(pid_t pid) {
  Forget(pid);
  // pidfds are opened close-on-exec.
  pidfds_[pid] = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void ChildWatch::Forget(pid_t pid) {
  auto it = pidfds_.find(pid);
  if (it == pidfds_.end()) return;
  if (it->second >= 0) ::close(it->second);
  pidfds_.erase(it);
}

std::optional<ExitInfo> ChildWatch::TryWait(pid_t pid) {
  std::optional<ExitInfo> info = rt::TryWait(pid);
  if (info) Forget(pid);
  return info;
}

ExitInfo ChildWatch::Wait(pid_t pid) {
  ExitInfo info = rt::Wait(pid);
  Forget(pid);
  return info;
}

void ChildWatch::Wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

void ChildWatch::WaitUntil(std::chrono::steady_clock::time_point deadline, int extra_fd) {
  std::vector<pollfd> fds;
  bool fallback = wake_fd_ < 0;
  if (wake_fd_ >= 0) fds.push_back({wake_fd_, POLLIN, 0});
  if (extra_fd >= 0) fds.push_back({extra_fd, POLLIN, 0});
  for (const auto& [pid, fd] : pidfds_) {
    if (fd >= 0) {
      fds.push_back({fd, POLLIN, 0});
    } else {
      fallback = true;
    }
  }
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (fallback) left = std::min(left, std::chrono::milliseconds(kFallbackStep));
  if (left.count() <= 0) return;
  // A signal (EINTR) ends the wait early, which callers allow.
  (void)::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
  uint64_t count = 0;
  if (wake_fd_ >= 0) (void)!::read(wake_fd_, &count, sizeof count);
}

}  // namespace parallelrun::rt::cmd
