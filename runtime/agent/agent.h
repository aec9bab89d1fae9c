// The agent: one per node (SPEC.md §4.1). It registers with the coordinator, starts
// processCountPerNode workers, leases mini-batches for them in batches, reports results, replaces
// workers that crash, hang or fail init(), and writes the node's logs under
// `<output>/logs/sys/node/<node>/` and `<output>/logs/sys/error/<node>/` (SPEC.md §5).
//
// Threads: Run() registers and then runs the communication loop on the calling thread; each
// worker slot has its own thread, which owns its Worker for the Worker's whole life (a worker
// process dies with the thread that spawned it). Workers take leases from a local queue the
// communication loop keeps topped up: one queued lease per live worker, two while attempts are
// short (under 1 s on average), so a worker never waits on an HTTP round trip for its next
// mini-batch. The loop is a state machine (comm_state.h) that sleeps on a condition variable
// until its next deadline or a wake-up (never polls); each round makes at most one Report and
// one Lease call. It asks at once when a worker is short of work (fewer queued leases than
// workers); otherwise results and lease requests wait up to 500 ms for company, and results go
// at once when the coordinator has no more work to hand out (the end of the job waits for them).
// Part files are made durable by the loop, all of one report together (part_sync.h), before the
// report that carries their results.
//
// Guarantees:
// - A result is kept and sent again until the coordinator names it in ResultsResponse.accepted
//   (a result the coordinator answers without naming 5 times is dropped with an error line: the
//   coordinator has decided its fate, its lease expires there).
// - Leases held on this node (queued and running) are renewed at least every lease_seconds / 3
//   (counted from when the renewing call was built, before the coordinator sets the expiry), and
//   only those last renewed at least lease_seconds / 6 ago are listed in a lease call.
// - A replacement worker gets the next process name (processNNN, never reused on this node: the
//   numbering continues after the highest processNNN.txt already in the node's log folder, so a
//   restarted agent does not append to an earlier worker's log) and its predecessor's GPU.
// - After 3 × processCountPerNode consecutive init() failures the node stops starting workers
//   (event NODE_GAVE_UP) but keeps talking to the coordinator until it says done or stop.
// - Stop() (SIGTERM) gives the queued leases back to the coordinator at once
//   (ResultsRequest.released: queued again there without counting a try or waiting for the lease
//   to expire); running attempts get 10 s to finish, then are killed and reported CANCELLED
//   (also given back without a try); what finished is reported.
// - A coordinator that becomes unreachable (restarted, network trouble) costs nothing: workers go
//   on with their running and queued attempts, results are kept, and the agent retries with
//   backoff (100 ms doubling to 2 s) for up to max_unreachable_seconds. When it answers again the
//   agent
//   registers again, naming the attempts it holds, running, queued or finished with the result
//   not yet accepted (a restarted coordinator lets it keep them), then renews them and reports
//   the results at once. A different job answering at the address (other spec or output folder)
//   ends the agent (exit 1).
// - A coordinator that has ended is the end of the job, not an error: once it said `done` or
//   `stop`, or wrote the job's logs/job_result.txt since this agent registered, a refused
//   connection, a 404 or any other failure to reach it ends the agent at once (workers killed,
//   exit 0).
// - Fencing: results the coordinator refuses (ResultsResponse.refused, or 409 when it refuses
//   all of a report's results) are dropped, never sent again.
//
// Exit codes of Run(): 0 after the coordinator's `done` (running and queued work finished,
// workers shut down with a 10 s grace) or `stop` (workers killed); 130 after Stop(); 1 when the
// coordinator stays unreachable for max_connect_seconds before registration or
// max_unreachable_seconds after it (and has not ended), rejects the agent (401, 400; a 404 at
// registration), or the registration answer is unusable.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/time_util.h"
#include "runtime/protocol/coordinator_client.h"
#include "runtime/worker/worker.h"

namespace parallelrun::rt {

struct AgentOptions {
  std::string node;  // node name: pod IP, locally 127.0.0.<i+1>
  std::string python = "/usr/bin/python3";
  std::string host_dir;          // Python host folder (DefaultPythonHostDir())
  int max_connect_seconds = 60;  // how long the coordinator may be unreachable at registration
                                 // before the agent gives up (exit 1)
  // After registration (a coordinator restarting takes a while): how long it may be unreachable
  // before the agent gives up. < 0: the job's progressUpdateTimeout, at least max_connect_seconds.
  int max_unreachable_seconds = -1;
  // GPU ids handed to workers (slot i gets gpus[i] as CUDA_VISIBLE_DEVICES when there are at least
  // as many GPUs as workers). nullopt: DetectGpus().
  std::optional<std::vector<std::string>> gpus;
  // The agent owns its process (`parallelrun agent`): it becomes a child subreaper, so a worker's
  // descendants that left its process group (daemons) are reparented to it and killed with the
  // worker, and every child left when the agent ends is killed. Leave false where the agent
  // shares its process with other children.
  bool reap_orphans = false;
  // Copy the node's user stdout/stderr and one line per failed attempt to stdout, for the pod
  // log (runtime/agent/user_log_echo.h); `parallelrun agent --echo-user-logs`.
  bool echo_user_logs = false;
};

// Production: MakePythonWorker. Called from the slot thread that will own the worker.
using WorkerFactory = std::function<std::unique_ptr<Worker>(WorkerConfig)>;

// The GPUs this node may use: CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES (unless "all"),
// else the driver's (/proc/driver/nvidia/gpus). Empty when there are none.
std::vector<std::string> DetectGpus();

class Agent {
 public:
  Agent(AgentOptions options, std::unique_ptr<protocol::CoordinatorClient> client,
        WorkerFactory factory, const Clock& clock);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs the agent to the end and returns the process exit code (see above). Call once.
  int Run();
  // SIGTERM / SIGINT. Thread-safe and returns at once (not async-signal-safe: call it from a
  // signal-handling thread). Before or during registration Run() returns 130 promptly.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::rt
