// `parallelrun agent`: one per node; registers with the coordinator and runs the workers.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "runtime/agent/agent.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/protocol/coordinator_client.h"
#include "runtime/worker/worker.h"

namespace parallelrun::rt::cmd {
namespace {

// --coordinator-fd: `parallelrun run` starts its agents while the coordinator starts, and writes
// the coordinator's URL (one line) there once it listens. Nullopt at the end of the pipe without
// one (the coordinator did not start; `run` says why).
std::optional<std::string> ReadCoordinatorUrl(int fd) {
  std::string text;
  char buf[256];
  while (text.find('\n') == std::string::npos) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t eol = text.find('\n');
  if (eol == std::string::npos || eol == 0) return std::nullopt;
  return text.substr(0, eol);
}

}  // namespace

int AgentMain(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {"coordinator", "coordinator-fd", "token-file",
                           "ca-file",     "node-name",      "python"};
  spec_flags.switches = {"echo-user-logs"};
  auto flags = ParseFlags(args, spec_flags);
  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "parallelrun agent: %s\n", m.c_str());
    return kExitInvalid;
  };
  if (!flags.ok()) return fail(flags.status().message());
  // --coordinator-fd N instead of --coordinator URL: `parallelrun run`'s agents.
  if (flags->Has("coordinator") && flags->Has("coordinator-fd")) {
    return fail("--coordinator and --coordinator-fd: expected one of them");
  }
  for (const char* required : {"coordinator", "token-file", "node-name"}) {
    if (!flags->Has(required) &&
        !(required == std::string("coordinator") && flags->Has("coordinator-fd"))) {
      return fail(std::string("missing required flag --") + required);
    }
  }
  auto token = ReadTokenFile(flags->Get("token-file"));
  if (!token.ok()) return fail(token.status().message());
  std::string url = flags->Get("coordinator");
  if (flags->Has("coordinator-fd")) {
    auto fd = ParseIntFlag("coordinator-fd", flags->Get("coordinator-fd"), 0);
    if (!fd.ok()) return fail(fd.status().message());
    std::optional<std::string> given = ReadCoordinatorUrl(*fd);
    if (!given) return kExitInvalid;  // quietly: `run` reports why the coordinator did not start
    url = *given;
  }

  protocol::HttpClientOptions client_options;
  client_options.base_url = url;
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
