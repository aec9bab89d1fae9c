// The `parallelrun` subcommands. Each returns the process exit code (SPEC.md §4.1): 0 success,
// 1 invalid manifest/input/usage, 42 job failed, 130 interrupted.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt::cmd {

// The coordinator's exit codes (runtime/protocol/contract.h), which `run` passes on.
inline constexpr int kExitOk = kCoordinatorExitSucceeded;
inline constexpr int kExitInvalid = kCoordinatorExitInvalid;
inline constexpr int kExitJobFailed = kCoordinatorExitJobFailed;
inline constexpr int kExitInterrupted = kCoordinatorExitInterrupted;

int ValidateMain(const std::vector<std::string>& args);
int RunMain(const std::vector<std::string>& args);
int CoordinatorMain(const std::vector<std::string>& args);
int AgentMain(const std::vector<std::string>& args);

// Blocks SIGINT and SIGTERM in the calling thread (call first in main, before any thread starts,
// so every thread inherits the mask) and starts a thread that calls `on_signal(signo)` for each
// one received.
void BlockTerminationSignals();
void StartSignalThread(std::function<void(int)> on_signal);

// The owner id of a local run: a hash of the defaulted spec (SPEC.md §4.3).
std::string LocalOwnerId(const JobSpec& spec);

// Reads a token file, trimming whitespace; error names the file when missing or empty.
StatusOr<std::string> ReadTokenFile(const std::string& path);

// A random hex token of `bytes` bytes (OpenSSL RAND_bytes).
std::string RandomToken(int bytes);

// One-line summary of a valid job ("score-files: 2 file inputs, 2 nodes x 2 processes, ...").
std::string SpecSummary(const JobSpec& spec);

}  // namespace parallelrun::rt::cmd
