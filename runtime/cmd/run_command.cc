// `parallelrun run FILE`: local mode (SPEC.md §4.1). Starts one `parallelrun coordinator` and N
// `parallelrun agent` child processes on loopback, shows progress, restarts an agent that dies,
// and exits with the job's exit code.
//
// Guarantees: every bad input found before the job starts (manifest, missing folders, entry
// script, syntax errors, unwritable output) is reported with the field or file and exit 1, and
// nothing in the output folder is touched. Children are started with PR_SET_PDEATHSIG, so killing
// this process (even with SIGKILL) takes the coordinator and agents with it.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/cmd/local_env.h"
#include "runtime/output/output_lock.h"
#include "runtime/protocol/coordinator_client.h"

namespace parallelrun::rt::cmd {

StatusOr<std::map<std::string, std::string>> VolumeBindingsFromFlags(
    const std::vector<std::string>& values);

namespace {

using namespace std::chrono_literals;

std::atomic<int> g_signal{0};
std::atomic<int> g_signal_count{0};
std::string g_run_dir;  // set before the signal thread starts; removed on a forced exit

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

// Checks done before anything starts, each naming the field and the file or folder.
Status PreflightChecks(const JobSpec& spec, const ResolvedPaths& paths, const std::string& python) {
  std::vector<std::string> errors;
  if (!IsDirectory(paths.code_dir)) {
    errors.push_back("spec.sourceDirectory: folder " + paths.code_dir + " does not exist");
  } else if (!PathExists(JoinPath(paths.code_dir, spec.entry_script))) {
    errors.push_back("spec.entryScript: " + spec.entry_script +
                     " not found in spec.sourceDirectory (" + paths.code_dir + ")");
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const std::string& dir = paths.inputs.at(spec.inputs[i].name);
    if (!IsDirectory(dir)) {
      errors.push_back("spec.inputs[" + std::to_string(i) + "].source: input folder " + dir +
                       (PathExists(dir) ? " is not a folder" : " does not exist"));
    } else if (::access(dir.c_str(), R_OK | X_OK) != 0) {
      errors.push_back("spec.inputs[" + std::to_string(i) + "].source: input folder " + dir +
                       " is not readable");
    }
  }
  for (size_t i = 0; i < spec.side_inputs.size(); ++i) {
    const std::string& dir = paths.side_inputs.at(spec.side_inputs[i].name);
    if (!PathExists(dir)) {
      errors.push_back("spec.sideInputs[" + std::to_string(i) + "].source: side input " + dir +
                       " does not exist");
    }
  }
  for (size_t i = 0; i < spec.models.size(); ++i) {
    const std::string& path = paths.models.at(spec.models[i].name);
    if (!PathExists(path)) {
      errors.push_back("spec.models[" + std::to_string(i) + "].source: model " + path +
                       " does not exist");
    }
  }
  if (PathExists(paths.output_dir) && !IsDirectory(paths.output_dir)) {
    errors.push_back("spec.output: " + paths.output_dir + " exists and is not a folder");
  } else {
    // The nearest existing ancestor must be writable (nothing is created yet).
    std::string probe = paths.output_dir;
    while (!PathExists(probe) && probe != "/" && probe != ".") probe = Dirname(probe);
    if (!IsDirectory(probe)) {
      errors.push_back("spec.output: cannot create " + paths.output_dir + ": " + probe +
                       " is not a folder");
    } else if (::access(probe.c_str(), W_OK | X_OK) != 0) {
      errors.push_back("spec.output: output folder " + paths.output_dir + " is not writable (" +
                       probe + ": " + std::strerror(errno) + ")");
    }
  }
  // Folders that meet through --volume bindings or symbolic links (the manifest's own paths were
  // checked by the job-spec model).
  if (Status apart = CheckResolvedFoldersApart(spec, paths); !apart.ok()) {
    errors.push_back(apart.message());
  }
  if (!spec.retry_from.empty() && !IsDirectory(paths.retry_from_dir)) {
    errors.push_back("spec.retryFrom: folder " + paths.retry_from_dir + " does not exist");
  }
  if (!spec.is_native()) {
    if (::access(python.c_str(), X_OK) != 0) {
      errors.push_back("--python " + python +
                       ": no such interpreter (set --python or PARALLELRUN_PYTHON)");
    } else if (errors.empty()) {
      // A syntax error is found here, naming the file and line, instead of failing every worker.
      std::string script = JoinPath(paths.code_dir, spec.entry_script);
      char tmpl[] = "/tmp/parallelrun-syntax-XXXXXX";
      int fd = ::mkstemp(tmpl);
      if (fd >= 0) ::close(fd);
      SpawnOptions o;
      o.argv = {python, "-c",
                "import ast,sys\n"
                "p=sys.argv[1]\n"
                "try:\n"
                "  ast.parse(open(p,'rb').read(),p)\n"
                "except SyntaxError as e:\n"
                "  print(f'{e.filename}, line {e.lineno}: {e.msg}'); sys.exit(3)\n",
                script};
      o.stdout_path = tmpl;
      auto pid = Spawn(o);
      if (pid.ok()) {
        ExitInfo info = Wait(*pid);
        if (info.exited && info.code == 3) {
          auto msg = ReadFile(tmpl);
          std::string m = msg.ok() ? *msg : "";
          while (!m.empty() && m.back() == '\n') m.pop_back();
          errors.push_back("spec.entryScript: syntax error in " + m);
        }
      }
      ::unlink(tmpl);
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string text = std::to_string(errors.size()) + " problem" + (errors.size() == 1 ? "" : "s") +
                     " before the job could start:";
  for (const auto& e : errors) text += "\n  - " + e;
  return InvalidArgumentError(text);
}

// spec.models locally: AZUREML_MODEL_DIR is `dir`, a per-run folder with one symbolic link per
// model (<dir>/<name> -> its source), as /mnt/models is in a pod. Returns the variables for the
// agents (and so the workers); none without models.
StatusOr<std::vector<std::string>> LinkModels(const JobSpec& spec, const ResolvedPaths& paths,
                                              const std::string& dir) {
  if (spec.models.empty()) return std::vector<std::string>{};
  PR_RETURN_IF_ERROR(MakeDirs(dir));
  std::map<std::string, std::string> links;
  for (const Model& model : spec.models) {
    const std::string link = JoinPath(dir, model.name);
    std::error_code ec;
    std::filesystem::create_symlink(paths.models.at(model.name), link, ec);
    if (ec) {
      return InternalError("cannot link model " + model.name + " at " + link + ": " + ec.message());
    }
    links[model.name] = link;
  }
  return std::vector<std::string>{"AZUREML_MODEL_DIR=" + dir,
                                  "PARALLELRUN_MODELS=" + ModelsEnvValue(spec, links)};
}

struct AgentProcess {
  std::string node;
  pid_t pid = -1;
  bool running = false;
  int restarts = 0;
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

void TerminateAll(std::vector<AgentProcess>& agents, pid_t coordinator, bool coordinator_running,
                  std::chrono::milliseconds grace) {
  for (auto& a : agents) {
    if (a.running) ::kill(a.pid, SIGTERM);
  }
  if (coordinator_running) ::kill(coordinator, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (auto& a : agents) {
      if (a.running && TryWait(a.pid)) a.running = false;
      any |= a.running;
    }
    if (!any) break;
    std::this_thread::sleep_for(50ms);
  }
  for (auto& a : agents) {
    if (a.running) {
      ::kill(a.pid, SIGKILL);
      Wait(a.pid);
      a.running = false;
    }
  }
}

}  // namespace

int RunMain(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {"nodes", "volume", "python"};
  spec_flags.switches = {"restart"};
  auto flags = ParseFlags(args, spec_flags);
  if (!flags.ok()) return Fail(flags.status().message());
  if (flags->positional.size() != 1) {
    return Fail(
        "usage: parallelrun run FILE [--nodes N] [--volume NAME=DIR]... [--restart] [--python "
        "PATH]");
  }
  const std::string manifest = AbsolutePath(flags->positional[0], std::filesystem::current_path());
  auto spec = LoadJobSpec(manifest);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().message().c_str());
    return kExitInvalid;
  }
  int nodes = spec->node_count;
  if (flags->Has("nodes")) {
    auto n = ParseIntFlag("nodes", flags->Get("nodes"), 1);
    if (!n.ok()) return Fail(n.status().message());
    nodes = *n;
  }
  // --volume folders are the user's shell paths: make them absolute here, before the manifest's
  // folder becomes the base for everything else.
  std::vector<std::string> volume_flags;
  for (const auto& v : flags->GetAll("volume")) {
    auto eq = v.find('=');
    volume_flags.push_back(
        eq == std::string::npos
            ? v
            : v.substr(0, eq + 1) +
                  AbsolutePath(v.substr(eq + 1), std::filesystem::current_path()));
  }
  auto bindings = VolumeBindingsFromFlags(volume_flags);
  if (!bindings.ok()) return Fail(bindings.status().message());
  const std::string manifest_dir = Dirname(manifest);
  auto paths = ResolveLocalPaths(*spec, manifest_dir, *bindings);
  if (!paths.ok()) {
    std::fprintf(stderr, "%s\n", paths.status().message().c_str());
    return kExitInvalid;
  }
  const char* env_python = std::getenv("PARALLELRUN_PYTHON");
  std::string python =
      flags->Get("python", env_python && *env_python ? env_python : "/usr/bin/python3");
  if (!spec->pod.empty()) {
    std::string keys;
    for (auto it = spec->pod.begin(); it != spec->pod.end(); ++it)
      if (it.key() != "env") keys += (keys.empty() ? "" : ", ") + it.key();
    if (!keys.empty()) {
      std::fprintf(
          stderr,
          "parallelrun run: warning: Kubernetes pod fields are ignored in local mode (%s)\n",
          keys.c_str());
    }
  }
  // spec.env reaches the workers through the agents' environment, as it does in a pod.
  auto local_env = LocalEnvFromSpec(spec->pod);
  if (!local_env.ok()) return Fail(local_env.status().message());
  for (const auto& name : local_env->skipped) {
    std::fprintf(stderr,
                 "parallelrun run: warning: spec.env %s uses valueFrom, which local mode cannot "
                 "resolve; it is not set\n",
                 name.c_str());
  }
  Status pre = PreflightChecks(*spec, *paths, python);
  if (!pre.ok()) {
    std::fprintf(stderr, "parallelrun run: %s\n", pre.message().c_str());
    return kExitInvalid;
  }
  // One run per output folder: the coordinator holds its lock for the whole run and refuses a
  // second one; asking here first says so before anything starts (and before --restart moves it).
  if (std::string holder = OutputLock::Holder(paths->output_dir); !holder.empty()) {
    return Fail("the output folder " + paths->output_dir + " is in use by another run (" + holder +
                "); nothing was changed in it. Wait for that run to end, stop it, or use another "
                "output folder");
  }
  // A rerun of a finished job runs nothing: say so, and the way on, after its result.
  const bool finished_before = !flags->switches.count("restart") &&
                               PathExists(JoinPath(paths->output_dir, "logs/job_result.txt"));
  if (flags->switches.count("restart") && PathExists(paths->output_dir)) {
    // Held while the folder moves, so that no run starts in it meanwhile. The code folder and the
    // inputs are never inside it (PreflightChecks), so they stay where they are.
    auto lock = OutputLock::Acquire(paths->output_dir);
    if (!lock.ok()) return Fail("--restart: " + lock.status().message());
    std::string aside =
        paths->output_dir + ".previous-" + FormatUtc(RealClock::Get().Now(), "%Y%m%dT%H%M%SZ");
    if (::rename(paths->output_dir.c_str(), aside.c_str()) != 0) {
      return Fail("--restart: cannot move " + paths->output_dir +
                  " aside: " + std::strerror(errno));
    }
    std::fprintf(stderr, "parallelrun run: --restart: moved the previous output to %s\n",
                 aside.c_str());
  }

  // Per-run secrets live in a private temporary folder, never in the output.
  char tmpl[] = "/tmp/parallelrun-run-XXXXXX";
  if (!::mkdtemp(tmpl))
    return Fail(std::string("cannot create a temporary folder: ") + std::strerror(errno));
  const std::string run_dir = tmpl;
  const std::string token_file = run_dir + "/token";
  const std::string address_file = run_dir + "/address";
  const std::string token = RandomToken(32);
  if (Status st = WriteFileAtomic(token_file, token + "\n"); !st.ok()) return Fail(st.message());
  ::chmod(token_file.c_str(), 0600);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{run_dir};
  auto model_env = LinkModels(*spec, *paths, run_dir + "/models");
  if (!model_env.ok()) return Fail(model_env.status().message());

  // Orphans of the job's processes (a daemon started by run() whose agent was killed) are
  // reparented here instead of init, so the end of the run can kill them.
  BecomeSubreaper();
  const std::string self = SelfExePath();
  SpawnOptions co;
  co.argv = {self,
             "coordinator",
             "--spec",
             manifest,
             "--listen",
             "127.0.0.1:0",
             "--token-file",
             token_file,
             "--address-file",
             address_file,
             "--paths",
             "local",
             "--manifest-dir",
             manifest_dir,
             "--nodes",
             std::to_string(nodes),
             "--no-echo"};
  for (const auto& v : volume_flags) {
    co.argv.push_back("--volume");
    co.argv.push_back(v);
  }
  auto coordinator = Spawn(co);
  if (!coordinator.ok()) return Fail(coordinator.status().message());
  bool coordinator_running = true;
  int coordinator_code = -1;

  g_run_dir = run_dir;
  StartSignalThread([](int signo) {
    g_signal = signo;
    if (g_signal_count.fetch_add(1) >= 1) ForceExit();
  });

  // Wait for the coordinator to listen (it writes its URL) or to exit (e.g. OutputInUse).
  std::string url;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (url.empty()) {
    if (auto info = TryWait(*coordinator)) {
      coordinator_running = false;
      coordinator_code = info->exited ? info->code : 128 + info->signal;
      break;
    }
    if (auto text = ReadFile(address_file); text.ok() && !text->empty()) {
      url = *text;
      while (!url.empty() && url.back() == '\n') url.pop_back();
      break;
    }
    if (g_signal || std::chrono::steady_clock::now() > deadline) {
      ::kill(*coordinator, SIGKILL);
      Wait(*coordinator);
      return g_signal ? kExitInterrupted : Fail("the coordinator did not start within 60 s");
    }
    std::this_thread::sleep_for(20ms);
  }

  std::vector<AgentProcess> agents;
  auto start_agent = [&](AgentProcess& a) -> Status {
    SpawnOptions ao;
    ao.argv = {self,           "agent",    "--coordinator", url,
               "--token-file", token_file, "--node-name",   a.node};
    ao.env = {"PARALLELRUN_PYTHON=" + python};
    for (const auto& e : local_env->entries) {
      if (e.rfind("PARALLELRUN_PYTHON=", 0) != 0) ao.env.push_back(e);
    }
    ao.env.insert(ao.env.end(), model_env->begin(), model_env->end());
    PR_ASSIGN_OR_RETURN(a.pid, Spawn(ao));
    a.running = true;
    return Status::Ok();
  };
  if (coordinator_running) {
    std::fprintf(stderr, "parallelrun run: job %s: %d node%s x %d process%s, output %s\n",
                 spec->name.c_str(), nodes, nodes == 1 ? "" : "s", spec->process_count_per_node,
                 spec->process_count_per_node == 1 ? "" : "es", paths->output_dir.c_str());
    for (int i = 0; i < nodes; ++i) {
      agents.push_back(AgentProcess{"127.0.0." + std::to_string(i + 1)});
      if (Status st = start_agent(agents.back()); !st.ok()) {
        TerminateAll(agents, *coordinator, true, 10s);
        return Fail(st.message());
      }
    }
  }

  protocol::HttpClientOptions client_options;
  client_options.base_url = url;
  client_options.token = token;
  client_options.timeout_seconds = 5;
  auto client = url.empty() ? nullptr : protocol::MakeHttpCoordinatorClient(client_options);
  ProgressDisplay display(::isatty(STDERR_FILENO));
  auto next_poll = std::chrono::steady_clock::now();
  bool interrupted = false;
  while (coordinator_running) {
    if (auto info = TryWait(*coordinator)) {
      coordinator_running = false;
      coordinator_code = info->exited ? info->code : 128 + info->signal;
      break;
    }
    if (g_signal && !interrupted) {
      interrupted = true;
      display.Finish();
      std::fprintf(
          stderr,
          "parallelrun run: interrupted; stopping (run the same command again to resume)\n");
      TerminateAll(agents, *coordinator, true, 30s);
      continue;
    }
    for (auto& a : agents) {
      if (!a.running) continue;
      auto info = TryWait(a.pid);
      if (!info) continue;
      a.running = false;
      if (interrupted || (info->exited && info->code == 0)) continue;
      if (a.restarts >= 5) {
        std::fprintf(
            stderr, "\nparallelrun run: agent %s ended (%s) and was restarted 5 times; not again\n",
            a.node.c_str(), info->ToString().c_str());
        continue;
      }
      ++a.restarts;
      std::fprintf(stderr, "\nparallelrun run: agent %s ended (%s); restarting it\n",
                   a.node.c_str(), info->ToString().c_str());
      if (Status st = start_agent(a); !st.ok()) std::fprintf(stderr, "%s\n", st.message().c_str());
    }
    if (client && !interrupted && std::chrono::steady_clock::now() >= next_poll) {
      next_poll = std::chrono::steady_clock::now() + 500ms;
      if (auto p = client->GetProgress(); p.ok()) display.Show(*p);
    }
    std::this_thread::sleep_for(50ms);
  }
  display.Finish();
  // The job's results are final once the coordinator has ended. After a success the agents get
  // time for the workers' shutdown(); after anything else 1 s, all they need to stop (they heard
  // `stop`, or find the coordinator gone), so that a failing job's run returns within 2 s of the
  // coordinator's end: a shutdown() still running then is killed.
  TerminateAll(agents, *coordinator, false, coordinator_code == kExitOk ? 15000ms : 1000ms);
  // Whatever is left (processes reparented here after their agent died) ends with the run.
  KillAllDescendants(1s);

  if (coordinator_code == kExitInterrupted || interrupted) return kExitInterrupted;
  auto result = ReadFile(JoinPath(paths->output_dir, "logs/job_result.txt"));
  if (result.ok() && (coordinator_code == kExitOk || coordinator_code == kExitJobFailed)) {
    std::fprintf(stdout, "%s", result->c_str());
    if (!result->empty() && result->back() != '\n') std::fputc('\n', stdout);
    if (spec->output_action == OutputAction::kAppendRow) {
      std::fprintf(stdout, "Output file: %s\n",
                   JoinPath(paths->output_dir, spec->append_row_file_name).c_str());
    }
    std::fprintf(stdout, "Logs: %s\n", JoinPath(paths->output_dir, "logs").c_str());
    std::fflush(stdout);
    if (coordinator_code == kExitJobFailed) {
      std::string first = result->substr(0, result->find('\n'));
      std::fprintf(stderr, "parallelrun run: job %s %s (see %s)\n", spec->name.c_str(),
                   first.c_str(), JoinPath(paths->output_dir, "logs/job_result.txt").c_str());
      // The error digest's most frequent error (runtime/coordinator/error_digest.h), with its
      // file:line in the user's code.
      const std::string key = "\nmost_frequent_error: ";
      if (size_t at = result->find(key); at != std::string::npos) {
        size_t from = at + key.size();
        std::fprintf(stderr, "parallelrun run: most frequent error: %s\n",
                     result->substr(from, result->find('\n', from) - from).c_str());
      }
    }
    if (finished_before) {
      std::fprintf(stderr,
                   "parallelrun run: this job had already finished, so nothing ran; to run it "
                   "again add --restart (moves %s aside), or rerun only what did not complete "
                   "with a new output and retryFrom: %s\n",
                   paths->output_dir.c_str(),
                   std::filesystem::relative(paths->output_dir, manifest_dir).c_str());
    }
  } else if (coordinator_code != kExitOk) {
    std::fprintf(stderr, "parallelrun run: the coordinator ended with exit code %d\n",
                 coordinator_code);
  }
  return coordinator_code;
}

}  // namespace parallelrun::rt::cmd
