// The Python host seen from the agent: `config.python <host_dir>/parallelrun_host.py`, driven by
// the shared host worker (host_worker.cc).

#include <cstdlib>
#include <string>
#include <utility>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/worker/host_worker.h"
#include "runtime/worker/worker.h"

namespace parallelrun::rt {

std::unique_ptr<Worker> MakePythonWorker(WorkerConfig config) {
  HostProgram program;
  program.name = "the Python host";
  std::string host_script = JoinPath(config.host_dir, "parallelrun_host.py");
  program.argv = {config.python, host_script};
  program.required_files = {
      {host_script,
       "the Python host is missing: " + host_script +
           " does not exist (set PARALLELRUN_PYTHON_HOST_DIR to the folder holding it)"}};

  // The user's PYTHONPATH (from the agent's config, else inherited) goes after ours.
  std::string user_path;
  if (const char* inherited = std::getenv("PYTHONPATH")) user_path = inherited;
  for (const auto& e : config.env) {
    if (e.rfind("PYTHONPATH=", 0) == 0) user_path = e.substr(e.find('=') + 1);
  }
  std::string python_path = config.code_dir + ":" + config.host_dir;
  if (!user_path.empty()) python_path += ":" + user_path;
  program.env = {"PYTHONPATH=" + python_path};

  return MakeHostWorker(std::move(config), std::move(program));
}

std::string DefaultPythonHostDir() {
  if (const char* dir = std::getenv("PARALLELRUN_PYTHON_HOST_DIR"); dir != nullptr && *dir) {
    return dir;
  }
  // <prefix>/bin/parallelrun -> <prefix>/share/parallelrun/python
  return JoinPath(Dirname(Dirname(SelfExePath())), "share/parallelrun/python");
}

}  // namespace parallelrun::rt
