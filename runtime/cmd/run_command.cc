// `parallelrun run FILE`: local mode (SPEC.md §4.1). Starts one `parallelrun coordinator` and N
// `parallelrun agent` child processes on loopback, shows progress, restarts an agent that dies,
// and exits with the job's exit code.
//
// Guarantees: every bad input found before the job starts (manifest, missing folders, entry
// script, syntax errors, unwritable output) is reported with the field or file and exit 1, and
// nothing in the output folder is touched. Children are started with PR_SET_PDEATHSIG, so killing
// this process (even with SIGKILL) takes the coordinator and agents with it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/child_watch.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/cmd/local_env.h"
#include "runtime/cmd/run_preflight.h"
#include "runtime/cmd/run_setup.h"
#include "runtime/output/output_lock.h"
#include "runtime/protocol/coordinator_client.h"

namespace parallelrun::rt::cmd {

namespace {

using namespace std::chrono_literals;

std::atomic<int> g_signal{0};
std::atomic<int> g_signal_count{0};
std::string g_run_dir;          // set before the signal thread starts; removed on a forced exit
ChildWatch* g_watch = nullptr;  // set before the signal thread starts; woken by a signal

// A second Ctrl-C (or SIGTERM) while the first one's graceful stop is under way: kill the
// coordinator, the agents, their workers and anything those started, and exit at once. The job
// stays resumable: the journal keeps every result that was acknowledged.
[[noreturn]] void ForceExit() {
  std::fprintf(stderr,
               "\nparallelrun run: interrupted again; killing the job's processes now (run the "
               "same command again to resume)\n");
  KillAllDescendants(2s);
  if (!g_run_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(g_run_dir, ec);
  }
  std::_Exit(kExitInterrupted);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "parallelrun run: %s\n", message.c_str());
  return kExitInvalid;
}

struct AgentProcess {
  std::string node;
  pid_t pid = -1;
  bool running = false;
  int restarts = 0;
  int url_fd = -1;  // the write end of its address pipe, until it is given the coordinator's URL
};

class ProgressDisplay {
 public:
  explicit ProgressDisplay(bool tty) : tty_(tty) {}

  void Show(const protocol::Progress& p) {
    if (tty_) {
      const int width = 30;
      int64_t total = p.miniBatches.total;
      int64_t done = p.miniBatches.completed;
      int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
      std::string bar(static_cast<size_t>(filled), '#');
      bar.append(static_cast<size_t>(width - filled), '.');
      std::fprintf(
          stderr,
          "\r[%s] %lld/%lld%s mini-batches, %lld items ok, %lld failed, %lld running, ETA %s   ",
          bar.c_str(), static_cast<long long>(done), static_cast<long long>(total),
          p.planned ? "" : "+", static_cast<long long>(p.items.succeeded),
          static_cast<long long>(p.items.failed), static_cast<long long>(p.miniBatches.running),
          p.eta.empty() ? "-" : p.eta.c_str());
      shown_bar_ = true;
    } else if (!p.lastProgressLine.empty() && p.lastProgressLine != last_line_) {
      std::fprintf(stderr, "%s\n", p.lastProgressLine.c_str());
    }
    last_line_ = p.lastProgressLine;
  }

  void Finish() {
    if (shown_bar_) std::fprintf(stderr, "\n");
    shown_bar_ = false;
  }

 private:
  bool tty_;
  bool shown_bar_ = false;
  std::string last_line_;
};

// SIGTERM to the agents (and the coordinator when `coordinator_running`), then waits for the
// agents to exit, up to `grace`; the ones still running then are killed.
void TerminateAll(ChildWatch& watch, std::vector<AgentProcess>& agents, pid_t coordinator,
                  bool coordinator_running, std::chrono::milliseconds grace) {
  for (auto& a : agents) {
    if (a.running) ::kill(a.pid, SIGTERM);
  }
  if (coordinator_running) ::kill(coordinator, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (true) {
    bool any = false;
    for (auto& a : agents) {
      if (a.running && watch.TryWait(a.pid)) a.running = false;
      any |= a.running;
    }
    if (!any || std::chrono::steady_clock::now() >= deadline) break;
    watch.WaitUntil(deadline);
  }
  for (auto& a : agents) {
    if (a.running) {
      ::kill(a.pid, SIGKILL);
      watch.Wait(a.pid);
      a.running = false;
    }
  }
}

// The coordinator and the agents of one local run, from the coordinator's start to its end.
class LocalJob {
 public:
  // `address_fd`: the read end of the pipe the coordinator writes its URL to (taken over).
  LocalJob(const RunSetup& setup, const RunFolder& folder, std::vector<std::string> agent_env,
           ChildWatch& watch, pid_t coordinator, int address_fd)
      : setup_(setup),
        folder_(folder),
        agent_env_(std::move(agent_env)),
        watch_(watch),
        coordinator_(coordinator),
        address_fd_(address_fd) {}
  ~LocalJob() {
    if (address_fd_ >= 0) ::close(address_fd_);
  }

  // Waits for the coordinator to listen and starts the agents. An exit code when the run ends here
  // (the coordinator did not start, an agent could not be started, a signal), after saying why.
  std::optional<int> Start() {
    if (Status st = WaitForAddress(); !st.ok()) {
      Abandon();
      if (g_signal) return kExitInterrupted;
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return kExitInvalid;
    }
    // The agents wait for the URL; without one (the coordinator ended) they leave at the pipe's
    // end, and the coordinator's exit says why.
    for (auto& a : agents_) GiveAddress(a);
    if (coordinator_running_) {
      const JobSpec& spec = setup_.spec;
      std::fprintf(stderr, "parallelrun run: job %s: %d node%s x %d process%s, output %s\n",
                   spec.name.c_str(), setup_.nodes, setup_.nodes == 1 ? "" : "s",
                   spec.process_count_per_node, spec.process_count_per_node == 1 ? "" : "es",
                   setup_.paths.output_dir.c_str());
    }
    return std::nullopt;
  }

  // Starts the agents while the coordinator starts: each waits for the coordinator's URL on a
  // pipe (agent --coordinator-fd) and touches nothing before, so their start-up overlaps the
  // coordinator's and the last checks. An error (after Abandon()) when one cannot be started.
  Status SpawnAgents() {
    for (int i = 0; i < setup_.nodes; ++i) {
      agents_.push_back(AgentProcess{"127.0.0." + std::to_string(i + 1)});
      if (Status st = StartAgent(agents_.back()); !st.ok()) {
        Abandon();
        return RunError(st.message());
      }
    }
    return Status::Ok();
  }

  // Before the job started (a check failed, a signal, no coordinator): kills the coordinator and
  // the agents, which have touched nothing yet.
  void Abandon() {
    for (auto& a : agents_) {
      if (a.url_fd >= 0) ::close(a.url_fd);
      a.url_fd = -1;
      if (!a.running) continue;
      ::kill(a.pid, SIGKILL);
      watch_.Wait(a.pid);
      a.running = false;
    }
    if (coordinator_running_) {
      ::kill(coordinator_, SIGKILL);
      ExitInfo info = watch_.Wait(coordinator_);
      coordinator_running_ = false;
      coordinator_code_ = info.exited ? info.code : 128 + info.signal;
    }
  }

  // After Start(): keeps the agents running until the coordinator ends, then stops them. The
  // coordinator's exit code, or kExitInterrupted.
  int Run() {
    Supervise();
    // The job's results are final once the coordinator has ended. After a success the agents get
    // time for the workers' shutdown(); after anything else 1 s, all they need to stop (they heard
    // `stop`, or find the coordinator gone), so that a failing job's run returns within 2 s of the
    // coordinator's end: a shutdown() still running then is killed.
    TerminateAll(watch_, agents_, coordinator_, false,
                 coordinator_code_ == kExitOk ? 15000ms : 1000ms);
    // Whatever is left (processes reparented here after their agent died) ends with the run.
    KillAllDescendants(1s);
    if (coordinator_code_ == kExitInterrupted || interrupted_) return kExitInterrupted;
    return coordinator_code_;
  }

 private:
  // True (and coordinator_code_ set) once the coordinator has exited.
  bool CoordinatorEnded() {
    auto info = watch_.TryWait(coordinator_);
    if (!info) return false;
    coordinator_running_ = false;
    coordinator_code_ = info->exited ? info->code : 128 + info->signal;
    return true;
  }

  // Waits for the coordinator to listen (it writes its URL to the address pipe) or to exit (e.g.
  // OutputInUse); kills it after 60 s or on a signal.
  Status WaitForAddress() {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    std::string text;
    while (!CoordinatorEnded()) {
      if (address_fd_ >= 0 && ReadAddress(text)) {
        ::close(address_fd_);
        address_fd_ = -1;
        // A URL is one line (written at once); anything else is no URL.
        if (size_t eol = text.find('\n'); eol != std::string::npos) url_ = text.substr(0, eol);
        if (!url_.empty()) return Status::Ok();
        // Closed without a URL: the coordinator is ending; its exit says why.
      }
      if (g_signal || std::chrono::steady_clock::now() > deadline) {
        ::kill(coordinator_, SIGKILL);
        watch_.Wait(coordinator_);
        coordinator_running_ = false;
        return RunError("the coordinator did not start within 60 s");
      }
      watch_.WaitUntil(deadline, address_fd_);
    }
    return Status::Ok();
  }

  // Reads what the address pipe holds into `text`; true once a whole line or the end came.
  bool ReadAddress(std::string& text) {
    char buf[256];
    while (true) {
      ssize_t n = ::read(address_fd_, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
        if (text.find('\n') != std::string::npos) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0 || errno != EAGAIN;
    }
  }

  // Before the coordinator listens (url_ empty) the agent gets its URL on a pipe (GiveAddress);
  // after (a restart), on its command line.
  Status StartAgent(AgentProcess& a) {
    SpawnOptions ao;
    ao.argv = {SelfExePath(), "agent", "--token-file", folder_.token_file, "--node-name", a.node};
    int url_pipe[2] = {-1, -1};
    if (url_.empty()) {
      if (::pipe2(url_pipe, O_CLOEXEC) != 0) {
        return InternalError(std::string("cannot create a pipe: ") + std::strerror(errno));
      }
      constexpr int kUrlFd = 3;
      ao.argv.insert(ao.argv.end(), {"--coordinator-fd", std::to_string(kUrlFd)});
      ao.fds = {{url_pipe[0], kUrlFd}};
    } else {
      ao.argv.insert(ao.argv.end(), {"--coordinator", url_});
    }
    ao.env = agent_env_;
    auto pid = Spawn(ao);
    if (url_pipe[0] >= 0) ::close(url_pipe[0]);
    if (!pid.ok()) {
      if (url_pipe[1] >= 0) ::close(url_pipe[1]);
      return pid.status();
    }
    a.pid = *pid;
    a.url_fd = url_pipe[1];
    watch_.Add(a.pid);
    a.running = true;
    return Status::Ok();
  }

  // Writes the coordinator's URL (none: nothing) to the agent's pipe and closes it.
  void GiveAddress(AgentProcess& a) {
    if (a.url_fd < 0) return;
    if (!url_.empty()) {
      const std::string line = url_ + "\n";
      // Short and into an empty pipe: written at once. An agent that died gets nothing (EPIPE;
      // SIGPIPE is ignored) and is restarted as usual.
      (void)!::write(a.url_fd, line.data(), line.size());
    }
    ::close(a.url_fd);
    a.url_fd = -1;
  }

  // Until the coordinator ends: stops everything on the first signal, restarts agents that die
  // (up to 5 times each) and shows the progress.
  void Supervise() {
    protocol::HttpClientOptions client_options;
    client_options.base_url = url_;
    client_options.token = folder_.token;
    client_options.timeout_seconds = 5;
    auto client = url_.empty() ? nullptr : protocol::MakeHttpCoordinatorClient(client_options);
    ProgressDisplay display(::isatty(STDERR_FILENO));
    auto next_poll = std::chrono::steady_clock::now();
    while (coordinator_running_ && !CoordinatorEnded()) {
      if (g_signal && !interrupted_) {
        interrupted_ = true;
        display.Finish();
        std::fprintf(
            stderr,
            "parallelrun run: interrupted; stopping (run the same command again to resume)\n");
        TerminateAll(watch_, agents_, coordinator_, true, 30s);
        continue;
      }
      RestartEndedAgents();
      const auto now = std::chrono::steady_clock::now();
      if (client && !interrupted_ && now >= next_poll) {
        next_poll = now + 500ms;
        if (auto p = client->GetProgress(); p.ok()) display.Show(*p);
      }
      // Until the next progress poll (after a stop: the coordinator's end), a child's exit or a
      // signal.
      watch_.WaitUntil(client && !interrupted_ ? next_poll : now + 60s);
    }
    display.Finish();
  }

  void RestartEndedAgents() {
    for (auto& a : agents_) {
      if (!a.running) continue;
      auto info = watch_.TryWait(a.pid);
      if (!info) continue;
      a.running = false;
      if (interrupted_ || (info->exited && info->code == 0)) continue;
      if (a.restarts >= 5) {
        std::fprintf(
            stderr, "\nparallelrun run: agent %s ended (%s) and was restarted 5 times; not again\n",
            a.node.c_str(), info->ToString().c_str());
        continue;
      }
      ++a.restarts;
      std::fprintf(stderr, "\nparallelrun run: agent %s ended (%s); restarting it\n",
                   a.node.c_str(), info->ToString().c_str());
      if (Status st = StartAgent(a); !st.ok()) std::fprintf(stderr, "%s\n", st.message().c_str());
    }
  }

  const RunSetup& setup_;
  const RunFolder& folder_;
  const std::vector<std::string> agent_env_;
  ChildWatch& watch_;
  const pid_t coordinator_;
  int address_fd_;  // -1 once read
  bool coordinator_running_ = true;
  int coordinator_code_ = -1;
  std::string url_;  // "" when the coordinator ended before it listened
  std::vector<AgentProcess> agents_;
  bool interrupted_ = false;
};

// The coordinator, started before the last checks: it waits for a byte on the go pipe before it
// touches anything, and writes its URL to the address pipe once it listens.
struct StartedCoordinator {
  pid_t pid = -1;
  int address_fd = -1;  // read end, non-blocking; the end of the pipe once the coordinator ended
  int go_fd = -1;       // write end
};

StatusOr<StartedCoordinator> StartCoordinator(const RunSetup& setup, const RunFolder& folder) {
  constexpr int kAddressFd = 3;
  constexpr int kGoFd = 4;
  int address_pipe[2];
  int go_pipe[2];
  if (::pipe2(address_pipe, O_CLOEXEC) != 0) {
    return InternalError(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  if (::pipe2(go_pipe, O_CLOEXEC) != 0) {
    ::close(address_pipe[0]);
    ::close(address_pipe[1]);
    return InternalError(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  ::fcntl(address_pipe[0], F_SETFL, O_NONBLOCK);
  SpawnOptions co;
  co.argv = CoordinatorArgv(setup, folder, kAddressFd);
  co.argv.insert(co.argv.end(), {"--go-fd", std::to_string(kGoFd)});
  co.fds = {{address_pipe[1], kAddressFd}, {go_pipe[0], kGoFd}};
  auto pid = Spawn(co);
  ::close(address_pipe[1]);
  ::close(go_pipe[0]);
  if (!pid.ok()) {
    ::close(address_pipe[0]);
    ::close(go_pipe[1]);
    return pid.status();
  }
  return StartedCoordinator{*pid, address_pipe[0], go_pipe[1]};
}

}  // namespace

int RunMain(const std::vector<std::string>& args) {
  // Each error Status below is printed as it is (RunError or the manifest's own message).
  auto failed = [](const Status& st) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return kExitInvalid;
  };
  auto setup = LoadRunSetup(args);
  if (!setup.ok()) return failed(setup.status());
  WarnIgnoredPodFields(setup->spec);
  auto local_env = LocalEnvironment(setup->spec);
  if (!local_env.ok()) return failed(local_env.status());
  Status pre = PreflightChecks(setup->spec, setup->paths, setup->python);
  if (!pre.ok()) return Fail(pre.message());
  // The entry script's syntax check runs while the coordinator and the agents start (its Python
  // is the longest of the three starts); the coordinator hears go only once it passed.
  std::unique_ptr<SyntaxCheck> syntax_check =
      StartEntryScriptSyntaxCheck(setup->spec, setup->paths, setup->python);
  const bool finished_before =
      !setup->restart && PathExists(JoinPath(setup->paths.output_dir, "logs/job_result.txt"));
  auto folder = RunFolder::Create(*setup);
  if (!folder.ok()) return failed(folder.status());

  // Orphans of the job's processes (a daemon started by run() whose agent was killed) are
  // reparented here instead of init, so the end of the run can kill them.
  BecomeSubreaper();
  auto coordinator = StartCoordinator(*setup, **folder);
  if (!coordinator.ok()) return Fail(coordinator.status().message());
  static ChildWatch watch;
  watch.Add(coordinator->pid);
  g_watch = &watch;
  g_run_dir = (*folder)->dir;
  StartSignalThread([](int signo) {
    g_signal = signo;
    if (g_signal_count.fetch_add(1) >= 1) ForceExit();
    g_watch->Wake();
  });
  LocalJob job(*setup, **folder, AgentEnvironment(*setup, *local_env, **folder), watch,
               coordinator->pid, coordinator->address_fd);
  if (Status st = job.SpawnAgents(); !st.ok()) {
    ::close(coordinator->go_fd);
    return failed(st);
  }
  // The last checks run while the coordinator and the agents start; they touch nothing until the
  // coordinator hears go (and the agents get its URL, once it listens).
  Status syntax = syntax_check->Finish();
  Status prepared = syntax.ok() && !g_signal ? PrepareOutputFolder(*setup) : Status::Ok();
  if (!syntax.ok() || !prepared.ok() || g_signal) {
    job.Abandon();
    ::close(coordinator->go_fd);
    if (!syntax.ok()) return Fail(syntax.message());
    return prepared.ok() ? kExitInterrupted : failed(prepared);
  }
  // A coordinator that has already ended gets nothing (the pipe's end is ignored, SIGPIPE too);
  // its exit is seen as usual.
  (void)!::write(coordinator->go_fd, "g", 1);
  ::close(coordinator->go_fd);
  if (std::optional<int> ended = job.Start()) return *ended;
  const int code = job.Run();
  if (code == kExitInterrupted) return kExitInterrupted;
  auto result = ReadFile(JoinPath(setup->paths.output_dir, "logs/job_result.txt"));
  if (result.ok() && (code == kExitOk || code == kExitJobFailed)) {
    PrintResult(*setup, *result, code, finished_before);
  } else if (code != kExitOk) {
    std::fprintf(stderr, "parallelrun run: the coordinator ended with exit code %d\n", code);
  }
  return code;
}

}  // namespace parallelrun::rt::cmd
