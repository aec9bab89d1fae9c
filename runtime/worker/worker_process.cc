#include "runtime/worker/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <set>
#include <thread>

namespace parallelrun::rt {
namespace {

using std::chrono::steady_clock;

// Without pidfd (kernels before 5.3) exits are noticed by polling at this period.
constexpr std::chrono::milliseconds kExitPollPeriod{50};

int OpenPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#else
  (void)pid;
  return -1;
#endif
}

// Milliseconds to `deadline`, rounded up, clamped to [0, cap].
int MillisUntil(WorkerProcess::Deadline deadline, int cap) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, cap));
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Live workers of this process. Spawning holds the lock, so a child is in the set before any
// orphan sweep can look at it.
std::mutex g_workers_mu;
std::set<pid_t>& LiveWorkers() {
  static std::set<pid_t> workers;
  return workers;
}
std::atomic<int64_t> g_next_tag{0};

bool IsSubreaper() {
  int on = 0;
  return ::prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) == 0 && on != 0;
}

// Kills and reaps the children of this process that are not live workers and satisfy `match`
// (zombies are reaped whatever they were). Call with g_workers_mu held.
template <typename Match>
int KillChildrenLocked(Match match) {
  int killed = 0;
  for (pid_t child : ChildPids(::getpid())) {
    if (LiveWorkers().count(child)) continue;
    if (!IsZombie(child)) {
      if (!match(child)) continue;
      ::kill(child, SIGKILL);
      ++killed;
    }
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  return killed;
}

}  // namespace

StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(SpawnOptions options) {
  // Requests go through a socket, written with MSG_NOSIGNAL: a dead child's end yields EPIPE
  // without a SIGPIPE, and no signal mask has to be set and restored around every request.
  int to_child[2];  // [0]: the child's end, [1]: ours (as with a pipe)
  int from_child[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to_child) != 0) {
    return InternalError(std::string("socketpair for the worker's control channel: ") +
                         strerror(errno));
  }
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(to_child[0]);
    ::close(to_child[1]);
    return InternalError(std::string("pipe2 for the worker's reply pipe: ") + strerror(e));
  }
  options.new_process_group = true;
  options.fds.push_back({to_child[0], kChildControlInFd});
  options.fds.push_back({from_child[1], kChildControlOutFd});
  const std::string tag = "PARALLELRUN_WORKER_TAG=" + std::to_string(::getpid()) + "." +
                          std::to_string(g_next_tag.fetch_add(1));
  options.env.push_back(tag);
  std::unique_lock<std::mutex> workers_lock(g_workers_mu);
  StatusOr<pid_t> pid = Spawn(options);
  if (pid.ok()) LiveWorkers().insert(*pid);
  workers_lock.unlock();
  ::close(to_child[0]);
  ::close(from_child[1]);
  if (!pid.ok()) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    return pid.status();
  }
  ::fcntl(to_child[1], F_SETFL, ::fcntl(to_child[1], F_GETFL) | O_NONBLOCK);
  ::fcntl(from_child[0], F_SETFL, ::fcntl(from_child[0], F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<WorkerProcess>(
      new WorkerProcess(*pid, to_child[1], from_child[0], OpenPidfd(*pid), tag));
}

WorkerProcess::~WorkerProcess() {
  KillAndReap();
  CloseFd(to_child_);
  CloseFd(from_child_);
  CloseFd(pidfd_);
}

Status WorkerProcess::Send(std::string_view data, Deadline deadline) {
  if (to_child_ < 0) return UnavailableError("the worker's control pipe is closed");
  while (!data.empty()) {
    ssize_t n = ::send(to_child_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // The child is not reading (busy, or hung): wait for room, or for its death.
      pollfd fds[2] = {{to_child_, POLLOUT, 0}, {pidfd_, POLLIN, 0}};
      int cap = pidfd_ >= 0 ? INT_MAX : static_cast<int>(kExitPollPeriod.count());
      if (steady_clock::now() >= deadline) {
        return DeadlineExceededError("the worker did not read its control pipe in time");
      }
      int r = ::poll(fds, pidfd_ >= 0 ? 2 : 1, MillisUntil(deadline, cap));
      if (r < 0 && errno != EINTR) {
        return InternalError(std::string("poll on the worker's control pipe: ") + strerror(errno));
      }
      if ((pidfd_ >= 0 && (fds[1].revents & POLLIN)) || (pidfd_ < 0 && exited())) {
        CloseFd(to_child_);
        return UnavailableError("the worker exited");
      }
      continue;
    }
    int e = n < 0 ? errno : EPIPE;
    CloseFd(to_child_);
    if (e == EPIPE) return UnavailableError("the worker closed its control pipe");
    return InternalError(std::string("writing to the worker's control pipe: ") + strerror(e));
  }
  return Status::Ok();
}

void WorkerProcess::Drain() {
  char chunk[65536];
  while (!eof_ && buffer_.size() <= kMaxLineBytes) {
    ssize_t n = ::read(from_child_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      eof_ = true;
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN) eof_ = true;  // EBADF/EIO: nothing more will come
      return;
    }
  }
}

WorkerProcess::ReadResult WorkerProcess::ReadLine(Deadline deadline, std::string* line) {
  for (;;) {
    size_t nl = buffer_.find('\n', scanned_);
    if (nl != std::string::npos) {
      line->assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      scanned_ = 0;
      return ReadResult::kLine;
    }
    scanned_ = buffer_.size();
    if (buffer_.size() > kMaxLineBytes) return ReadResult::kTooLong;
    if (eof_ || child_exited_) return ReadResult::kClosed;
    if (steady_clock::now() >= deadline) return ReadResult::kTimeout;

    pollfd fds[2] = {{from_child_, POLLIN, 0}, {pidfd_, POLLIN, 0}};
    int cap = pidfd_ >= 0 ? INT_MAX : static_cast<int>(kExitPollPeriod.count());
    int r = ::poll(fds, pidfd_ >= 0 ? 2 : 1, MillisUntil(deadline, cap));
    if (r < 0) {
      if (errno == EINTR) continue;
      eof_ = true;  // cannot wait on the pipe: treat the channel as gone
      continue;
    }
    if (fds[0].revents != 0) Drain();
    if (pidfd_ >= 0 ? (fds[1].revents & POLLIN) != 0 : exited()) {
      // Everything the child wrote before it died is in the pipe now: take it before giving up
      // (a reply written just before exiting still counts).
      Drain();
      child_exited_ = true;
    }
  }
}

bool WorkerProcess::WaitExit(Deadline deadline) {
  for (;;) {
    if (exited()) return true;
    if (steady_clock::now() >= deadline) return false;
    if (pidfd_ >= 0) {
      pollfd fd{pidfd_, POLLIN, 0};
      int r = ::poll(&fd, 1, MillisUntil(deadline, INT_MAX));
      if (r < 0 && errno != EINTR) return exited();
    } else {
      std::this_thread::sleep_for(
          std::min<std::chrono::nanoseconds>(kExitPollPeriod, deadline - steady_clock::now()));
    }
  }
}

bool WorkerProcess::exited() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_) return true;
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  // WNOWAIT leaves the zombie in place, so the pid stays ours until KillAndReap.
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;  // reaped behind our back: it is gone either way
  }
  return info.si_pid == pid_;
}

ExitInfo WorkerProcess::KillAndReap() {
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_) return exit_info_;
  // While the child is unreaped (even a zombie) its pid and process group id cannot be reused,
  // so these signals reach only the child and its group.
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status = 0;
  rusage usage{};
  pid_t r;
  do {
    r = ::wait4(pid_, &status, 0, &usage);
  } while (r < 0 && errno == EINTR);
  reaped_ = true;
  ForgetAndKillTagged(pid_, tag_);
  if (r == pid_) {
    if (WIFEXITED(status)) {
      exit_info_.exited = true;
      exit_info_.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      exit_info_.exited = false;
      exit_info_.signal = WTERMSIG(status);
    }
    max_rss_kib_ = usage.ru_maxrss;
    cpu_s_ = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
             static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  } else {
    exit_info_ = ExitInfo{true, 0, 0};  // someone else reaped it: the status is unknown
  }
  return exit_info_;
}

void WorkerProcess::ForgetAndKillTagged(pid_t pid, const std::string& tag) {
  std::lock_guard<std::mutex> lock(g_workers_mu);
  LiveWorkers().erase(pid);
  if (!IsSubreaper()) return;
  KillChildrenLocked([&](pid_t child) { return ProcessEnvironHas(child, tag); });
}

int WorkerProcess::KillOrphans() {
  std::lock_guard<std::mutex> lock(g_workers_mu);
  return KillChildrenLocked([](pid_t) { return true; });
}

void WorkerProcess::Kill() {
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
}

bool WorkerProcess::reaped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reaped_;
}

int64_t WorkerProcess::max_rss_kib() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_rss_kib_;
}

double WorkerProcess::cpu_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cpu_s_;
}

}  // namespace parallelrun::rt
