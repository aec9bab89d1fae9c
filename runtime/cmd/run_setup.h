// The set-up of `parallelrun run` (run_command.cc): its flags and manifest, the output folder
// (one run at a time, --restart), the run's private temporary folder, the coordinator's and the
// agents' command lines and environment, and the job's result as printed at the end.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/local_env.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::cmd {

// What `parallelrun run` was asked to do: the manifest, its resolved folders and the flags.
struct RunSetup {
  std::string manifest;  // absolute
  std::string manifest_dir;
  JobSpec spec;
  ResolvedPaths paths;
  int nodes = 1;
  std::vector<std::string> volume_flags;  // NAME=DIR with DIR absolute
  std::string python;
  bool restart = false;
};

// An error of `parallelrun run` itself; other errors (the manifest's) are printed as they are.
Status RunError(const std::string& message);
StatusOr<RunSetup> LoadRunSetup(const std::vector<std::string>& args);
void WarnIgnoredPodFields(const JobSpec& spec);
// spec.env reaches the workers through the agents' environment, as it does in a pod.
StatusOr<LocalEnv> LocalEnvironment(const JobSpec& spec);
// One run per output folder, and --restart moves a previous output aside.
Status PrepareOutputFolder(const RunSetup& setup);

// The run's private temporary folder, removed with it: the coordinator's token and the models'
// links. Per-run secrets live here, never in the output.
class RunFolder {
 public:
  static StatusOr<std::unique_ptr<RunFolder>> Create(const RunSetup& setup);
  ~RunFolder();

  const std::string dir;
  const std::string token_file = dir + "/token";
  const std::string token = RandomToken(32);
  std::vector<std::string> model_env;  // AZUREML_MODEL_DIR and PARALLELRUN_MODELS, with models

 private:
  explicit RunFolder(std::string path) : dir(std::move(path)) {}
  // Readable by this user only from the start, and not synced: the folder lives as long as the
  // run, and its children read the token only after it is written.
  Status WriteToken() const;
};

// The coordinator writes its URL to `address_fd` (its end of the address pipe) once it listens.
std::vector<std::string> CoordinatorArgv(const RunSetup& setup, const RunFolder& folder,
                                         int address_fd);
// The variables of every agent (and so of the workers): the interpreter, spec.env, the models.
std::vector<std::string> AgentEnvironment(const RunSetup& setup, const LocalEnv& local_env,
                                          const RunFolder& folder);
// The job's result from logs/job_result.txt, where the output and the logs are, and for a failed
// job its most frequent error.
void PrintResult(const RunSetup& setup, const std::string& result, int coordinator_code,
                 bool finished_before);

}  // namespace parallelrun::rt::cmd
