// One worker process running the user's entry script, as seen by the agent (SPEC.md §4.2).
//
// The worker is a child process (the Python host, later the native host) that the agent talks to
// over two pipes with one JSON object per line (see runtime/hosts/python/README.md for the
// messages). Its stdout/stderr go to the node's user/stdout and user/stderr log files.
//
// Thread-safety: one Worker is driven by one agent thread at a time; Kill() may be called from
// any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/protocol/contract.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

struct WorkerConfig {
  std::string node;     // 127.0.0.1, or the pod IP
  std::string process;  // process000, process001, ... (a replacement gets a new name)
  std::string python = "/usr/bin/python3";
  std::string host_dir;      // folder holding parallelrun_host.py and the parallelrun package
  std::string entry_script;  // absolute path
  std::string code_dir;      // sourceDirectory: PYTHONPATH head and working folder
  std::vector<std::string> arguments;  // expanded
  std::string input_type = "file";     // file | tabular (pandas imported only for tabular)
  std::string output_dir;
  std::string log_dir;  // <output>/logs
  std::string logging_level = "INFO";
  bool append_row_header = false;  // DataFrame results: write the header (first part only)
  std::vector<std::string> env;    // extra KEY=VALUE (CUDA_VISIBLE_DEVICES, ...)
  // The caller makes part files durable before it counts their results (the agent's group
  // commit, runtime/agent/part_sync.h): the host only writes them (PARALLELRUN_PART_SYNC=agent).
  // false: the host fsyncs each part file before it replies.
  bool agent_syncs_parts = false;
  // Called from Start() while init() runs, every InitProgressInterval(init_timeout), with the pid
  // and the seconds init() has been running. Empty: nothing is called.
  std::function<void(pid_t pid, double running_s)> init_progress;
};

// How often Start() reports an init() still running: every 30 s, more often for a short
// initTimeout (a third of it, at least 1 s), so a hung init() is visible before it is killed.
std::chrono::seconds InitProgressInterval(std::chrono::seconds init_timeout);

// Outcome of init(): ready, or not with `failure` kInitFailed (an exception, or the process died)
// or kInitTimeout.
struct InitOutcome {
  bool ready = false;
  AttemptStatus failure = AttemptStatus::kInitFailed;  // when not ready
  std::string error;                                   // one line
  std::string detail;                                  // traceback / exit code
  bool permanent = false;  // another start cannot succeed (e.g. run() has an uncallable signature)
};

// Outcome of one run(). status: kRunDone, kRunException, kRunWrongType, kRunTimeout,
// kWorkerDied (the process exited or was killed; the Worker is then dead), kCancelled.
struct RunOutcome {
  AttemptStatus status = AttemptStatus::kWorkerDied;
  int64_t succeeded = 0;
  int64_t failed = 0;
  double run_s = 0;  // time inside run()
  double cpu_s = 0;  // CPU time of the worker process during the attempt
  std::string error;
  std::string detail;
};

class Worker {
 public:
  virtual ~Worker() = default;
  // Starts the process and waits for init() to finish (up to `init_timeout`). On kInitTimeout
  // the process is killed.
  virtual InitOutcome Start(std::chrono::seconds init_timeout) = 0;
  // Runs one attempt. On timeout the process is killed and kRunTimeout returned; if the process
  // dies, kWorkerDied with the exit code or signal in `detail`. After either the Worker is dead.
  virtual RunOutcome Run(const protocol::Lease& lease, std::chrono::seconds timeout) = 0;
  // Asks the process to call shutdown() and exit; kills it after `grace`.
  virtual void Shutdown(std::chrono::seconds grace) = 0;
  // SIGKILL now (safe from any thread).
  virtual void Kill() = 0;
  virtual bool alive() const = 0;
  virtual pid_t pid() const = 0;
  virtual const WorkerConfig& config() const = 0;
};

// The Python host: `config.python <host_dir>/parallelrun_host.py`.
std::unique_ptr<Worker> MakePythonWorker(WorkerConfig config);

// The native host (runtime/hosts/native/README.md): `parallelrun-native-host` from the folder of
// the running executable, or $PARALLELRUN_NATIVE_HOST, which dlopen()s `config.entry_script`, a
// shared library implementing the C ABI of runtime/hosts/native/parallelrun_native.h. Same
// protocol and failure semantics as the Python host; `python` and `host_dir` are not used.
std::unique_ptr<Worker> MakeNativeWorker(WorkerConfig config);

// Default folder of the Python host: $PARALLELRUN_PYTHON_HOST_DIR, else
// <dir of the executable>/../share/parallelrun/python.
std::string DefaultPythonHostDir();

}  // namespace parallelrun::rt
