// `parallelrun coordinator`: loads the spec, serves the coordinator API and runs the job to its
// end. Used by `parallelrun run` (locally, with --paths local) and by the operator's coordinator
// pod (paths under /mnt, as mounted by the operator).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/cmd/output_check.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/protocol/coordinator_service.h"
#include "runtime/protocol/http_server.h"

namespace parallelrun::rt::cmd {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "parallelrun coordinator: %s\n", message.c_str());
  return kExitInvalid;
}

StatusOr<std::map<std::string, std::string>> ParseVolumeBindings(
    const std::vector<std::string>& values) {
  std::map<std::string, std::string> out;
  for (const auto& v : values) {
    auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
      return InvalidArgumentError("--volume " + v + ": expected NAME=DIR");
    }
    out[v.substr(0, eq)] = v.substr(eq + 1);
  }
  return out;
}

// The final status fields, at most 4 KiB, for the pod's termination message (SPEC.md §4.1).
void WriteTerminationMessage(const std::string& path, const protocol::Progress& progress) {
  if (path.empty()) return;
  nlohmann::json j = progress;
  std::string text = j.dump();
  // Too long: the last progress line goes first, then the error digest's texts are shortened and
  // then dropped (the message names the most frequent error), then the message is cut.
  if (text.size() > 4096) {
    j.erase("lastProgressLine");
    if (j.contains("recentErrors") && j["recentErrors"].is_array()) {
      for (auto& e : j["recentErrors"]) e["error"] = e.value("error", std::string()).substr(0, 200);
    }
    text = j.dump();
  }
  if (text.size() > 4096) {
    j.erase("recentErrors");
    j.erase("mostFrequentError");
    text = j.dump();
  }
  if (text.size() > 4096) {
    j["message"] = j.value("message", std::string()).substr(0, 512);
    text = j.dump();
  }
  if (FILE* f = std::fopen(path.c_str(), "w")) {
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
}

// Ends the job before it starts (exit 1, invalid input), with the reason in the termination
// message as a finished coordinator would write it, so the operator reports it on the job.
int FailBeforeStart(const std::string& termination_log, const std::string& reason,
                    const std::string& message) {
  protocol::Progress p;
  p.phase = "Failed";
  p.reason = reason;
  p.message = message;
  p.startTime = p.completionTime = Iso8601Utc(std::chrono::system_clock::now());
  p.exitCode = kExitInvalid;
  WriteTerminationMessage(termination_log, p);
  std::fprintf(stderr, "parallelrun coordinator: Failed: %s: %s\n", reason.c_str(),
               message.c_str());
  return kExitInvalid;
}

// The flags of `parallelrun coordinator`, the required ones present.
StatusOr<ParsedFlags> ParseCoordinatorFlags(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {
      "spec",  "listen", "token-file",   "tls-cert",     "tls-key",         "paths",      "volume",
      "nodes", "owner",  "address-file", "manifest-dir", "termination-log", "address-fd", "go-fd"};
  spec_flags.switches = {"no-echo"};
  PR_ASSIGN_OR_RETURN(ParsedFlags flags, ParseFlags(args, spec_flags));
  for (const char* required : {"spec", "listen", "token-file"}) {
    if (!flags.Has(required)) {
      return InvalidArgumentError(std::string("missing required flag --") + required);
    }
  }
  for (const char* fd_flag : {"address-fd", "go-fd"}) {
    if (flags.Has(fd_flag)) {
      PR_RETURN_IF_ERROR(ParseIntFlag(fd_flag, flags.Get(fd_flag), 0).status());
    }
  }
  return flags;
}

// Where the job's folders are: `--paths local` (with --volume bindings, relative to the manifest's
// folder) or `--paths mounted` (the operator's /mnt mounts, the default).
StatusOr<ResolvedPaths> ResolvePaths(const ParsedFlags& flags, const JobSpec& spec,
                                     const std::string& spec_file) {
  const std::string mode = flags.Get("paths", "mounted");
  if (mode == "mounted") return MountedPaths(spec);
  if (mode != "local")
    return InvalidArgumentError("--paths " + mode + ": expected local or mounted");
  PR_ASSIGN_OR_RETURN(auto bindings, ParseVolumeBindings(flags.GetAll("volume")));
  std::string manifest_dir = flags.Get("manifest-dir", Dirname(AbsolutePath(spec_file, ".")));
  return ResolveLocalPaths(spec, manifest_dir, bindings);
}

// --listen ADDR:PORT, the token and --tls-cert/--tls-key.
StatusOr<protocol::HttpServerOptions> ServerOptions(const ParsedFlags& flags,
                                                    const std::string& token) {
  std::string listen = flags.Get("listen");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgumentError("--listen " + listen + ": expected ADDR:PORT");
  }
  protocol::HttpServerOptions options;
  options.host = listen.substr(0, colon);
  PR_ASSIGN_OR_RETURN(options.port, ParseIntFlag("listen", listen.substr(colon + 1), 0));
  options.token = token;
  options.tls_cert_file = flags.Get("tls-cert");
  options.tls_key_file = flags.Get("tls-key");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  return options;
}

StatusOr<CoordinatorOptions> MakeCoordinatorOptions(const ParsedFlags& flags, const JobSpec& spec,
                                                    const ResolvedPaths& paths) {
  CoordinatorOptions options;
  options.spec = spec;
  options.paths = paths;
  options.desired_nodes = spec.node_count;
  if (flags.Has("nodes")) {
    PR_ASSIGN_OR_RETURN(options.desired_nodes, ParseIntFlag("nodes", flags.Get("nodes"), 1));
  }
  options.owner_id = flags.Get("owner", spec.uid.empty() ? LocalOwnerId(spec) : spec.uid);
  options.clock = &RealClock::Get();
  // In a pod, a coordinator replacing one that is still ending waits for the output lock instead
  // of failing the job (exit 1 is final); locally a second run is refused at once.
  if (flags.Get("paths", "mounted") == "mounted")
    options.output_lock_wait = std::chrono::seconds(120);
  if (!flags.switches.count("no-echo")) {
    options.echo = [](const std::string& line) {
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
    };
  }
  return options;
}

// --go-fd: `parallelrun run` starts the coordinator while it makes its last checks (the entry
// script's syntax), and the coordinator touches nothing until it reads a byte there. True to go
// on; false at the end of the pipe (a check failed: `run` says why, the coordinator leaves).
bool AwaitGo(const ParsedFlags& flags) {
  if (!flags.Has("go-fd")) return true;
  const int fd = std::atoi(flags.Get("go-fd").c_str());
  char go = 0;
  ssize_t n;
  do {
    n = ::read(fd, &go, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  return n == 1;
}

// Tells whoever started the coordinator where it listens, once it does: its URL and a newline in
// the file --address-file (atomically) and on the descriptor --address-fd (`parallelrun run`'s
// pipe, closed after it).
Status PublishAddress(const ParsedFlags& flags, const std::string& url) {
  const std::string line = url + "\n";
  if (flags.Has("address-file"))
    PR_RETURN_IF_ERROR(WriteFileAtomic(flags.Get("address-file"), line));
  if (!flags.Has("address-fd")) return Status::Ok();
  const int fd = std::atoi(flags.Get("address-fd").c_str());
  ssize_t n;
  do {
    n = ::write(fd, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  const int write_errno = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return InternalError("--address-fd " + std::to_string(fd) + ": cannot write the address: " +
                         (n < 0 ? std::strerror(write_errno) : "short write"));
  }
  return Status::Ok();
}

// Waits for the job's end, reports it and gives the agents a moment to hear it. The exit code.
int FinishJob(Coordinator& coord, protocol::HttpServer& server, const ParsedFlags& flags) {
  int code = coord.Wait();
  protocol::Progress final_progress = coord.GetProgress();
  WriteTerminationMessage(flags.Get("termination-log"), final_progress);
  if (code == kExitInvalid) {
    // Invalid input found while running (OutputInUse, a missing input folder, an unreadable
    // file): say it on stderr whatever --no-echo says, since no job ran to report it.
    std::fprintf(stderr, "parallelrun coordinator: Failed: %s: %s\n", final_progress.reason.c_str(),
                 final_progress.message.c_str());
  }
  // Agents poll until they hear `done` (or `stop`): give them a moment to hear it before the
  // server goes, or they would wait for a coordinator that does not come back. Not after
  // SIGTERM: the pod's grace period is short, and the job is resumable anyway.
  if (code != kExitInterrupted) coord.WaitForAgentsToHearTheEnd(std::chrono::seconds(5));
  server.Stop();
  return code;
}

}  // namespace

StatusOr<std::map<std::string, std::string>> VolumeBindingsFromFlags(
    const std::vector<std::string>& values) {
  return ParseVolumeBindings(values);
}

int CoordinatorMain(const std::vector<std::string>& args) {
  auto flags = ParseCoordinatorFlags(args);
  if (!flags.ok()) return Fail(flags.status().message());
  auto token = ReadTokenFile(flags->Get("token-file"));
  if (!token.ok()) return Fail(token.status().message());
  const std::string spec_file = flags->Get("spec");
  auto spec = LoadJobSpec(spec_file);
  if (!spec.ok()) return Fail(spec.status().message());
  auto paths = ResolvePaths(*flags, *spec, spec_file);
  if (!paths.ok()) return Fail(paths.status().message());

  if (!AwaitGo(*flags)) return kExitInvalid;
  // Before anything is written: an output the job's uid cannot write fails the job at once.
  if (Status writable = CheckOutputWritable(*spec, paths->output_dir); !writable.ok()) {
    return FailBeforeStart(flags->Get("termination-log"), kReasonOutputNotWritable,
                           writable.message());
  }
  auto server_options = ServerOptions(*flags, *token);
  if (!server_options.ok()) return Fail(server_options.status().message());
  auto options = MakeCoordinatorOptions(*flags, *spec, *paths);
  if (!options.ok()) return Fail(options.status().message());
  server_options->threads = protocol::CoordinatorServerThreads(options->desired_nodes);
  auto coordinator = Coordinator::Create(*std::move(options));
  if (!coordinator.ok()) return Fail(coordinator.status().message());
  std::shared_ptr<Coordinator> coord = std::move(*coordinator);

  auto server = protocol::StartHttpServer(
      *server_options, [coord](const auto& r) { return HandleCoordinatorRequest(*coord, r); });
  if (!server.ok()) return Fail(server.status().message());
  if (Status st = PublishAddress(*flags, (*server)->url()); !st.ok()) return Fail(st.message());
  StartSignalThread([coord](int) { coord->Stop(); });
  int code = FinishJob(*coord, **server, *flags);
  // Leave without running static destructors: a server thread may still be finishing a reply,
  // and tearing down statics under it crashes at exit. Everything we own is already durable
  // (journal fsync'd, results written atomically, loggers flush every line).
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace parallelrun::rt::cmd
