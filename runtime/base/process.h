// Starting and watching child processes (the process seam used by `parallelrun run` for its
// coordinator and agents, and by agents for their workers).
//
// Guarantees: a child started with die_with_parent gets PR_SET_PDEATHSIG(SIGKILL), so it dies when
// the *thread* that spawned it exits; spawn from a thread that lives as long as the child should.
// File descriptors not named in `fds` are closed in the child (everything we open is O_CLOEXEC).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
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

// Processes whose parent is `parent`, zombies included: from /proc/PARENT/task/*/children, or
// where the kernel has no such files, from the stat file of every process.
std::vector<pid_t> ChildPids(pid_t parent);
// Every descendant of `root` (children, their children, ...), parents before their children.
std::vector<pid_t> DescendantPids(pid_t root);
// True when /proc/PID/environ holds the entry `key_value` ("KEY=VALUE"); false when it does not
// or cannot be read (a zombie, another user's process).
bool ProcessEnvironHas(pid_t pid, const std::string& key_value);
// True when /proc/PID/stat says the process is a zombie.
bool IsZombie(pid_t pid);
// Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): orphaned descendants are
// reparented to it instead of init, so it can find and kill them. False when the kernel refuses.
bool BecomeSubreaper();
// SIGKILLs every descendant of this process and reaps the ones that are its children, again and
// again until none is left or `within` has passed (orphans reparented to a subreaper appear as new
// children meanwhile). Returns how many processes were killed.
int KillAllDescendants(std::chrono::milliseconds within);

// Out-of-memory kills the kernel has counted so far, as this process can see them: /proc/vmstat's
// oom_kill plus the oom_kill counter of this process's memory cgroup (v2 memory.events, v1
// memory.oom_control), which containers may show when /proc/vmstat is the host's or virtual.
// A rise between two readings around a SIGKILL says the kernel's OOM killer was probably the
// killer. 0 when none of them can be read.
int64_t OomKillCount();
// The value of `key` in text of "key value" lines (/proc/vmstat, memory.events); -1 when absent.
int64_t KeyValueCounter(const std::string& text, const std::string& key);

// Path of the running executable (/proc/self/exe).
std::string SelfExePath();

// Picks a free TCP port on `host` (bind to port 0, read it back, close). A race with another
// process is possible; callers retry on a bind failure.
StatusOr<int> PickFreePort(const std::string& host);

}  // namespace parallelrun::rt
