// The set-up of `parallelrun run` (run_setup.h).
#include "runtime/cmd/run_setup.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/output/output_lock.h"

namespace parallelrun::rt::cmd {

StatusOr<std::map<std::string, std::string>> VolumeBindingsFromFlags(
    const std::vector<std::string>& values);

namespace {

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

}  // namespace

// An error of `parallelrun run` itself; other errors (the manifest's) are printed as they are.
Status RunError(const std::string& message) {
  return InvalidArgumentError("parallelrun run: " + message);
}

namespace {

// --volume folders are the user's shell paths: made absolute here, before the manifest's folder
// becomes the base for everything else.
std::vector<std::string> AbsoluteVolumeFlags(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    auto eq = v.find('=');
    out.push_back(eq == std::string::npos
                      ? v
                      : v.substr(0, eq + 1) +
                            AbsolutePath(v.substr(eq + 1), std::filesystem::current_path()));
  }
  return out;
}

}  // namespace

StatusOr<RunSetup> LoadRunSetup(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {"nodes", "volume", "python"};
  spec_flags.switches = {"restart"};
  auto flags = ParseFlags(args, spec_flags);
  if (!flags.ok()) return RunError(flags.status().message());
  if (flags->positional.size() != 1) {
    return RunError(
        "usage: parallelrun run FILE [--nodes N] [--volume NAME=DIR]... [--restart] [--python "
        "PATH]");
  }
  RunSetup setup;
  setup.manifest = AbsolutePath(flags->positional[0], std::filesystem::current_path());
  PR_ASSIGN_OR_RETURN(setup.spec, LoadJobSpec(setup.manifest));
  setup.nodes = setup.spec.node_count;
  if (flags->Has("nodes")) {
    auto n = ParseIntFlag("nodes", flags->Get("nodes"), 1);
    if (!n.ok()) return RunError(n.status().message());
    setup.nodes = *n;
  }
  setup.volume_flags = AbsoluteVolumeFlags(flags->GetAll("volume"));
  auto bindings = VolumeBindingsFromFlags(setup.volume_flags);
  if (!bindings.ok()) return RunError(bindings.status().message());
  setup.manifest_dir = Dirname(setup.manifest);
  PR_ASSIGN_OR_RETURN(setup.paths, ResolveLocalPaths(setup.spec, setup.manifest_dir, *bindings));
  const char* env_python = std::getenv("PARALLELRUN_PYTHON");
  setup.python = flags->Get("python", env_python && *env_python ? env_python : "/usr/bin/python3");
  setup.restart = flags->switches.count("restart") > 0;
  return setup;
}

void WarnIgnoredPodFields(const JobSpec& spec) {
  if (spec.pod.empty()) return;
  std::string keys;
  for (auto it = spec.pod.begin(); it != spec.pod.end(); ++it) {
    if (it.key() != "env") keys += (keys.empty() ? "" : ", ") + it.key();
  }
  if (!keys.empty()) {
    std::fprintf(stderr,
                 "parallelrun run: warning: Kubernetes pod fields are ignored in local mode (%s)\n",
                 keys.c_str());
  }
}

// spec.env reaches the workers through the agents' environment, as it does in a pod.
StatusOr<LocalEnv> LocalEnvironment(const JobSpec& spec) {
  auto local_env = LocalEnvFromSpec(spec.pod);
  if (!local_env.ok()) return RunError(local_env.status().message());
  for (const auto& name : local_env->skipped) {
    std::fprintf(stderr,
                 "parallelrun run: warning: spec.env %s uses valueFrom, which local mode cannot "
                 "resolve; it is not set\n",
                 name.c_str());
  }
  return local_env;
}

StatusOr<std::unique_ptr<RunFolder>> RunFolder::Create(const RunSetup& setup) {
  char tmpl[] = "/tmp/parallelrun-run-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    return RunError(std::string("cannot create a temporary folder: ") + std::strerror(errno));
  }
  std::unique_ptr<RunFolder> folder(new RunFolder(tmpl));
  if (Status st = folder->WriteToken(); !st.ok()) return RunError(st.message());
  auto model_env = LinkModels(setup.spec, setup.paths, folder->dir + "/models");
  if (!model_env.ok()) return RunError(model_env.status().message());
  folder->model_env = *std::move(model_env);
  return folder;
}

RunFolder::~RunFolder() { std::filesystem::remove_all(dir); }

Status RunFolder::WriteToken() const {
  const std::string line = token + "\n";
  const int fd = ::open(token_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return InternalError("cannot create " + token_file + ": " + std::strerror(errno));
  const ssize_t n = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return InternalError("cannot write " + token_file + ": " +
                         (n < 0 ? std::strerror(write_errno) : "short write"));
  }
  return Status::Ok();
}

// One run per output folder, and --restart moves a previous output aside.
Status PrepareOutputFolder(const RunSetup& setup) {
  const std::string& output_dir = setup.paths.output_dir;
  // The coordinator holds the output's lock for the whole run and refuses a second one; asking
  // here first says so before anything starts (and before --restart moves it).
  if (std::string holder = OutputLock::Holder(output_dir); !holder.empty()) {
    return RunError("the output folder " + output_dir + " is in use by another run (" + holder +
                    "); nothing was changed in it. Wait for that run to end, stop it, or use "
                    "another output folder");
  }
  if (!setup.restart || !PathExists(output_dir)) return Status::Ok();
  // Held while the folder moves, so that no run starts in it meanwhile. The code folder and the
  // inputs are never inside it (PreflightChecks), so they stay where they are.
  auto lock = OutputLock::Acquire(output_dir);
  if (!lock.ok()) return RunError("--restart: " + lock.status().message());
  std::string aside =
      output_dir + ".previous-" + FormatUtc(RealClock::Get().Now(), "%Y%m%dT%H%M%SZ");
  if (::rename(output_dir.c_str(), aside.c_str()) != 0) {
    return RunError("--restart: cannot move " + output_dir + " aside: " + std::strerror(errno));
  }
  std::fprintf(stderr, "parallelrun run: --restart: moved the previous output to %s\n",
               aside.c_str());
  return Status::Ok();
}

// The coordinator writes its URL to `address_fd` (its end of the address pipe) once it listens.
std::vector<std::string> CoordinatorArgv(const RunSetup& setup, const RunFolder& folder,
                                         int address_fd) {
  std::vector<std::string> argv = {SelfExePath(),    "coordinator",
                                   "--spec",         setup.manifest,
                                   "--listen",       "127.0.0.1:0",
                                   "--token-file",   folder.token_file,
                                   "--address-fd",   std::to_string(address_fd),
                                   "--paths",        "local",
                                   "--manifest-dir", setup.manifest_dir,
                                   "--nodes",        std::to_string(setup.nodes),
                                   "--no-echo"};
  for (const auto& v : setup.volume_flags) {
    argv.push_back("--volume");
    argv.push_back(v);
  }
  return argv;
}

// The variables of every agent (and so of the workers): the interpreter, spec.env, the models.
std::vector<std::string> AgentEnvironment(const RunSetup& setup, const LocalEnv& local_env,
                                          const RunFolder& folder) {
  std::vector<std::string> env = {"PARALLELRUN_PYTHON=" + setup.python};
  for (const auto& e : local_env.entries) {
    if (e.rfind("PARALLELRUN_PYTHON=", 0) != 0) env.push_back(e);
  }
  env.insert(env.end(), folder.model_env.begin(), folder.model_env.end());
  return env;
}

// The job's result from logs/job_result.txt, where the output and the logs are, and for a failed
// job its most frequent error.
void PrintResult(const RunSetup& setup, const std::string& result, int coordinator_code,
                 bool finished_before) {
  const std::string& output_dir = setup.paths.output_dir;
  std::fprintf(stdout, "%s", result.c_str());
  if (!result.empty() && result.back() != '\n') std::fputc('\n', stdout);
  if (setup.spec.output_action == OutputAction::kAppendRow) {
    std::fprintf(stdout, "Output file: %s\n",
                 JoinPath(output_dir, setup.spec.append_row_file_name).c_str());
  }
  std::fprintf(stdout, "Logs: %s\n", JoinPath(output_dir, "logs").c_str());
  std::fflush(stdout);
  if (coordinator_code == kExitJobFailed) {
    std::string first = result.substr(0, result.find('\n'));
    std::fprintf(stderr, "parallelrun run: job %s %s (see %s)\n", setup.spec.name.c_str(),
                 first.c_str(), JoinPath(output_dir, "logs/job_result.txt").c_str());
    // The error digest's most frequent error (runtime/coordinator/error_digest.h), with its
    // file:line in the user's code.
    const std::string key = "\nmost_frequent_error: ";
    if (size_t at = result.find(key); at != std::string::npos) {
      size_t from = at + key.size();
      std::fprintf(stderr, "parallelrun run: most frequent error: %s\n",
                   result.substr(from, result.find('\n', from) - from).c_str());
    }
  }
  if (finished_before) {
    // A rerun of a finished job runs nothing: say so, and the way on, after its result.
    std::fprintf(stderr,
                 "parallelrun run: this job had already finished, so nothing ran; to run it "
                 "again add --restart (moves %s aside), or rerun only what did not complete "
                 "with a new output and retryFrom: %s\n",
                 output_dir.c_str(),
                 std::filesystem::relative(output_dir, setup.manifest_dir).c_str());
  }
}

}  // namespace parallelrun::rt::cmd
