// Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection package
// does it, so several operator replicas can run and only one reconciles.
//
// Guarantees:
// - Acquires the Lease when it does not exist, when its holderIdentity is empty (released), when
//   it is held by this identity, or when its record has not changed for its
//   leaseDurationSeconds as observed on this process's monotonic clock (no clock comparison
//   between machines). Every write is conditional on the resourceVersion read, so two electors
//   never both succeed.
// - While leading, renews every retry_period; when no renewal succeeds for renew_deadline after
//   the last one that did (both from the start of an attempt, on the clock), leadership is lost:
//   IsLeader() turns false and on_lost runs once. The elector then stops; the operator is expected
//   to exit so a fresh process competes again (client-go's contract).
// - Stop() while leading releases the Lease (holderIdentity "", leaseDurationSeconds 1,
//   renewTime and acquireTime now; client-go's ReleaseOnCancel) so another replica takes over
//   within its acquire_period. A failed release is retried for up to one retry_period (a
//   conflict re-reads the Lease). on_lost is not called.
// - Uses only get, create and update on leases (the RBAC the chart grants).
// Caveats: renew_deadline must be shorter than lease_duration, or another replica may take the
// Lease before this one notices it lost it. Callbacks run on the elector's thread and must return
// promptly (a slow on_started_leading delays renewals); they must not call Stop().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "operator/kube/client.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::manager {

struct LeaderElectionConfig {
  std::string ns;        // namespace of the Lease
  std::string name;      // Lease name (--leader-election-id)
  std::string identity;  // empty: DefaultIdentity()
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};  // between renewals while leading
  // Between attempts to acquire while another replica holds the Lease, jittered up to +50 %.
  // Shorter than client-go's (retry_period jittered up to +120 %, so up to 4.4 s) so that a
  // standby notices a released Lease within 1.5 s: a stopping leader hands over in under 3 s.
  // One GET per period per standby.
  std::chrono::milliseconds acquire_period{1000};
  // Where every period above is measured, and the Lease's timestamps read (SteadyNow, Now);
  // nullptr: the real clock. A wait re-reads the clock at least every 100 ms of real time, so a
  // test that moves its clock by hand sees the elector act within that without sleeping.
  const rt::Clock* clock = nullptr;
};

struct LeaderCallbacks {
  std::function<void()> on_started_leading;
  std::function<void()> on_lost;  // renewal failed for renew_deadline
  std::function<void(const std::string& identity)> on_new_leader;  // any holder, ourselves too
};

class LeaderElector {
 public:
  LeaderElector(kube::Client& client, LeaderElectionConfig config, LeaderCallbacks callbacks);
  ~LeaderElector();  // Stop()s
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void Start();  // competes on a thread of its own
  void Stop();   // releases the Lease if held, then joins; idempotent

  bool IsLeader() const;
  std::string Leader() const;  // the holder last observed ("" when none)
  const std::string& identity() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "<hostname>_<random uuid>": unique per process, readable in `kubectl get lease`.
std::string DefaultIdentity();

// Lease timestamps (metav1.MicroTime): "2026-11-23T11:05:08.123456Z".
std::string FormatMicroTime(std::chrono::system_clock::time_point t);

}  // namespace parallelrun::op::manager
