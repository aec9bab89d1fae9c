#include "operator/manager/manager.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace parallelrun::op::manager {

using Steady = std::chrono::steady_clock;

struct Manager::Impl {
  std::vector<informer::Informer*> caches;
  ManagerHooks hooks;
  std::unique_ptr<LeaderElector> elector;

  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  bool elected = false;
  std::atomic<bool> synced{false};
  std::atomic<bool> leading{false};
  std::atomic<bool> lost{false};
  std::atomic<bool> stop_begun{false};
  std::thread thread;

  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu);
    return stopping;
  }

  // Every cache synced; false when stopping first.
  bool WaitForCaches() {
    auto next_log = Steady::now() + std::chrono::seconds(5);
    for (informer::Informer* cache : caches) {
      while (!cache->WaitForSync(std::chrono::milliseconds(200))) {
        if (Stopping()) return false;
        if (Steady::now() >= next_log) {
          spdlog::info("waiting for the informer caches to sync");
          next_log = Steady::now() + std::chrono::seconds(5);
        }
      }
    }
    return true;
  }

  void Run() {
    if (!WaitForCaches()) return;
    synced = true;
    spdlog::info("caches synced: ready");
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [this] { return elected || stopping; });
      if (stopping) return;
      leading = true;
    }
    if (hooks.start_leading) hooks.start_leading();
  }
};

Manager::Manager(kube::Client& client, std::vector<informer::Informer*> caches,
                 ManagerOptions options, ManagerHooks hooks)
    : impl_(std::make_unique<Impl>()) {
  impl_->caches = std::move(caches);
  impl_->hooks = std::move(hooks);
  if (!options.leader_election) {
    impl_->elected = true;
    return;
  }
  Impl* impl = impl_.get();
  impl_->elector = std::make_unique<LeaderElector>(
      client, *options.leader_election,
      LeaderCallbacks{.on_started_leading =
                          [impl] {
                            std::lock_guard<std::mutex> lock(impl->mu);
                            impl->elected = true;
                            impl->cv.notify_all();
                          },
                      .on_lost =
                          [impl] {
                            impl->lost = true;
                            if (impl->hooks.lost_lease) impl->hooks.lost_lease();
                          },
                      .on_new_leader = nullptr});
}

Manager::~Manager() { Stop(); }

void Manager::Start() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->started || impl_->stopping) return;
    impl_->started = true;
  }
  for (informer::Informer* cache : impl_->caches) cache->Start();
  if (impl_->elector) impl_->elector->Start();
  impl_->thread = std::thread([impl = impl_.get()] { impl->Run(); });
}

void Manager::Stop() {
  if (impl_->stop_begun.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  // Work first, then the Lease: the next leader must never overlap with our reconciles.
  if (impl_->leading.exchange(false) && impl_->hooks.stop_leading) impl_->hooks.stop_leading();
  if (impl_->elector) impl_->elector->Stop();
  for (informer::Informer* cache : impl_->caches) cache->Stop();
}

bool Manager::Ready() const { return impl_->synced && !impl_->stop_begun; }

bool Manager::Healthy() const { return !impl_->lost; }

bool Manager::Leading() const { return impl_->leading; }

std::string Manager::Leader() const { return impl_->elector ? impl_->elector->Leader() : ""; }

}  // namespace parallelrun::op::manager
