// Starting and watching child processes (the process seam used by `parallelrun run` for its
// coordinator and agents, and by agents for their workers).
//
// Guarantees: a child started with die_with_parent gets PR_SET_PDEATHSIG(SIGKILL), so it dies when
// the *thread* that spawned it exits; spawn from a thread that lives as long as the child should.
// File descriptors not named in `fds` are closed in the child (everything we open is O_CLOEXEC).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

struct SpawnOptions {
  std::vector<std::string> argv;         // argv[0] is looked up on PATH when it has no '/'
  std::vector<std::string> env;          // extra KEY=VALUE entries over the parent's env
  std::string stdout_path;               // appended to; empty = inherit
  std::string stderr_path;               // appended to; empty = inherit
  std::vector<std::pair<int, int>> fds;  // {parent_fd, child_fd}: dup2'ed into the child
  std::string cwd;                       // empty = inherit
  bool die_with_parent = true;
  bool new_process_group = false;
};

StatusOr<pid_t> Spawn(const SpawnOptions& options);

struct ExitInfo {
  bool exited = false;  // true: `code` holds the exit code; false: killed by `signal`
  int code = 0;
  int signal = 0;
  std::string ToString() const;  // "exit code 3" / "signal 9 (Killed)"
};

// Non-blocking: nullopt while the child runs.
std::optional<ExitInfo> TryWait(pid_t pid);
ExitInfo Wait(pid_t pid);

// Path of the running executable (/proc/self/exe).
std::string SelfExePath();

// Picks a free TCP port on `host` (bind to port 0, read it back, close). A race with another
// process is possible; callers retry on a bind failure.
StatusOr<int> PickFreePort(const std::string& host);

}  // namespace parallelrun::rt
