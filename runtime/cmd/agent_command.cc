// `parallelrun agent`: one per node; registers with the coordinator and runs the workers.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "runtime/agent/agent.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/protocol/coordinator_client.h"
#include "runtime/worker/worker.h"

namespace parallelrun::rt::cmd {

int AgentMain(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {"coordinator", "token-file", "ca-file", "node-name", "python"};
  spec_flags.switches = {"echo-user-logs"};
  auto flags = ParseFlags(args, spec_flags);
  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "parallelrun agent: %s\n", m.c_str());
    return kExitInvalid;
  };
  if (!flags.ok()) return fail(flags.status().message());
  for (const char* required : {"coordinator", "token-file", "node-name"}) {
    if (!flags->Has(required)) return fail(std::string("missing required flag --") + required);
  }
  auto token = ReadTokenFile(flags->Get("token-file"));
  if (!token.ok()) return fail(token.status().message());

  protocol::HttpClientOptions client_options;
  client_options.base_url = flags->Get("coordinator");
  client_options.token = *token;
  client_options.ca_file = flags->Get("ca-file");

  AgentOptions options;
  options.node = flags->Get("node-name");
  const char* env_python = std::getenv("PARALLELRUN_PYTHON");
  options.python =
      flags->Get("python", env_python && *env_python ? env_python : "/usr/bin/python3");
  options.host_dir = DefaultPythonHostDir();
  options.reap_orphans = true;
  options.echo_user_logs = flags->switches.count("echo-user-logs") > 0;

  auto agent = std::make_shared<Agent>(
      options, protocol::MakeHttpCoordinatorClient(client_options),
      [](WorkerConfig c) {
        return c.entry_script.ends_with(".so") ? MakeNativeWorker(std::move(c))
                                               : MakePythonWorker(std::move(c));
      },
      RealClock::Get());
  StartSignalThread([agent](int) { agent->Stop(); });
  int code = agent->Run();
  // As in the coordinator: leave without running static destructors (threads may still run).
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace parallelrun::rt::cmd
