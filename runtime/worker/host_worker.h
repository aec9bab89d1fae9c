// The agent's side of an entry host: one Worker implementation for every host program that speaks
// the line protocol of runtime/hosts/python/README.md (the Python host, the native host).
//
// Internal to runtime/worker: the factories in worker.h (MakePythonWorker, MakeNativeWorker) say
// which program to start; everything after the spawn (the ready/init_failed handshake, run
// requests, timeouts, deaths, shutdown, cancellation) is shared, so both hosts fail the same way.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/worker/worker.h"

namespace parallelrun::rt {

struct HostProgram {
  // Says which host this is in messages: "the Python host", "the native host".
  std::string name;
  // The program and its own arguments; the job's expanded arguments follow.
  std::vector<std::string> argv;
  // Host-specific KEY=VALUE entries (PYTHONPATH, ...). Like the protocol's PARALLELRUN_*
  // variables, WorkerConfig::env cannot redefine them.
  std::vector<std::string> env;
  // Checked when the worker starts: {path, error when it does not exist}. A missing one fails the
  // start with kInitFailed and that error, before anything is spawned.
  std::vector<std::pair<std::string, std::string>> required_files;
};

std::unique_ptr<Worker> MakeHostWorker(WorkerConfig config, HostProgram program);

}  // namespace parallelrun::rt
