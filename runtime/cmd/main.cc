// `parallelrun`: one binary for local runs, validation, and the coordinator and agent roles that
// the operator's pods run (SPEC.md §4.1).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/cmd/commands.h"

namespace {

constexpr const char* kUsage = R"(usage: parallelrun <command> [flags]

commands:
  run FILE [--nodes N] [--volume NAME=DIR]... [--restart] [--python PATH]
      run a ParallelRunJob manifest on this machine (local mode)
  validate FILE
      check a manifest; prints a one-line summary, or every error with its field path
  coordinator --spec FILE --listen ADDR:PORT --token-file F [--tls-cert F --tls-key F]
      the coordinator role (plans, leases mini-batches, assembles the output)
  agent --coordinator URL --token-file F [--ca-file F] --node-name NAME [--echo-user-logs]
      the agent role (one per node; runs the worker processes); --echo-user-logs copies the
      workers' stdout/stderr and one line per failed attempt to its stdout (a pod's log)
  version
      print the version

exit codes: 0 succeeded, 1 invalid manifest/input/usage, 42 job failed, 130 interrupted
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace parallelrun::rt::cmd;
  BlockTerminationSignals();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitInvalid : kExitOk;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "run") return RunMain(args);
  if (command == "validate") return ValidateMain(args);
  if (command == "coordinator") return CoordinatorMain(args);
  if (command == "agent") return AgentMain(args);
  if (command == "version" || command == "--version") {
    std::printf("parallelrun %s\n", PARALLELRUN_VERSION);
    return kExitOk;
  }
  std::fprintf(stderr, "parallelrun: unknown command \"%s\"\n\n%s", command.c_str(), kUsage);
  return kExitInvalid;
}
