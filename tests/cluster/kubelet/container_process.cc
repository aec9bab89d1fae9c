#include "tests/cluster/kubelet/container_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace parallelrun::rt::cluster {
namespace {

// One step of the child's set-up, all strings prepared before fork().
struct MountOp {
  enum Kind { kMkdir, kCreateFile, kBind, kRemountReadOnly, kTmpfs, kOverlay };
  Kind kind;
  std::string target;
  std::string source;  // kBind
  std::string data;    // kOverlay: mount options
};

// What the child reports when it fails before exec: the errno and which step failed
// (-1: exec, -2: chdir, -3: namespace set-up, -4: stdio).
struct ChildFailure {
  int err;
  int step;
};

int Depth(const std::string& path) {
  return static_cast<int>(std::count(path.begin(), path.end(), '/'));
}

bool IsUnder(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
         path[root.size()] == '/';
}

std::string Normalize(const std::string& path) {
  std::string out;
  std::stringstream in(path);
  std::string part;
  while (std::getline(in, part, '/')) {
    if (part.empty() || part == ".") continue;
    out += "/" + part;
  }
  return out.empty() ? "/" : out;
}

std::string Parent(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

bool Exists(const std::string& path, bool* is_dir) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (is_dir) *is_dir = S_ISDIR(st.st_mode);
  return true;
}

// mkdir steps for every component of `path` (each tolerates EEXIST in the child).
void AddMkdirs(const std::string& path, std::vector<MountOp>* ops) {
  std::string prefix;
  std::stringstream in(path);
  std::string part;
  while (std::getline(in, part, '/')) {
    if (part.empty()) continue;
    prefix += "/" + part;
    ops->push_back({MountOp::kMkdir, prefix, "", ""});
  }
}

std::string DescribeOp(const MountOp& op) {
  switch (op.kind) {
    case MountOp::kMkdir:
      return "creating mount point folder " + op.target;
    case MountOp::kCreateFile:
      return "creating mount point file " + op.target;
    case MountOp::kBind:
      return "bind-mounting " + op.source + " at " + op.target;
    case MountOp::kRemountReadOnly:
      return "remounting " + op.target + " read-only";
    case MountOp::kTmpfs:
      return "mounting a tmpfs at " + op.target;
    case MountOp::kOverlay:
      return "mounting an overlay over " + op.target;
  }
  return "mount step";
}

// Computes the child's mount steps; false with `error` when a mount cannot work.
bool PlanMounts(const LaunchSpec& spec, std::vector<MountOp>* ops, std::string* error) {
  std::vector<BindMount> mounts = spec.mounts;
  for (auto& m : mounts) m.target = Normalize(m.target);
  std::stable_sort(mounts.begin(), mounts.end(), [](const BindMount& a, const BindMount& b) {
    return Depth(a.target) < Depth(b.target);
  });

  std::vector<std::string> overlay_roots;
  std::vector<MountOp> binds;
  std::vector<std::string> done;
  for (const auto& m : mounts) {
    bool source_is_dir = false;
    if (!Exists(m.source, &source_is_dir)) {
      *error = "volume source " + m.source + " for mount path " + m.target + " does not exist";
      return false;
    }
    bool covered = std::any_of(done.begin(), done.end(),
                               [&](const std::string& t) { return IsUnder(m.target, t); });
    bool target_is_dir = false;
    bool target_exists = !covered && Exists(m.target, &target_is_dir);
    if (target_exists && target_is_dir != source_is_dir) {
      *error = "mount path " + m.target + " is a " + (target_is_dir ? "folder" : "file") +
               " but its volume " + m.source + " is a " + (source_is_dir ? "folder" : "file");
      return false;
    }
    if (!target_exists) {
      if (!covered && !MayCreateOnHost(m.target)) {
        std::string ancestor = Parent(m.target);
        while (ancestor != "/" && !Exists(ancestor, nullptr)) ancestor = Parent(ancestor);
        if (ancestor != "/") overlay_roots.push_back(ancestor);
      }
      if (source_is_dir) {
        AddMkdirs(m.target, &binds);
      } else {
        AddMkdirs(Parent(m.target), &binds);
        binds.push_back({MountOp::kCreateFile, m.target, "", ""});
      }
    }
    binds.push_back({MountOp::kBind, m.target, m.source, ""});
    if (m.read_only) binds.push_back({MountOp::kRemountReadOnly, m.target, "", ""});
    done.push_back(m.target);
  }

  // An overlay hides the mounts below it, so only the outermost roots get one, before any bind.
  std::sort(overlay_roots.begin(), overlay_roots.end());
  std::vector<std::string> roots;
  for (const auto& r : overlay_roots) {
    if (roots.empty() || (r != roots.back() && !IsUnder(r, roots.back()))) roots.push_back(r);
  }
  if (!roots.empty()) {
    if (spec.scratch_dir.empty()) {
      *error = "mount path " + roots.front() + " needs an overlay but no scratch folder was given";
      return false;
    }
    ops->push_back({MountOp::kTmpfs, spec.scratch_dir, "", ""});
    for (size_t i = 0; i < roots.size(); ++i) {
      std::string upper = spec.scratch_dir + "/u" + std::to_string(i);
      std::string work = spec.scratch_dir + "/w" + std::to_string(i);
      ops->push_back({MountOp::kMkdir, upper, "", ""});
      ops->push_back({MountOp::kMkdir, work, "", ""});
      ops->push_back({MountOp::kOverlay, roots[i], "",
                      "lowerdir=" + roots[i] + ",upperdir=" + upper + ",workdir=" + work});
    }
  }
  ops->insert(ops->end(), binds.begin(), binds.end());
  return true;
}

[[noreturn]] void ChildFail(int fd, int step, int err) {
  ChildFailure f{err, step};
  ssize_t ignored = write(fd, &f, sizeof(f));
  (void)ignored;
  _exit(127);
}

int RunOp(const MountOp& op) {
  switch (op.kind) {
    case MountOp::kMkdir:
      return mkdir(op.target.c_str(), 0755) == 0 || errno == EEXIST ? 0 : -1;
    case MountOp::kCreateFile: {
      int fd = open(op.target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return -1;
      close(fd);
      return 0;
    }
    case MountOp::kBind:
      return mount(op.source.c_str(), op.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr);
    case MountOp::kRemountReadOnly:
      return mount(nullptr, op.target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr);
    case MountOp::kTmpfs:
      return mount("tmpfs", op.target.c_str(), "tmpfs", 0, "mode=0700");
    case MountOp::kOverlay:
      return mount("overlay", op.target.c_str(), "overlay", 0, op.data.c_str());
  }
  return -1;
}

}  // namespace

bool MayCreateOnHost(const std::string& target) {
  static const char* const kRoots[] = {"/mnt", "/etc/parallelrun", "/var/run/secrets",
                                       "/run/secrets"};
  std::string t = Normalize(target);
  if (t == "/dev/termination-log" || Parent(t) == "/") return true;
  for (const char* root : kRoots) {
    if (t == root || IsUnder(t, root)) return true;
  }
  return false;
}

pid_t LaunchContainer(const LaunchSpec& spec, std::string* error) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    *error = "container has no command";
    return -1;
  }
  std::vector<MountOp> ops;
  if (!PlanMounts(spec, &ops, error)) return -1;

  // Everything the child touches is prepared here.
  std::vector<std::string> candidates;
  if (spec.argv[0].find('/') != std::string::npos) {
    candidates.push_back(spec.argv[0]);
  } else {
    std::stringstream in(spec.search_path);
    std::string dir;
    while (std::getline(in, dir, ':'))
      candidates.push_back((dir.empty() ? "." : dir) + "/" + spec.argv[0]);
  }
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string working_dir = spec.working_dir.empty() ? "/" : spec.working_dir;

  int log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "cannot open log file " + spec.log_path + ": " + std::strerror(errno);
    return -1;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    close(log_fd);
    return -1;
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    close(log_fd);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return -1;
  }
  if (pid == 0) {
    const int fd = pipe_fds[1];
    if (setsid() < 0) ChildFail(fd, -3, errno);
    if (spec.die_with_parent_thread) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
    }
    int flags = CLONE_NEWNS | (spec.hostname.empty() ? 0 : CLONE_NEWUTS);
    if (unshare(flags) != 0) ChildFail(fd, -3, errno);
    if (!spec.hostname.empty() && sethostname(spec.hostname.c_str(), spec.hostname.size()) != 0) {
      ChildFail(fd, -3, errno);
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ChildFail(fd, -3, errno);
    for (size_t i = 0; i < ops.size(); ++i) {
      if (RunOp(ops[i]) != 0) ChildFail(fd, static_cast<int>(i), errno);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) {
      ChildFail(fd, -4, errno);
    }
    if (chdir(working_dir.c_str()) != 0) ChildFail(fd, -2, errno);
    // Nothing but 0, 1 and 2 survives exec.
    syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int exec_errno = ENOENT;
    for (const auto& c : candidates) {
      execve(c.c_str(), argv.data(), envp.data());
      if (errno != ENOENT && errno != ENOTDIR) exec_errno = errno;
    }
    ChildFail(fd, -1, exec_errno);
  }
  close(log_fd);
  close(pipe_fds[1]);
  ChildFailure failure{0, 0};
  ssize_t n;
  do {
    n = read(pipe_fds[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  if (n != static_cast<ssize_t>(sizeof(failure))) return pid;  // exec happened

  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (failure.step == -1) {
    if (failure.err == ENOENT && spec.argv[0].find('/') == std::string::npos) {
      *error = "exec: \"" + spec.argv[0] + "\": executable file not found in $PATH";
    } else {
      *error = "exec: \"" + spec.argv[0] + "\": " + std::strerror(failure.err);
    }
  } else if (failure.step == -2) {
    *error = "chdir to working dir " + working_dir + ": " + std::strerror(failure.err);
  } else if (failure.step == -3) {
    *error = std::string("namespace set-up: ") + std::strerror(failure.err);
  } else if (failure.step == -4) {
    *error = std::string("stdio set-up: ") + std::strerror(failure.err);
  } else {
    *error = DescribeOp(ops[failure.step]) + ": " + std::strerror(failure.err);
  }
  return -1;
}

void KillProcessGroup(pid_t pgid, int signal) {
  if (pgid > 0) kill(-pgid, signal);
}

unsigned long long ProcessStartTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::stringstream fields(line.substr(paren + 1));
  std::string field;
  // Field 3 (state) is the first after ')'; start time is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

void RecordPid(const std::string& dir, const std::string& key, pid_t pid) {
  mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + key + ".pid";
  std::ofstream out(path + ".tmp", std::ios::trunc);
  out << pid << " " << ProcessStartTime(pid) << "\n";
  out.close();
  std::rename((path + ".tmp").c_str(), path.c_str());
}

void ForgetPid(const std::string& dir, const std::string& key) {
  std::remove((dir + "/" + key + ".pid").c_str());
}

int KillRecordedProcesses(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  std::vector<std::string> files;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".pid") == 0) files.push_back(name);
  }
  closedir(d);
  std::vector<std::pair<pid_t, unsigned long long>> killed;
  for (const auto& name : files) {
    std::ifstream in(dir + "/" + name);
    long long pid = 0;
    unsigned long long start = 0;
    if (in >> pid >> start && pid > 1 && start != 0 &&
        ProcessStartTime(static_cast<pid_t>(pid)) == start) {
      KillProcessGroup(static_cast<pid_t>(pid), SIGKILL);
      kill(static_cast<pid_t>(pid), SIGKILL);
      killed.emplace_back(static_cast<pid_t>(pid), start);
    }
    std::remove((dir + "/" + name).c_str());
  }
  // SIGKILL is asynchronous: wait (bounded) until the processes are gone or zombies.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const auto& [pid, start] : killed) {
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      if (!std::getline(in, line) || ProcessStartTime(pid) != start) break;
      auto paren = line.rfind(')');
      if (paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z') break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return static_cast<int>(killed.size());
}

}  // namespace parallelrun::rt::cluster
