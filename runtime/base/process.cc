#include "runtime/base/process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>
#include <thread>

#include "runtime/base/files.h"

extern char** environ;

namespace parallelrun::rt {

std::string ExitInfo::ToString() const {
  if (exited) return "exit code " + std::to_string(code);
  const char* name = strsignal(signal);
  return "signal " + std::to_string(signal) + " (" + (name ? name : "?") + ")";
}

namespace {

// The child's environment: the parent's, with the entries `extra` sets (KEY=VALUE) replaced.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    bool overridden = false;
    for (const auto& add : extra) {
      if (add.compare(0, add.find('=') + 1, kv, 0, eq + 1) == 0) overridden = true;
    }
    if (!overridden) env.push_back(std::move(kv));
  }
  for (const auto& add : extra) env.push_back(add);
  return env;
}

// A null-terminated array of pointers into `strings` (which must outlive it), for exec.
std::vector<char*> CStringArray(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The child's stdout and stderr files, opened for appending (-1: inherited).
struct ChildOutput {
  int out_fd = -1;
  int err_fd = -1;
  void Close() {
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
    out_fd = err_fd = -1;
  }
};

StatusOr<ChildOutput> OpenChildOutput(const SpawnOptions& o) {
  ChildOutput files;
  if (!o.stdout_path.empty()) {
    files.out_fd = ::open(o.stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (files.out_fd < 0) {
      return InternalError("cannot open " + o.stdout_path + ": " + std::strerror(errno));
    }
  }
  if (!o.stderr_path.empty()) {
    files.err_fd = ::open(o.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (files.err_fd < 0) {
      files.Close();
      return InternalError("cannot open " + o.stderr_path + ": " + std::strerror(errno));
    }
  }
  return files;
}

// In the child, after fork: only async-signal-safe calls. Sets up the process (parent-death
// signal, process group, signals, stdio, fds, cwd) and execs; on failure writes errno to
// `errpipe` and exits 127.
[[noreturn]] void ExecChild(const SpawnOptions& o, const ChildOutput& files, int errpipe,
                            pid_t parent, char** argv, char** envp) {
  if (o.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
  }
  if (o.new_process_group) ::setpgid(0, 0);
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  if (files.out_fd >= 0) ::dup2(files.out_fd, 1);
  if (files.err_fd >= 0) ::dup2(files.err_fd, 2);
  // dup2 clears CLOEXEC on the target. Move sources above the targets first so a source that
  // equals another mapping's target is not clobbered.
  int moved[64];
  size_t n = o.fds.size() < 64 ? o.fds.size() : 64;
  for (size_t i = 0; i < n; ++i) moved[i] = ::fcntl(o.fds[i].first, F_DUPFD_CLOEXEC, 100);
  for (size_t i = 0; i < n; ++i) ::dup2(moved[i], o.fds[i].second);
  if (o.cwd.empty() || ::chdir(o.cwd.c_str()) == 0) ::execvpe(argv[0], argv, envp);
  int e = errno;
  (void)!::write(errpipe, &e, sizeof e);
  ::_exit(127);
}

// In the parent: waits until the child has exec'd (the error pipe closes) or failed to (it sends
// errno, and the child is reaped).
StatusOr<pid_t> AwaitExec(pid_t pid, int errpipe, const std::string& program) {
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(errpipe, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(errpipe);
  if (n == sizeof child_errno) {
    ::waitpid(pid, nullptr, 0);
    return NotFoundError("cannot start " + program + ": " + std::strerror(child_errno));
  }
  return pid;
}

}  // namespace

StatusOr<pid_t> Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return InvalidArgumentError("Spawn: empty argv");
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_storage = ChildEnvironment(o.env);
  std::vector<char*> envp = CStringArray(env_storage);
  std::vector<std::string> argv_storage = o.argv;
  std::vector<char*> argv = CStringArray(argv_storage);
  PR_ASSIGN_OR_RETURN(ChildOutput files, OpenChildOutput(o));
  // Error pipe: the child writes errno if exec fails; CLOEXEC closes it on success.
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    files.Close();
    return InternalError("pipe2 failed");
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    files.Close();
    return InternalError(std::string("fork failed: ") + std::strerror(e));
  }
  if (pid == 0) ExecChild(o, files, errpipe[1], parent, argv.data(), envp.data());
  ::close(errpipe[1]);
  files.Close();
  return AwaitExec(pid, errpipe[0], o.argv[0]);
}

static ExitInfo FromWaitStatus(int st) {
  ExitInfo info;
  if (WIFEXITED(st)) {
    info.exited = true;
    info.code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    info.signal = WTERMSIG(st);
  }
  return info;
}

std::optional<ExitInfo> TryWait(pid_t pid) {
  int st = 0;
  pid_t r = ::waitpid(pid, &st, WNOHANG);
  if (r == pid) return FromWaitStatus(st);
  if (r < 0 && errno == ECHILD) return ExitInfo{true, 0, 0};
  return std::nullopt;
}

ExitInfo Wait(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return ExitInfo{true, 0, 0};
  }
  return FromWaitStatus(st);
}

namespace {

// A whole small file, "" when it cannot be read. It reads with read(2): a /proc file of a
// process that exits between open and read fails with ESRCH, which std::istreambuf_iterator
// throws as std::ios_failure (an agent died of it in the chaos test).
std::string ReadSmallFile(const std::string& path) {
  StatusOr<std::string> text = ReadFile(path);
  return text.ok() ? std::move(text).value() : std::string();
}

// Parent pid and state letter from /proc/PID/stat; false when the process is gone.
bool ReadStat(pid_t pid, pid_t* ppid, char* state) {
  std::string stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  // The command name is in parentheses and may hold anything: parse after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 4 >= stat.size()) return false;
  *state = stat[close + 2];
  *ppid = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
  return true;
}

// (pid, ppid) of every process in /proc.
std::vector<std::pair<pid_t, pid_t>> ProcessTable() {
  std::vector<std::pair<pid_t, pid_t>> table;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return table;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    pid_t ppid = 0;
    char state = 0;
    if (ReadStat(static_cast<pid_t>(pid), &ppid, &state)) {
      table.emplace_back(static_cast<pid_t>(pid), ppid);
    }
  }
  ::closedir(dir);
  return table;
}

// Whether the kernel lists each thread's children in /proc/PID/task/TID/children
// (CONFIG_PROC_CHILDREN).
bool HaveChildrenFiles() {
  static const bool have = ::access("/proc/thread-self/children", R_OK) == 0;
  return have;
}

// The children of `parent` from its threads' `children` files: a few small files instead of the
// stat file of every process on the machine. A child belongs to the thread that forked it, or
// (reparented to a subreaper, or its thread ended) to another thread of the process.
std::vector<pid_t> ChildrenFromTasks(pid_t parent) {
  std::vector<pid_t> out;
  const std::string tasks = "/proc/" + std::to_string(parent) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string text = ReadSmallFile(tasks + "/" + e->d_name + "/children");
    const char* p = text.c_str();
    char* end = nullptr;
    for (long pid = std::strtol(p, &end, 10); end != p; pid = std::strtol(p, &end, 10)) {
      if (pid > 0) out.push_back(static_cast<pid_t>(pid));
      p = end;
    }
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

std::vector<pid_t> ChildPids(pid_t parent) {
  if (HaveChildrenFiles()) return ChildrenFromTasks(parent);
  std::vector<pid_t> out;
  for (const auto& [pid, ppid] : ProcessTable()) {
    if (ppid == parent) out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> DescendantPids(pid_t root) {
  auto table = ProcessTable();
  std::vector<pid_t> out;
  std::vector<pid_t> frontier = {root};
  while (!frontier.empty()) {
    std::vector<pid_t> next;
    for (pid_t parent : frontier) {
      for (const auto& [pid, ppid] : table) {
        if (ppid == parent && pid != root) next.push_back(pid);
      }
    }
    out.insert(out.end(), next.begin(), next.end());
    frontier = std::move(next);
    if (out.size() > table.size()) break;  // a cycle (pid reuse while reading): stop
  }
  return out;
}

bool ProcessEnvironHas(pid_t pid, const std::string& key_value) {
  std::string env = ReadSmallFile("/proc/" + std::to_string(pid) + "/environ");
  size_t pos = 0;
  while (pos < env.size()) {
    size_t end = env.find('\0', pos);
    if (end == std::string::npos) end = env.size();
    if (std::string_view(env).substr(pos, end - pos) == key_value) return true;
    pos = end + 1;
  }
  return false;
}

bool IsZombie(pid_t pid) {
  pid_t ppid = 0;
  char state = 0;
  return ReadStat(pid, &ppid, &state) && state == 'Z';
}

bool BecomeSubreaper() { return ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0; }

int KillAllDescendants(std::chrono::milliseconds within) {
  const pid_t self = ::getpid();
  const auto deadline = std::chrono::steady_clock::now() + within;
  int killed = 0;
  while (true) {
    std::vector<pid_t> pids = DescendantPids(self);
    bool any_alive = false;
    for (pid_t pid : pids) {
      if (IsZombie(pid)) continue;
      any_alive = true;
      if (::kill(pid, SIGKILL) == 0) ++killed;
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!any_alive || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return killed;
}

int64_t KeyValueCounter(const std::string& text, const std::string& key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ' ') {
      return std::strtoll(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
    pos = end + 1;
  }
  return -1;
}

namespace {

// The oom_kill counter of this process's memory cgroup (v2, else v1); 0 when unreadable.
int64_t CgroupOomKills() {
  std::string cgroups = ReadSmallFile("/proc/self/cgroup");
  size_t pos = 0;
  while (pos < cgroups.size()) {
    size_t end = cgroups.find('\n', pos);
    if (end == std::string::npos) end = cgroups.size();
    std::string line = cgroups.substr(pos, end - pos);
    pos = end + 1;
    // "0::/path" (v2) or "4:memory:/path" (v1).
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    std::string path = line.substr(c2 + 1);
    int64_t n = -1;
    if (controllers.empty()) {
      n = KeyValueCounter(ReadSmallFile("/sys/fs/cgroup" + path + "/memory.events"), "oom_kill");
      if (n < 0) {
        n = KeyValueCounter(ReadSmallFile("/sys/fs/cgroup/unified" + path + "/memory.events"),
                            "oom_kill");
      }
    } else if (controllers == "memory") {
      n = KeyValueCounter(ReadSmallFile("/sys/fs/cgroup/memory" + path + "/memory.oom_control"),
                          "oom_kill");
    }
    if (n >= 0) return n;
  }
  return 0;
}

}  // namespace

int64_t OomKillCount() {
  int64_t vm = KeyValueCounter(ReadSmallFile("/proc/vmstat"), "oom_kill");
  return std::max<int64_t>(vm, 0) + CgroupOomKills();
}

std::string SelfExePath() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "parallelrun";
  return std::string(buf, static_cast<size_t>(n));
}

StatusOr<int> PickFreePort(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return InvalidArgumentError("not an IPv4 address: " + host);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return UnavailableError("cannot bind " + host + ": " + std::strerror(e));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

}  // namespace parallelrun::rt
