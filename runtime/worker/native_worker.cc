// The native host seen from the agent: `parallelrun-native-host <arguments...>`, driven by the
// shared host worker (host_worker.cc). The host dlopen()s the entry script itself.

#include <cstdlib>
#include <string>
#include <utility>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/worker/host_worker.h"
#include "runtime/worker/worker.h"

namespace parallelrun::rt {
namespace {

constexpr const char* kNativeHostName = "parallelrun-native-host";

// $PARALLELRUN_NATIVE_HOST, else the host installed beside the running executable
// (<prefix>/bin/parallelrun -> <prefix>/bin/parallelrun-native-host).
std::string NativeHostPath() {
  if (const char* path = std::getenv("PARALLELRUN_NATIVE_HOST"); path != nullptr && *path) {
    return path;
  }
  return JoinPath(Dirname(SelfExePath()), kNativeHostName);
}

}  // namespace

std::unique_ptr<Worker> MakeNativeWorker(WorkerConfig config) {
  HostProgram program;
  program.name = "the native host";
  std::string host = NativeHostPath();
  program.argv = {host};
  program.required_files = {
      {host, "the native host is missing: " + host +
                 " does not exist (build the parallelrun-native-host target, or set "
                 "PARALLELRUN_NATIVE_HOST to its path)"}};
  return MakeHostWorker(std::move(config), std::move(program));
}

}  // namespace parallelrun::rt
