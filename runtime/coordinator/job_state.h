// The coordinator's in-memory view of a job: which mini-batches are pending, running (on lease),
// completed or failed, and the counters that decide the job's outcome (SPEC.md §4.3). Pure state,
// no I/O: the Coordinator journals what each call decided and serializes all calls.
//
// Guarantees:
// - Small: 32 bytes per planned mini-batch, plus 8 while it waits in a queue; a mini-batch's file
//   list is never held here (leases re-read it from the durable plan by offset).
// - Fencing: only the live attempt's result counts (the attempt last handed out, still on
//   lease); a result of any other attempt (expired, cancelled, never issued) is `kLate` and
//   changes nothing. Which node may report it is the caller's check (Holder()).
// - A failed try (any status but RUN_DONE and CANCELLED) counts toward runMaxTry; after runMaxTry
//   failed tries the mini-batch is failed and all its items count as failed items. CANCELLED (an
//   agent giving work back) queues it again without counting a try.
// - Disruptions are not the script's fault: a lease lost because its agent or node went away (the
//   lease expired, or the agent registered again without it) queues the mini-batch again first in
//   line without counting a try, up to kFreeDisruptions times per mini-batch; later ones count as
//   failed tries (a mini-batch that keeps killing its node still ends).
// - Retries are handed out before new mini-batches; new ones go in plan order.
// - Attempt numbers of a mini-batch only grow, so each attempt has its own part file.
// - retryFrom: a mini-batch that completed in an earlier run is carried over (Carry) before it is
//   ever handed out: it counts as completed with the earlier item counts and is never leased.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/base/time_util.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt {

// AttemptStatus (how an attempt ended) is part of the agent contract: runtime/protocol/contract.h.

// What one attempt's result (or expired lease) did to its mini-batch.
enum class Outcome : uint8_t {
  kCompleted,  // accepted: the mini-batch completed with this attempt's item counts
  kFailed,     // accepted: the last allowed try failed, so the mini-batch failed
  kRetry,      // a failed try: the mini-batch is queued again
  kGivenBack,  // CANCELLED: queued again without counting a try
  kLate,       // a result for an attempt that no longer counts: recorded only
  kDisrupted,  // its lease was lost to a disruption: queued again without counting a try
};
std::optional<Outcome> ParseOutcome(std::string_view name);
const char* OutcomeName(Outcome outcome);

enum class MiniBatchStatus : uint8_t { kPending, kRunning, kCompleted, kFailed };

// Where a mini-batch's record is in the plan file, its item count, and a hash of the record (to
// compare plans of two runs without holding their records: retryFrom).
struct PlanEntry {
  int64_t plan_offset = 0;
  uint32_t plan_length = 0;
  int64_t items = 0;
  uint64_t record_hash = 0;
};

struct LeaseGrant {
  int64_t id = 0;
  int attempt = 1;
  int64_t plan_offset = 0;
  uint32_t plan_length = 0;
};

// The node of an attempt held since a coordinator restart whose agent has not reclaimed it.
inline constexpr uint32_t kNoNode = 0xffffffff;
// Lost leases per mini-batch that do not count as tries (see Disruptions above).
inline constexpr int kFreeDisruptions = 3;

struct RunningAttempt {
  int64_t id = 0;
  int attempt = 1;
  uint32_t node = 0;  // the caller's node index, or kNoNode
  SteadyTime expiry;
};

struct Decision {
  Outcome outcome = Outcome::kLate;
  bool accepted = false;  // this attempt's result is the one that counts for its mini-batch
  int64_t succeeded = 0;  // items counted by this decision
  int64_t failed = 0;
};

struct ExpiredLease {
  RunningAttempt attempt;
  // kDisrupted; kRetry or kFailed after kFreeDisruptions; kGivenBack for a hold (kNoNode)
  Outcome outcome = Outcome::kRetry;
  int64_t items = 0;
  int disruptions = 0;  // of its mini-batch so far, this one included
};

struct JobCounts {
  int64_t total = 0;      // mini-batches planned so far
  int64_t completed = 0;  // completed or failed
  int64_t failed = 0;
  int64_t running = 0;
  // Mini-batches with more than one attempt because a try failed, each counted once (so
  // retried <= total); later failed tries of the same mini-batch do not add to it.
  int64_t retried = 0;
  int64_t disrupted = 0;  // lost leases queued again without counting a try
  int64_t carried = 0;    // completed in an earlier run (retryFrom), counted in completed
  int64_t items_total = 0;
  int64_t items_succeeded = 0;
  int64_t items_failed = 0;
};

class JobState {
 public:
  explicit JobState(int run_max_try);

  // Adds the next mini-batch of the plan (ids are dense, in plan order) and queues it.
  int64_t AddPlanned(const PlanEntry& entry);
  void SetPlanComplete() { plan_complete_ = true; }
  bool plan_complete() const { return plan_complete_; }
  // Every planned mini-batch completed or failed, and the plan is complete.
  bool AllDone() const { return plan_complete_ && counts_.completed == counts_.total; }
  bool HasPending() const { return counts_.total - counts_.completed - counts_.running > 0; }

  // Leases up to `max` pending mini-batches (retries first) to `node` until `expiry`.
  std::vector<LeaseGrant> Lease(uint32_t node, int max, SteadyTime expiry);
  // The node holding live attempt (id, attempt) (kNoNode: held since a restart for a node that has
  // not reclaimed it); nullopt when (id, attempt) is not the live attempt of a planned mini-batch.
  std::optional<uint32_t> Holder(int64_t id, int attempt) const;
  // Extends the live attempt's lease; false when (id, attempt) is not the live attempt or another
  // node holds it (the agent should cancel it). An attempt held since a restart (kNoNode) becomes
  // `node`'s: the caller checks first that `node` is the one it was held for.
  bool Renew(int64_t id, int attempt, uint32_t node, SteadyTime expiry);
  // The live attempt (id, attempt), when it is `node`'s, goes back to the front of the queue
  // without counting a try (an agent that stops gives back what it has not run; kNoNode: a held
  // attempt whose agent came back without it). False (nothing changes) otherwise.
  bool GiveBack(int64_t id, int attempt, uint32_t node);
  // Applies the result of the live attempt (anything else is kLate and changes nothing).
  // `succeeded` is clamped to [0, items]; failed = items - succeeded. Requires id < total.
  Decision Apply(int64_t id, int attempt, AttemptStatus status, int64_t succeeded);
  // Removes leases whose expiry is at or before `now`; each is a disruption, except a hold
  // (kNoNode), which is given back.
  std::vector<ExpiredLease> ExpireLeases(SteadyTime now);
  // `node`'s agent registered again: its live attempts not in `keep` (what the agent says it
  // still runs or has results for) are lost, each a disruption. Sorted by id.
  std::vector<ExpiredLease> DropNodeAttempts(uint32_t node,
                                             const std::vector<std::pair<int64_t, int>>& keep);

  // retryFrom: completes pending mini-batch `id` with the item counts of the earlier run that
  // completed it (`succeeded` is clamped to [0, items]). False (nothing changes) when `id` is not
  // pending or was handed out in this run. Also used when replaying the journal.
  bool Carry(int64_t id, int64_t succeeded);

  // Rebuilding from the journal after a coordinator restart: attempts handed out, and outcomes
  // as they were decided (`succeeded` as counted).
  void ReplayLease(int64_t id, int attempt);
  void ReplayOutcome(int64_t id, int attempt, Outcome outcome, int64_t succeeded);
  // After the replay: keeps attempt `attempt` of pending mini-batch `id`, handed out before the
  // restart with no outcome journaled, running for no node until `until`, so that no one else
  // gets the mini-batch while its agent may still run it. False (nothing changes) when `id` is
  // not pending or `attempt` is not its last attempt.
  bool Hold(int64_t id, int attempt, SteadyTime until);

  const JobCounts& counts() const { return counts_; }
  MiniBatchStatus status(int64_t id) const { return mbs_[static_cast<size_t>(id)].status; }
  // The attempt whose RUN_DONE completed mini-batch `id` (0 when not completed).
  int accepted_attempt(int64_t id) const { return mbs_[static_cast<size_t>(id)].accepted_attempt; }
  // Completed by Carry: its rows are the earlier run's.
  bool carried(int64_t id) const { return mbs_[static_cast<size_t>(id)].carried; }
  int64_t items(int64_t id) const { return mbs_[static_cast<size_t>(id)].items; }
  int disruptions(int64_t id) const { return mbs_[static_cast<size_t>(id)].disruptions; }
  std::vector<RunningAttempt> Running() const;
  // Mini-batches a worker process is on: an agent holds up to two leases per worker (one
  // running, one queued next), so per node at most `per_node` of its leases run; never more
  // than nodes x per_node in all.
  int64_t RunningOnWorkers(int per_node, int nodes) const;
  // Bytes held per planned mini-batch by the table itself (for the memory target).
  static constexpr size_t kBytesPerMiniBatch = 32;

 private:
  struct Entry {
    int64_t plan_offset = 0;
    int64_t items = 0;
    uint32_t plan_length = 0;
    uint16_t attempts = 0;  // handed out (the last attempt number)
    uint16_t failures = 0;  // failed tries
    uint16_t accepted_attempt = 0;
    MiniBatchStatus status = MiniBatchStatus::kPending;
    bool carried = false;
    uint8_t disruptions = 0;  // lost leases (see kFreeDisruptions)
  };
  static_assert(sizeof(Entry) == kBytesPerMiniBatch);
  struct Live {
    int attempt = 1;
    uint32_t node = 0;
    SteadyTime expiry;
  };

  Decision Complete(Entry& e, int attempt, int64_t succeeded);
  Decision FailTry(int64_t id, Entry& e);
  // A lost lease: queued again first in line, a try only after kFreeDisruptions.
  Outcome Disrupt(int64_t id, Entry& e);
  void Requeue(int64_t id, Entry& e);  // pending again, first in line, no try counted

  const int run_max_try_;
  std::vector<Entry> mbs_;
  std::deque<int64_t> fresh_;    // planned, never handed out (may hold ids completed meanwhile)
  std::deque<int64_t> retries_;  // queued again after a failed try or a give-back
  std::unordered_map<int64_t, Live> running_;
  // No lease in running_ expires before this (a lower bound: ExpireLeases, called every
  // supervisor tick, scans running_ only once it is reached).
  SteadyTime earliest_expiry_ = SteadyTime::max();
  JobCounts counts_;
  bool plan_complete_ = false;
};

}  // namespace parallelrun::rt
