// The agent's communication loop as a state machine without threads or I/O: what to do next
// (wait until when, register again, talk to the coordinator: report, ask for leases, or both)
// and what a failed call means (retry with backoff, or end the agent and why).
//
// The loop (runtime/agent/comm_loop.cc) takes a CommSnapshot of the agent under its lock, asks
// Decide(), does what it says with the lock released, and tells the state machine the outcome
// (OnTalked / OnLeaseAnswer / OnFailure / OnRegisteredAgain). Every rule about timing lives here
// and is unit-tested by feeding snapshots (runtime/agent/comm_state_test.cc).
//
// States of the link to the coordinator (Link):
//   kUp          calls succeed; talk when something is due (see Decide)
//   kBackoff     a call failed with a transient error: wait until the backoff ends (100 ms
//                doubling to 2 s), then
//   kReregister  register again (the coordinator may be a new one, restarted on the address)
//                and, once that succeeds, kUp with every renewal (the agent's part) and result
//                due at once.
//
// When to talk (kUp): at once when a worker is starving (free with nothing queued), the queue
// holds fewer leases than live workers, a renewal (CommSnapshot::renew_due) or the 1 s poll is
// due, the agent is ending,
// or there are results while the coordinator has no more work to hand out (the end of the job
// waits for them). Otherwise a result or a lease request waits up to kBatchWindow for company.
// Waits are event-driven: Decide never returns a wait that ends in the past, so the loop sleeps
// on its condition variable until the earliest future deadline or a wake-up.
// With short attempts the queue is also refilled below refill_below (3/4 of what it keeps).
#pragma once

#include <chrono>
#include <limits>
#include <optional>
#include <string>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"

namespace parallelrun::rt {

// Why the agent is ending; kNone while it runs.
enum class Ending { kNone, kDone, kCoordinatorStop, kSignal, kFatal };

// The coordinator gave less than asked and no retry_after_ms: ask again after this.
inline constexpr std::chrono::milliseconds kNoWorkRetry{250};
// With nothing else to say, the agent still asks this often, to hear `done`, `stop` and cancels.
inline constexpr std::chrono::seconds kPollInterval{1};
inline constexpr std::chrono::milliseconds kMinBackoff{100};
inline constexpr std::chrono::milliseconds kMaxBackoff{2000};
// The longest single wait of the communication loop (a safety net; every wake-up has a cause).
inline constexpr std::chrono::seconds kMaxWait{5};
// How long a result or a lease request may wait for company when no worker is short of work
// (the queue then still holds a lease per worker; what triggers most rounds is the queue running
// low, so a round carries about as many results as there are workers).
inline constexpr std::chrono::milliseconds kBatchWindow{500};
// After Stop(): how long running attempts may go on, then how long reporting may take.
inline constexpr std::chrono::seconds kStopGrace{10};
inline constexpr std::chrono::seconds kStopFlush{5};

// What the loop sees of the agent at one instant (taken under the agent's lock).
struct CommSnapshot {
  SteadyTime now{};
  Ending ending = Ending::kNone;
  bool kill_all = false;       // every worker is being killed (stop grace over, stop, fatal)
  SteadyTime stop_deadline{};  // after Stop(): when running attempts are killed
  int slots_running = 0;       // slot threads not yet ended
  int live = 0;                // workers ready to run
  int running = 0;             // attempts running
  int queued = 0;              // leases waiting for a worker
  int want = 0;                // leases to ask for (0 while ending)
  int refill_below = 0;        // short of work below this many queued (at least `live`)
  int unacked = 0;             // results kept until the coordinator names them
  bool results_due = false;    // some result is due to be sent now
  std::optional<SteadyTime> next_result_send;  // the earliest later send of a kept result
  bool events = false;                         // worker events to send
  bool released = false;                       // leases to give back
  bool worker_freed = false;                   // an attempt ended since the last lease call
  // When the oldest renewal of a held lease (running or queued) is renew_interval old: a lease
  // call is due then (it renews what is due; see Agent::Impl::RenewalsDueLocked). None: no lease
  // held.
  std::optional<SteadyTime> renew_due;
};

struct CommDecision {
  enum class Kind {
    kWait,           // sleep until `until` or a wake-up
    kRegisterAgain,  // the coordinator was unreachable: register again first
    kTalk,           // Lease (when `ask`), then Report (when `report`)
    kFinish,         // everything said: send the last events (best effort) and end
    kAbandon,        // after Stop(): the flush time is over with results not accepted
  };
  Kind kind = Kind::kWait;
  SteadyTime until{};
  bool report = false;
  bool ask = false;
  // kWait: what may end the wait before `until` (everything else that happens meanwhile is
  // decided on the next wake-up with the same outcome, so it need not wake the loop): a worker
  // taking a lease that leaves fewer than `wake_queue_below` queued, and (when wake_on_result) an
  // attempt ending. Worker events, leases given back, and the agent ending always wake it.
  int wake_queue_below = std::numeric_limits<int>::max();
  bool wake_on_result = true;
};

// What a failed call means.
enum class FailureVerdict {
  kRetry,               // keep everything, back off, register again
  kJobOver,             // the coordinator has ended: the job is over (exit 0)
  kRejected,            // the coordinator rejected the agent (exit 1)
  kAbandonAfterStop,    // after the coordinator's stop: results not worth waiting for
  kUnreachableTooLong,  // unreachable for longer than the limit (exit 1)
};

class CommState {
 public:
  enum class Link { kUp, kBackoff, kReregister };

  // unreachable_limit_s: how long the coordinator may be away after registration;
  // max_connect_s bounds it once the coordinator said `done`.
  CommState(SteadyTime now, int unreachable_limit_s, int max_connect_s);

  CommDecision Decide(const CommSnapshot& s);

  // A talk succeeded (every call made). `asked`: the lease call was made.
  void OnTalked(SteadyTime now, bool asked);
  // The lease call's answer: how many were asked, how many came, the coordinator's retry hint.
  void OnLeaseAnswer(SteadyTime now, int asked, int got, int retry_after_ms);
  // A call failed. `coordinator_ended`: it is known to have ended (said done/stop, or wrote the
  // job's result since this agent registered). `first` is set when this starts an outage.
  FailureVerdict OnFailure(const Status& failure, SteadyTime now, Ending ending,
                           bool coordinator_ended, bool* first);
  void OnRegisteredAgain(SteadyTime now);

  Link link() const { return link_; }
  SteadyTime unreachable_since() const { return unreachable_since_; }
  // The limit OnFailure applied last (for the log line of kUnreachableTooLong).
  int unreachable_limit_applied() const { return limit_applied_; }
  std::chrono::milliseconds backoff() const { return backoff_; }
  // The coordinator has no more work right now (its last answer gave less than asked).
  bool draining() const { return draining_; }

 private:
  CommDecision Wait(const CommSnapshot& s) const;

  const int unreachable_limit_s_;
  const int max_connect_s_;
  Link link_ = Link::kUp;
  SteadyTime unreachable_since_{};
  std::chrono::milliseconds backoff_ = kMinBackoff;
  SteadyTime backoff_until_{};
  int limit_applied_ = 0;
  std::optional<SteadyTime> pending_since_;  // something has been waiting to be sent since
  SteadyTime lease_not_before_{};
  SteadyTime next_poll_{};
  bool draining_ = false;
};

// Transient: worth retrying (unreachable, timeout, 5xx).
bool IsTransient(const Status& s);

}  // namespace parallelrun::rt
