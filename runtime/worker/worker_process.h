// A child process with a line-oriented control channel: the mechanism under every entry host.
//
// The child reads requests on fd kChildControlInFd (a Unix stream socket) and writes replies on fd
// kChildControlOutFd (a pipe), one line each. The parent waits on the reply pipe and on the process
// itself (a pidfd), so it notices a death at once even when a grandchild still holds the pipe open.
//
// Guarantees:
// - The child runs in its own process group; killing or reaping kills the whole group, so the
//   user's own subprocesses do not outlive the worker.
// - Kill() is safe from any thread and never signals a recycled pid: the pid is only reaped under
//   the same lock, after which Kill() does nothing.
// - The destructor kills and reaps the child if that has not happened yet (no zombies).
// - Writing to a dead child returns an error instead of raising SIGPIPE.
// - Descendants that left the group (a daemon: double fork + setsid) are found through the
//   variable PARALLELRUN_WORKER_TAG=<agent pid>.<n> that every child gets: once the agent is a
//   child subreaper (BecomeSubreaper), they are reparented to it when their parent dies, and
//   KillAndReap() kills and reaps the ones carrying this worker's tag. KillOrphans() kills the
//   rest (every child of this process that is not a live worker) when the agent ends.
// Caveats: everything but Kill(), pid() and exited() is for one thread at a time. The child gets
// PR_SET_PDEATHSIG, so it dies with the thread that called Start(): start it from a thread that
// lives as long as the worker.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/base/process.h"
#include "runtime/base/status.h"

namespace parallelrun::rt {

class WorkerProcess {
 public:
  static constexpr int kChildControlInFd = 3;   // parent -> child requests
  static constexpr int kChildControlOutFd = 4;  // child -> parent replies
  // A reply line longer than this is a protocol error (a child writing garbage).
  static constexpr size_t kMaxLineBytes = 64 << 20;

  using Deadline = std::chrono::steady_clock::time_point;

  // Spawns `options` (new_process_group is forced on) with the control pipes mapped to the fds
  // above.
  static StatusOr<std::unique_ptr<WorkerProcess>> Start(SpawnOptions options);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Writes `data` (whole lines) before `deadline`. kDeadlineExceeded when the child does not read
  // in time, kUnavailable when it has closed its end (exited).
  Status Send(std::string_view data, Deadline deadline);

  enum class ReadResult {
    kLine,     // *line holds the next line, without its '\n'
    kClosed,   // the child exited or closed its reply pipe; no complete line is left
    kTimeout,  // nothing complete before the deadline
    kTooLong,  // more than kMaxLineBytes without a newline
  };
  ReadResult ReadLine(Deadline deadline, std::string* line);

  // Waits until the child has exited (without reaping it). True when it has.
  bool WaitExit(Deadline deadline);
  // True once the child has exited (reaped or not). Thread-safe.
  bool exited() const;

  // SIGKILL to the child's process group (stragglers included), then reaps the child. Idempotent:
  // later calls return the same ExitInfo.
  ExitInfo KillAndReap();
  // SIGKILL to the child's process group now; does not reap. Thread-safe.
  void Kill();

  // Kills and reaps every child of this process that is not a live WorkerProcess: descendants of
  // ended workers reparented here (this process must be a subreaper). Returns how many. Call it
  // only in a process whose children are all WorkerProcesses (the agent).
  static int KillOrphans();

  pid_t pid() const { return pid_; }
  bool reaped() const;
  // CPU seconds (user + system) of the child and its reaped descendants; valid once reaped.
  double cpu_s() const;
  // Peak resident set size of the child in KiB (wait4's ru_maxrss); valid once reaped.
  int64_t max_rss_kib() const;

 private:
  WorkerProcess(pid_t pid, int to_child, int from_child, int pidfd, std::string tag)
      : pid_(pid),
        to_child_(to_child),
        from_child_(from_child),
        pidfd_(pidfd),
        tag_(std::move(tag)) {}
  // Drops `pid` from the live workers, then (in a subreaper) kills and reaps the children of this
  // process that carry `tag`: the worker's descendants reparented here.
  static void ForgetAndKillTagged(pid_t pid, const std::string& tag);
  // Reads what the reply pipe holds now (non-blocking). Sets eof_ on end of file.
  void Drain();

  const pid_t pid_;
  int to_child_;
  int from_child_;
  int pidfd_;              // -1 when the kernel has no pidfd_open: exits are then polled
  const std::string tag_;  // "PARALLELRUN_WORKER_TAG=..." in the child's environment
  std::string buffer_;
  size_t scanned_ = 0;  // buffer_[0, scanned_) holds no '\n'
  bool eof_ = false;
  bool child_exited_ = false;

  mutable std::mutex mu_;  // guards the fields below and every signal sent to pid_
  bool reaped_ = false;
  ExitInfo exit_info_;
  double cpu_s_ = 0;
  int64_t max_rss_kib_ = 0;
};

}  // namespace parallelrun::rt
