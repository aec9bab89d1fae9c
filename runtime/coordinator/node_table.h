// NodeTable: the nodes (agents) a coordinator knows: who registered, when each was last heard
// from, which gave up starting workers, which were told that the job ended; and the attempts held
// for nodes since a coordinator restart (an agent that outlived the previous coordinator reclaims
// them when it registers again). With JobState it answers the fencing question: may this node
// report (or renew) this attempt?
//
// Not thread-safe: the coordinator keeps it under its lock. Node indexes are dense and stable
// (JobState records leases by index).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/base/time_util.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

// An attempt that was running when the previous coordinator ended.
struct HeldAttempt {
  int attempt = 0;
  std::string node;
};

class NodeTable {
 public:
  struct Registration {
    uint32_t index = 0;
    bool known = false;      // registered before (with this coordinator)
    bool restarted = false;  // known, with another agent pid: a new agent
  };
  // A node registers (again): a new agent (another pid) may start workers again after its
  // predecessor gave up.
  Registration Register(const std::string& name, int64_t pid, SteadyTime now);
  // The node's index, adding it when new; marks it heard from at `now`.
  uint32_t Touch(const std::string& name, SteadyTime now);
  const std::string& name(uint32_t index) const { return nodes_[index].name; }
  bool empty() const { return nodes_.empty(); }

  // The node stopped starting workers; true the first time.
  bool MarkGaveUp(uint32_t index);
  int64_t GaveUpCount() const { return gave_up_; }
  void MarkToldEnd(uint32_t index) { nodes_[index].told_end = true; }
  // Nodes heard from within `period` before `now`.
  int64_t ReadyCount(SteadyTime now, std::chrono::seconds period) const;
  // Of those, the ones not told yet that the job ended.
  std::vector<std::string> NotToldTheEnd(SteadyTime now, std::chrono::seconds period) const;

  // After a restart: holds each open attempt in `state` for its node until `until`. Returns how
  // many are held.
  size_t Hold(JobState& state, const std::unordered_map<int64_t, HeldAttempt>& open,
              SteadyTime until);
  bool holding() const { return !held_.empty(); }
  struct Reclaim {
    int kept = 0;                              // still run by the node: its again
    std::vector<protocol::LeaseRef> released;  // no longer on the node: queued again
  };
  // Node `name` (index `index`) registered naming the attempts it `has`: what was held for it
  // and it still has is renewed for it until `expiry`; the rest is given back in `state` (no try
  // counted). Its holds end either way.
  Reclaim ReclaimFor(JobState& state, const std::string& name, uint32_t index,
                     const std::vector<protocol::LeaseRef>& has, SteadyTime expiry);
  // The hold of (id, attempt) ends: its node renewed it or reported it.
  void Unhold(int64_t id, int attempt);
  // The hold of mini-batch `id` ended with its lease (not reclaimed in time).
  void DropHold(int64_t id) { held_.erase(id); }

  // The name of the node running `a` (a held attempt: the node it is held for).
  const std::string& NodeOf(const RunningAttempt& a) const;
  // Fencing: empty when node `name` (index `index`) holds live attempt (id, attempt) of `state`,
  // else why not.
  std::string Fence(const JobState& state, int64_t id, int attempt, uint32_t index,
                    const std::string& name) const;

 private:
  struct Node {
    std::string name;
    int64_t pid = 0;
    SteadyTime last_seen;
    bool gave_up = false;
    bool told_end = false;  // answered with done or stop after the job ended
  };
  std::vector<Node> nodes_;
  int64_t gave_up_ = 0;  // nodes with gave_up set (asked on every results request)
  std::unordered_map<std::string, uint32_t> index_;
  // By mini-batch: an entry may outlive its hold in JobState (it is then ignored).
  std::unordered_map<int64_t, HeldAttempt> held_;
};

}  // namespace parallelrun::rt
