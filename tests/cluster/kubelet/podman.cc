#include "tests/cluster/kubelet/podman.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>

#include "tests/cluster/kubelet/podman_args.h"

extern char** environ;

namespace parallelrun::rt::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Child set-up shared by every spawn: own session, default signal dispositions and an empty
// signal mask (testcluster blocks SIGTERM in its threads; a container must not inherit that),
// no descriptors beyond 0, 1 and 2.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  pid_t Spawn(const std::vector<std::string>& args, std::string* error) {
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    std::string binary = PodmanBinary();
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    std::string log_level = "--log-level=error";  // no warnings in container logs
    argv.push_back(const_cast<char*>(log_level.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, binary.c_str(), &actions, &attr, argv.data(), environ);
    if (rc != 0) {
      if (error) *error = "cannot run " + binary + ": " + std::strerror(rc);
      return -1;
    }
    return pid;
  }
};

int WaitExit(pid_t pid, int options, bool* done) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, options);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    *done = false;
    return -1;
  }
  *done = true;
  if (r < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::mutex background_mu;
std::vector<std::shared_ptr<PodmanJob>>* background = new std::vector<std::shared_ptr<PodmanJob>>;

}  // namespace

std::string PodmanBinary() {
  const char* env = std::getenv("TESTCLUSTER_PODMAN");
  return env != nullptr && *env != '\0' ? env : "podman";
}

bool PodmanAvailable() { return RunPodman({"--version"}, nullptr, nullptr) == 0; }

int RunPodman(const std::vector<std::string>& args, std::string* out, std::string* err,
              milliseconds timeout) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return -1;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return -1;
  }
  SpawnSetup setup;
  posix_spawn_file_actions_adddup2(&setup.actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&setup.actions, err_pipe[1], 2);
  pid_t pid = setup.Spawn(args, err);
  close(out_pipe[1]);
  close(err_pipe[1]);
  std::string collected[2];
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = pid > 0 ? 2 : 0;
  const auto deadline = steady_clock::now() + timeout;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        collected[i].append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  if (pid <= 0) return -1;
  bool done = false;
  int code = WaitExit(pid, 0, &done);
  if (out) *out = collected[0];
  if (err && !collected[1].empty()) *err = collected[1];
  if (timed_out && err) *err = "podman " + (args.empty() ? "" : args[0]) + ": timed out";
  return timed_out ? -1 : code;
}

pid_t SpawnPodman(const std::vector<std::string>& args, const std::string& log_path,
                  std::string* error) {
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "cannot open log file " + log_path + ": " + std::strerror(errno);
    return -1;
  }
  SpawnSetup setup;
  posix_spawn_file_actions_adddup2(&setup.actions, log_fd, 1);
  posix_spawn_file_actions_adddup2(&setup.actions, log_fd, 2);
  pid_t pid = setup.Spawn(args, error);
  close(log_fd);
  return pid;
}

std::shared_ptr<PodmanJob> PodmanJob::Start(const std::vector<std::string>& args) {
  auto job = std::make_shared<PodmanJob>();
  SpawnSetup setup;
  posix_spawn_file_actions_addopen(&setup.actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&setup.actions, 2, "/dev/null", O_WRONLY, 0);
  job->pid_ = setup.Spawn(args, nullptr);
  if (job->pid_ < 0) job->done_ = true;
  return job;
}

PodmanJob::~PodmanJob() {
  // Never leave a zombie: wait for what is still running (podman commands are short).
  if (!done_ && pid_ > 0) {
    bool done = false;
    WaitExit(pid_, 0, &done);
  }
}

bool PodmanJob::Done() {
  if (done_) return true;
  bool done = false;
  int code = WaitExit(pid_, WNOHANG, &done);
  if (done) {
    done_ = true;
    exit_code_ = code;
  }
  return done_;
}

void RemoveContainerInBackground(const std::string& name) {
  auto job = PodmanJob::Start({"rm", "--force", "--time=0", "--ignore", name});
  std::lock_guard<std::mutex> lock(background_mu);
  background->push_back(std::move(job));
}

void ReapBackgroundJobs() {
  std::lock_guard<std::mutex> lock(background_mu);
  std::erase_if(*background, [](const std::shared_ptr<PodmanJob>& j) { return j->Done(); });
}

int RemoveClusterContainers(const std::string& state_dir) {
  std::string out;
  int rc = RunPodman({"ps", "--all", "--quiet", "--no-trunc",
                      "--filter=label=" + std::string(kLabelClusterState) + "=" + state_dir},
                     &out, nullptr);
  if (rc != 0) return 0;
  std::vector<std::string> ids;
  std::stringstream lines(out);
  std::string id;
  while (lines >> id) ids.push_back(id);
  if (ids.empty()) return 0;
  std::vector<std::string> args = {"rm", "--force", "--time=0", "--ignore"};
  args.insert(args.end(), ids.begin(), ids.end());
  RunPodman(args, nullptr, nullptr);
  return static_cast<int>(ids.size());
}

bool KernelLogShowsOomKill(const std::string& container_id) {
  if (container_id.empty()) return false;
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  bool found = false;
  char record[16384];
  while (!found) {
    ssize_t n = read(fd, record, sizeof record - 1);
    if (n < 0 && errno == EPIPE) continue;  // a record was overwritten; go on
    if (n <= 0) break;
    std::string_view text(record, static_cast<size_t>(n));
    found = text.find("oom-kill:") != std::string_view::npos &&
            text.find(container_id) != std::string_view::npos;
  }
  close(fd);
  return found;
}

bool CgroupControllerAvailable(const std::string& name) {
  struct stat st;
  if (stat(("/sys/fs/cgroup/" + name + "/cgroup.procs").c_str(), &st) == 0) return true;
  std::string controllers;
  if (FILE* f = fopen("/sys/fs/cgroup/cgroup.controllers", "r")) {
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    controllers.assign(buf, n);
  }
  std::stringstream words(controllers);
  std::string word;
  while (words >> word) {
    if (word == name) return true;
  }
  return false;
}

}  // namespace parallelrun::rt::cluster
