// The operator process's life cycle, as controller-runtime's manager runs it: caches on every
// replica, the controller on the leader only, readiness independent of leadership.
//
// Guarantees:
// - Start() starts every cache (informer) at once, on every replica, leader or not, and competes
//   for the Lease when leader election is configured. A standby thus has warm caches and
//   reconciles as soon as it takes over.
// - start_leading runs once, on the manager's thread, when this replica leads and every cache
//   has synced (with leader election off: as soon as they have synced).
// - Ready() is true once every cache has synced, until Stop() begins. It never depends on
//   leadership: with several replicas all are Ready, so `kubectl rollout status` and
//   `helm install --wait` complete (a standby's readiness means "can take over now").
// - Healthy() is true unless the Lease was lost and the process did not exit (lost_lease
//   returned): such a replica never leads again, and the liveness probe restarts it.
// - Stop() (idempotent) runs stop_leading if start_leading ran (in-flight work must end there),
//   then releases the Lease (the standby takes over within its acquire period), then stops the
//   caches. Readiness turns false first. The Lease is never released while work may still run.
// Caveats: hooks must not call Stop(). start_leading should return promptly (it starts
// workers); lost_lease runs on the elector's thread and is expected to end the process
// (client-go's contract: a fresh process competes again, from empty caches).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "operator/informer/informer.h"
#include "operator/kube/client.h"
#include "operator/manager/leader_election.h"

namespace parallelrun::op::manager {

struct ManagerHooks {
  std::function<void()> start_leading;  // caches synced and leading: start the controller
  std::function<void()> stop_leading;   // stop the controller; returns when no work runs
  std::function<void()> lost_lease;     // renewal failed: end the process
};

struct ManagerOptions {
  std::optional<LeaderElectionConfig> leader_election;  // nullopt: lead without a Lease
};

class Manager {
 public:
  Manager(kube::Client& client, std::vector<informer::Informer*> caches, ManagerOptions options,
          ManagerHooks hooks);
  ~Manager();  // Stop()s
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  void Start();
  void Stop();

  bool Ready() const;
  bool Healthy() const;
  bool Leading() const;        // start_leading ran and Stop() has not
  std::string Leader() const;  // the Lease's holder as last seen ("" without leader election)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::op::manager
