#include "operator/manager/manager.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>
#include <vector>

#include "runtime/base/mutex.h"

namespace parallelrun::op::manager {
namespace {

using Steady = std::chrono::steady_clock;

// How often the manager's thread looks at the caches while they sync, and logs that it waits.
constexpr auto kSyncPoll = std::chrono::milliseconds(20);
constexpr auto kSyncLogEvery = std::chrono::seconds(5);

// Stops `started` in reverse order.
void StopAll(const std::vector<Runnable*>& started) {
  for (auto it = started.rbegin(); it != started.rend(); ++it) (*it)->Stop();
}

}  // namespace

rt::Status InformerRunnable::Start() {
  informer_.Start();
  return rt::Status::Ok();
}

struct Manager::Impl {
  std::vector<Runnable*> servers, caches, leaders;  // as added; fixed once Start() ran
  ManagerOptions options;
  std::unique_ptr<LeaderElector> elector;

  mutable rt::Mutex mu;
  rt::CondVar cv;
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  bool elected GUARDED_BY(mu) = false;
  std::atomic<bool> synced{false};
  std::atomic<bool> leading{false};
  std::atomic<bool> lost{false};
  std::atomic<bool> failed{false};  // a leader runnable did not start
  std::atomic<bool> stop_begun{false};
  std::thread thread;  // Run(); started by Start() (under mu), joined by Stop() after `stopping`
  // Written by Start() before the thread starts, or by the thread; read by Stop() after the join.
  std::vector<Runnable*> servers_started, caches_started, leaders_started;

  bool CachesReady() const {
    for (const Runnable* cache : caches) {
      if (!cache->Ready()) return false;
    }
    return true;
  }

  // Every cache Ready(); false when stopping first.
  bool WaitForCaches() EXCLUDES(mu) {
    auto next_log = Steady::now() + kSyncLogEvery;
    rt::MutexLock lock(mu);
    while (!CachesReady()) {
      if (cv.WaitFor(mu, kSyncPoll, [this]() REQUIRES(mu) { return stopping; })) return false;
      if (Steady::now() >= next_log) {
        spdlog::info("waiting for the informer caches to sync");
        next_log = Steady::now() + kSyncLogEvery;
      }
    }
    return !stopping;
  }

  // Starts the leader runnables in order, unless Stop() begins first.
  void StartLeaders() EXCLUDES(mu) {
    for (Runnable* r : leaders) {
      {
        rt::MutexLock lock(mu);
        if (stopping) return;
      }
      if (rt::Status s = r->Start(); !s.ok()) {
        spdlog::error("cannot start {}: {}; this replica reports unhealthy", r->Name(),
                      s.ToString());
        failed = true;
        return;
      }
      leaders_started.push_back(r);
    }
  }

  void Run() EXCLUDES(mu) {
    if (!WaitForCaches()) return;
    synced = true;
    spdlog::info("caches synced: ready");
    {
      rt::MutexLock lock(mu);
      cv.Wait(mu, [this]() REQUIRES(mu) { return elected || stopping; });
      if (stopping) return;
      leading = true;
    }
    StartLeaders();
  }

  // Starts `group` in order into `started`; on an error stops what this call started.
  static rt::Status StartGroup(const std::vector<Runnable*>& group,
                               std::vector<Runnable*>& started) {
    for (Runnable* r : group) {
      if (rt::Status s = r->Start(); !s.ok()) {
        StopAll(started);
        started.clear();
        return rt::Status(s.code(), r->Name() + ": " + s.message());
      }
      started.push_back(r);
    }
    return rt::Status::Ok();
  }

  void OnElected() EXCLUDES(mu) {
    rt::MutexLock lock(mu);
    elected = true;
    cv.NotifyAll();
  }
};

Manager::Manager(kube::Client& client, ManagerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  if (!impl_->options.leader_election) {
    rt::MutexLock lock(impl_->mu);
    impl_->elected = true;
    return;
  }
  Impl* impl = impl_.get();
  impl_->elector = std::make_unique<LeaderElector>(
      client, *impl_->options.leader_election,
      LeaderCallbacks{.on_started_leading = [impl] { impl->OnElected(); },
                      .on_lost =
                          [impl] {
                            impl->lost = true;
                            if (impl->options.on_lost_lease) impl->options.on_lost_lease();
                          },
                      .on_new_leader = nullptr});
}

Manager::~Manager() { Stop(); }

void Manager::Add(Group group, Runnable* runnable) {
  rt::MutexLock lock(impl_->mu);
  if (impl_->started) {
    spdlog::error("manager: {} added after Start(); ignored", runnable->Name());
    return;
  }
  switch (group) {
    case Group::kServer:
      impl_->servers.push_back(runnable);
      break;
    case Group::kCache:
      impl_->caches.push_back(runnable);
      break;
    case Group::kLeader:
      impl_->leaders.push_back(runnable);
      break;
  }
}

rt::Status Manager::Start() {
  Impl& m = *impl_;
  rt::MutexLock lock(m.mu);
  if (m.started || m.stopping) return rt::FailedPreconditionError("manager: started before");
  m.started = true;
  PR_RETURN_IF_ERROR(Impl::StartGroup(m.servers, m.servers_started));
  if (rt::Status s = Impl::StartGroup(m.caches, m.caches_started); !s.ok()) {
    StopAll(m.servers_started);
    m.servers_started.clear();
    return s;
  }
  if (m.elector) m.elector->Start();
  m.thread = std::thread([&m] { m.Run(); });
  return rt::Status::Ok();
}

void Manager::Stop() {
  Impl& m = *impl_;
  if (m.stop_begun.exchange(true)) return;
  {
    rt::MutexLock lock(m.mu);
    m.stopping = true;
    m.cv.NotifyAll();
  }
  if (m.thread.joinable()) m.thread.join();
  // Work first, then the Lease: the next leader must never overlap with our reconciles.
  m.leading = false;
  StopAll(m.leaders_started);
  if (m.elector) m.elector->Stop();
  StopAll(m.caches_started);
  StopAll(m.servers_started);
  m.leaders_started.clear();
  m.caches_started.clear();
  m.servers_started.clear();
}

bool Manager::Ready() const {
  if (!impl_->synced || impl_->stop_begun) return false;
  for (const Runnable* server : impl_->servers) {
    if (!server->Ready()) return false;
  }
  return true;
}

bool Manager::Healthy() const { return !impl_->lost && !impl_->failed; }

bool Manager::Leading() const { return impl_->leading && !impl_->stop_begun; }

std::string Manager::Leader() const { return impl_->elector ? impl_->elector->Leader() : ""; }

}  // namespace parallelrun::op::manager
