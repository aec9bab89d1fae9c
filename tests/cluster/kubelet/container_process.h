// Starting one container of the process kubelet: a host process in its own mount and UTS
// namespace, with the pod's volumes bind-mounted at their mount paths.
//
// The child is forked from a multi-threaded process, so everything it needs (argv, envp, the
// mount plan) is computed before fork() and the child only makes system calls: unshare, mount,
// mkdir, open, dup2, chdir, setsid, execve. A failure before exec is reported back through a
// close-on-exec pipe, so LaunchContainer() knows whether the exec happened.
//
// Mount points that do not exist are created as follows (a mount namespace does not isolate
// directory creation, so creating a folder on the host would leave it behind):
//   - below another mount of the same container: inside that volume, as a real kubelet does;
//   - under /mnt, /etc/parallelrun, /var/run/secrets, /run/secrets, /dev/termination-log, or
//     directly under /: on the host (harmless, documented in tests/cluster/README.md);
//   - anywhere else: the deepest existing ancestor gets an overlay (host folder as the lower
//     layer, a tmpfs as the upper one) in the container's namespace only, and the mount point is
//     created in the overlay; the host is unchanged.
//
// Guarantees: the container's main process leads its own session and process group (pgid ==
// pid), so KillProcessGroup() reaches everything it started that did not call setsid itself.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

// One bind mount of a container.
struct BindMount {
  std::string source;  // host path: a folder or a regular file
  std::string target;  // absolute path inside the container
  bool read_only = false;
};

struct LaunchSpec {
  // argv[0] without '/' is looked up in `search_path` (a PATH value); with '/', used as is
  // (inside the container's mounts).
  std::vector<std::string> argv;
  std::string search_path;
  std::vector<std::string> env;  // KEY=VALUE, the whole environment
  std::string working_dir;       // "" = "/"
  std::string hostname;          // set in a new UTS namespace; "" = keep the host's
  std::vector<BindMount> mounts;
  std::string log_path;     // stdout and stderr are appended here
  std::string scratch_dir;  // an empty host folder the launcher may mount a tmpfs on
  bool die_with_parent_thread = true;
};

// Starts the container; returns its pid (also its process group id), or -1 with `error` set
// (e.g. `exec: "foo": executable file not found in $PATH` or a failed mount) when it did not get
// as far as exec. The caller reaps the pid with waitpid().
pid_t LaunchContainer(const LaunchSpec& spec, std::string* error);

// Sends `signal` to the process group `pgid`; ignores a group that is already gone.
void KillProcessGroup(pid_t pgid, int signal);

// True when `target` may be created on the host when missing (see the header comment).
bool MayCreateOnHost(const std::string& target);

// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 when
// the process does not exist. Used with the pid to recognise our process after pid reuse.
unsigned long long ProcessStartTime(pid_t pid);

// Records of running pod processes in <dir>/<key>.pid ("<pid> <start time>"), so that a
// restarted testcluster or `testcluster down` can kill processes left behind.
void RecordPid(const std::string& dir, const std::string& key, pid_t pid);
void ForgetPid(const std::string& dir, const std::string& key);
// SIGKILLs the process group of every recorded process that still runs and removes the records.
// Returns how many groups were signalled.
int KillRecordedProcesses(const std::string& dir);

}  // namespace parallelrun::rt::cluster
