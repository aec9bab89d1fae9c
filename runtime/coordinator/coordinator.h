// The coordinator (SPEC.md §4.1, the seed's "master role"): plans the job, hands mini-batches out
// on lease to node agents, records results in a durable journal, enforces retries, thresholds and
// timeouts, writes the coordinator's logs (SPEC.md §5), assembles the output and writes the
// job's result. It is a protocol::CoordinatorService: `parallelrun coordinator` serves it over HTTP
// (protocol::HandleCoordinatorRequest) and calls Wait(); tests may call it in-process.
// Its parts: coordinator_impl.h.
//
// Files under <output>/.parallelrun/: owner (the job's owner id), plan, journal, parts/ (one
// file per attempt: <id>.<attempt>, plus <id>.<attempt>.header for appendRowHeader), result.json,
// output_index (where each mini-batch's rows lie in the assembled file: runtime/output/
// output_index.h).
//
// Guarantees:
// - The output folder belongs to one job: when .parallelrun/owner names another owner the job
//   fails with OutputInUse (exit 1) and nothing under the output folder is touched.
// - A finished job (result.json present) is not run again: Wait() reports its result again.
// - A mini-batch is leased only once its plan record is durable; results are acknowledged
//   (ResultsResponse.accepted) only once journaled and fsync'd (one fsync per request).
// - A restarted coordinator resumes: the plan continues after its last record, and the journal
//   tells which mini-batches completed (never run again) or failed, and which attempt numbers
//   were used (new attempts get new numbers, so new part files).
// - Attempts that were running when the previous coordinator ended (a lease record without an
//   outcome) stay running, for no node, for one lease period: an agent that outlived the
//   coordinator registers again naming what it holds and keeps those attempts (its results
//   complete them as usual); the ones its node no longer holds (a restarted agent) go back to the
//   queue at once, and unclaimed ones when the period ends, without counting a try (those agents
//   ended with the coordinator, not because of the work). Journaled as "released".
// - Leases an agent gives back unrun (ResultsRequest.released, an agent stopping) are queued
//   again at once, first in line, without counting a try; journaled as "released", no report row
//   (nothing ran). Only the node's own live attempts are affected.
// - Output: the first RUN_DONE of each mini-batch is accepted; the accepted parts are assembled
//   in mini-batch order, atomically (runtime/output/assembler.h) with the output index, then
//   parts/ is removed (kept when the assembly failed).
// - retryFrom (paths.retry_from_dir, runtime/coordinator/retry_from.h): the earlier run's folder
//   is only read. This run plans its inputs as usual and compares each plan record with the
//   earlier run's before the mini-batch can be handed out; a mini-batch that completed there is
//   carried over (journaled as "carried", a CARRIED_OVER row in the report CSV, counted as
//   completed with the earlier item counts in the thresholds, progress and job result) and never
//   run; the others run. Its rows are copied from the earlier output file (or, for an unfinished
//   earlier run, its part files) in mini-batch order. A folder that is no parallelrun output, an
//   unreadable or changed earlier run, or a plan that differs ends the job with InvalidInput
//   (exit 1) naming spec.retryFrom and the difference; retryFrom naming the output folder itself
//   is refused like OutputInUse, before anything is written.
// - logs/job_result.txt and .parallelrun/result.json are written last; result.json (only for exit
//   codes 0 and 42, so that a job rejected for its input runs again once the input is fixed)
//   marks the job finished.
// Caveats: lease records are journaled without their own fsync; after a machine crash (not a
// process crash) a restarted coordinator may reuse the attempt number of a lease handed out just
// before the crash.
// Thread-safety: the service methods (Register, Lease, Report, GetProgress) and Stop may be called
// from any thread, concurrently.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/protocol/contract.h"
#include "runtime/protocol/coordinator_service.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

// Exit codes of Wait(): kCoordinatorExit* in runtime/protocol/contract.h (SPEC.md §4.1).

struct CoordinatorOptions {
  JobSpec spec;
  ResolvedPaths paths;
  int desired_nodes = 1;         // spec.node_count unless overridden by `--nodes`
  std::string owner_id;          // the job's UID in a cluster; locally a hash of the spec
  const Clock* clock = nullptr;  // RealClock::Get() when null
  // Each overview line is also passed here (the CLI prints it, the pod log shows it). Optional.
  std::function<void(const std::string&)> echo;
  // How long to wait for the output folder's lock (runtime/output/output_lock.h) while another
  // run holds it before failing with OutputInUse: 0 locally, a while for a replaced pod.
  std::chrono::seconds output_lock_wait{0};
};

class Coordinator : public protocol::CoordinatorService {
 public:
  // Checks ownership of the output folder, then either (a) fails the job with OutputInUse without
  // touching anything, (b) loads the result of a finished job, or (c) sets up .parallelrun/ and
  // logs/, resumes from an existing plan and journal, and starts planning and the timers.
  // Errors: the output or log folders cannot be created or written, or the plan/journal of an
  // earlier run cannot be read.
  static StatusOr<std::unique_ptr<Coordinator>> Create(CoordinatorOptions options);
  ~Coordinator() override;
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The agents' requests (runtime/protocol/messages.h). InvalidArgument (nothing applied) for a
  // request with a field missing or out of range; Internal when the journal cannot be written or
  // synced (the results were not acknowledged: the agent sends them again).
  StatusOr<protocol::RegisterResponse> Register(const protocol::RegisterRequest& req) override;
  StatusOr<protocol::LeaseResponse> Lease(const protocol::LeaseRequest& req) override;
  StatusOr<protocol::ResultsResponse> Report(const protocol::ResultsRequest& req) override;
  // The job's status, field names as the ParallelRunJob status (SPEC.md §6).
  protocol::Progress GetProgress() const override;
  // Blocks until the job ended, its output is assembled and its result written, or until Stop();
  // returns the exit code: 0 succeeded, 42 failed, 1 invalid input or OutputInUse, 130 stopped.
  int Wait();
  // After Wait(): blocks until every node heard from within the last lease period has been told
  // that the job ended (a lease answer with done or stop, or a results answer with stop), or
  // until `timeout`, so that a coordinator process leaving right away does not leave agents
  // retrying a vanished address. True when every such node was told.
  bool WaitForAgentsToHearTheEnd(std::chrono::milliseconds timeout);
  // SIGTERM: stop handing out work (agents are told to stop); Wait() returns 130 once everything
  // journaled is on disk (fdatasync). The job stays resumable: run it again on the same output.
  void Stop();

 private:
  class Impl;
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::rt
