// The operator process's life cycle, as controller-runtime's manager runs it: runnables registered
// in groups, caches on every replica, the controllers on the leader only, readiness independent of
// leadership, and an ordered stop.
//
// Groups, in start order (Add() keeps the order within a group):
// - kServer: endpoints and the admission webhook. Started at once by Start(), on every replica;
//   a server that cannot start fails Start() (the process exits 1). Stopped last, so the probes
//   keep answering (not ready) while the rest stops.
// - kCache: informers. Started by Start() on every replica, leader or not: a standby has warm
//   caches and reconciles as soon as it takes over. Ready() waits for every one of them.
// - kLeader: controllers. Started in order, on the manager's thread, once every cache is Ready()
//   and this replica holds the Lease (with leader election off: once the caches are Ready()).
//
// Guarantees:
// - Ready() is true once every cache and every server is Ready(), until Stop() begins. It never
//   depends on leadership: with several replicas all are Ready, so `kubectl rollout status` and
//   `helm install --wait` complete (a standby's readiness means "can take over now").
// - Healthy() is true unless the Lease was lost (the process is expected to exit then: such a
//   replica never leads again, and the liveness probe restarts it) or a leader runnable failed to
//   start.
// - Stop() (idempotent) turns readiness off, stops the leader runnables in reverse order (in-flight
//   work ends there), then releases the Lease (the standby takes over within its acquire period),
//   then stops the caches and the servers in reverse order. The Lease is never released while work
//   may still run. Only runnables whose Start() succeeded are stopped.
// Caveats: runnables must not call the manager's Start()/Stop(). A Start() should return promptly
// (it starts threads); on_lost_lease runs on the elector's thread and is expected to end the
// process (client-go's contract: a fresh process competes again, from empty caches).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "operator/informer/informer.h"
#include "operator/kube/client.h"
#include "operator/manager/leader_election.h"
#include "runtime/base/status.h"

namespace parallelrun::op::manager {

// Something the manager starts and stops.
class Runnable {
 public:
  virtual ~Runnable() = default;
  virtual std::string Name() const = 0;  // for logs
  // Starts the work (threads, listeners) and returns; an error names what failed.
  virtual rt::Status Start() = 0;
  // Ends the work started; returns when it has ended. Called once, after a successful Start().
  virtual void Stop() = 0;
  // A cache: synced. A server: answers. Readiness waits for every cache and server.
  virtual bool Ready() const { return true; }
};

enum class Group { kServer, kCache, kLeader };

// An informer as a kCache runnable: Ready() once its first list reached the handlers.
class InformerRunnable : public Runnable {
 public:
  InformerRunnable(std::string name, informer::Informer& informer)
      : name_(std::move(name)), informer_(informer) {}
  std::string Name() const override { return name_; }
  rt::Status Start() override;
  void Stop() override { informer_.Stop(); }
  bool Ready() const override { return informer_.HasSynced(); }

 private:
  std::string name_;
  informer::Informer& informer_;
};

struct ManagerOptions {
  std::optional<LeaderElectionConfig> leader_election;  // nullopt: lead without a Lease
  std::function<void()> on_lost_lease;                  // renewal failed: end the process
};

class Manager {
 public:
  Manager(kube::Client& client, ManagerOptions options);
  ~Manager();  // Stop()s
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Before Start(); the runnable must outlive the manager's Stop().
  void Add(Group group, Runnable* runnable);
  // Starts the servers, then the caches, competes for the Lease, and returns. When a server or
  // cache fails to start, those already started are stopped and the error names the runnable.
  rt::Status Start();
  void Stop();

  bool Ready() const;
  bool Healthy() const;
  bool Leading() const;        // the leader runnables started and Stop() has not begun
  std::string Leader() const;  // the Lease's holder as last seen ("" without leader election)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::op::manager
