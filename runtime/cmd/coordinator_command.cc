// `parallelrun coordinator`: loads the spec, serves the coordinator API and runs the job to its
// end. Used by `parallelrun run` (locally, with --paths local) and by the operator's coordinator
// pod (paths under /mnt, as mounted by the operator).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"
#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"
#include "runtime/cmd/output_check.h"
#include "runtime/coordinator/coordinator.h"
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

}  // namespace

StatusOr<std::map<std::string, std::string>> VolumeBindingsFromFlags(
    const std::vector<std::string>& values) {
  return ParseVolumeBindings(values);
}

int CoordinatorMain(const std::vector<std::string>& args) {
  FlagSpec spec_flags;
  spec_flags.with_value = {"spec",    "listen",       "token-file",   "tls-cert",
                           "tls-key", "paths",        "volume",       "nodes",
                           "owner",   "address-file", "manifest-dir", "termination-log"};
  spec_flags.switches = {"no-echo"};
  auto flags = ParseFlags(args, spec_flags);
  if (!flags.ok()) return Fail(flags.status().message());
  for (const char* required : {"spec", "listen", "token-file"}) {
    if (!flags->Has(required)) return Fail(std::string("missing required flag --") + required);
  }
  auto token = ReadTokenFile(flags->Get("token-file"));
  if (!token.ok()) return Fail(token.status().message());

  const std::string spec_file = flags->Get("spec");
  auto spec = LoadJobSpec(spec_file);
  if (!spec.ok()) return Fail(spec.status().message());

  ResolvedPaths paths;
  const std::string mode = flags->Get("paths", "mounted");
  if (mode == "local") {
    auto bindings = ParseVolumeBindings(flags->GetAll("volume"));
    if (!bindings.ok()) return Fail(bindings.status().message());
    std::string manifest_dir = flags->Get("manifest-dir", Dirname(AbsolutePath(spec_file, ".")));
    auto resolved = ResolveLocalPaths(*spec, manifest_dir, *bindings);
    if (!resolved.ok()) return Fail(resolved.status().message());
    paths = *resolved;
  } else if (mode == "mounted") {
    paths = MountedPaths(*spec);
  } else {
    return Fail("--paths " + mode + ": expected local or mounted");
  }

  // Before anything is written: an output the job's uid cannot write fails the job at once.
  if (Status writable = CheckOutputWritable(*spec, paths.output_dir); !writable.ok()) {
    return FailBeforeStart(flags->Get("termination-log"), kReasonOutputNotWritable,
                           writable.message());
  }

  std::string listen = flags->Get("listen");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Fail("--listen " + listen + ": expected ADDR:PORT");
  protocol::HttpServerOptions server_options;
  server_options.host = listen.substr(0, colon);
  auto port = ParseIntFlag("listen", listen.substr(colon + 1), 0);
  if (!port.ok()) return Fail(port.status().message());
  server_options.port = *port;
  server_options.token = *token;
  server_options.tls_cert_file = flags->Get("tls-cert");
  server_options.tls_key_file = flags->Get("tls-key");
  if (server_options.tls_cert_file.empty() != server_options.tls_key_file.empty()) {
    return Fail("--tls-cert and --tls-key go together");
  }

  CoordinatorOptions options;
  options.spec = *spec;
  options.paths = paths;
  options.desired_nodes = spec->node_count;
  if (flags->Has("nodes")) {
    auto n = ParseIntFlag("nodes", flags->Get("nodes"), 1);
    if (!n.ok()) return Fail(n.status().message());
    options.desired_nodes = *n;
  }
  options.owner_id = flags->Get("owner", spec->uid.empty() ? LocalOwnerId(*spec) : spec->uid);
  options.clock = &RealClock::Get();
  // In a pod, a coordinator replacing one that is still ending waits for the output lock instead
  // of failing the job (exit 1 is final); locally a second run is refused at once.
  if (mode == "mounted") options.output_lock_wait = std::chrono::seconds(120);
  if (!flags->switches.count("no-echo")) {
    options.echo = [](const std::string& line) {
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
    };
  }
  auto coordinator = Coordinator::Create(std::move(options));
  if (!coordinator.ok()) return Fail(coordinator.status().message());
  std::shared_ptr<Coordinator> coord = std::move(*coordinator);

  auto server = protocol::StartHttpServer(
      server_options, [coord](const auto& r) { return HandleCoordinatorRequest(*coord, r); });
  if (!server.ok()) return Fail(server.status().message());
  if (flags->Has("address-file")) {
    Status st = WriteFileAtomic(flags->Get("address-file"), (*server)->url() + "\n");
    if (!st.ok()) return Fail(st.message());
  }
  StartSignalThread([coord](int) { coord->Stop(); });
  int code = coord->Wait();
  protocol::Progress final_progress = coord->GetProgress();
  WriteTerminationMessage(flags->Get("termination-log"), final_progress);
  if (code == kExitInvalid) {
    // Invalid input found while running (OutputInUse, a missing input folder, an unreadable
    // file): say it on stderr whatever --no-echo says, since no job ran to report it.
    std::fprintf(stderr, "parallelrun coordinator: Failed: %s: %s\n", final_progress.reason.c_str(),
                 final_progress.message.c_str());
  }
  // Agents poll until they hear `done` (or `stop`): give them a moment to hear it before the
  // server goes, or they would wait for a coordinator that does not come back. Not after
  // SIGTERM: the pod's grace period is short, and the job is resumable anyway.
  if (code != kExitInterrupted) coord->WaitForAgentsToHearTheEnd(std::chrono::seconds(5));
  (*server)->Stop();
  // Leave without running static destructors: cpprestsdk's thread pool may still be finishing a
  // request, and tearing down its statics under it crashes at exit. Everything we own is already
  // durable (journal fsync'd, results written atomically, loggers flush every line).
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace parallelrun::rt::cmd
