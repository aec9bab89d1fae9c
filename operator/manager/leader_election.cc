#include "operator/manager/leader_election.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <random>
#include <thread>

#include "runtime/base/mutex.h"

namespace parallelrun::op::manager {
namespace {

using nlohmann::json;
using Steady = std::chrono::steady_clock;

// A wait re-reads its clock at least this often (a clock a test moves by hand does not wake it).
constexpr auto kClockRecheck = std::chrono::milliseconds(100);
// Between attempts to release the Lease on Stop().
constexpr auto kReleaseRetry = std::chrono::milliseconds(100);

int64_t CeilSeconds(std::chrono::milliseconds d) {
  int64_t s = (d.count() + 999) / 1000;
  return s < 1 ? 1 : s;
}

}  // namespace

std::string FormatMicroTime(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ", buf, static_cast<long long>(us % 1000000));
  return out;
}

std::string DefaultIdentity() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof host, "unknown");
  }
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int> hex(0, 15);
  std::string uuid;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) uuid += '-';
    int v = hex(rng);
    if (i == 12) v = 4;
    if (i == 16) v = 8 | (v & 3);
    uuid += "0123456789abcdef"[v];
  }
  return std::string(host) + "_" + uuid;
}

struct LeaderElector::Impl {
  kube::Client& client;
  LeaderElectionConfig config;
  LeaderCallbacks callbacks;
  const rt::Clock& clock;
  std::mt19937 rng{std::random_device{}()};

  mutable rt::Mutex mu;
  rt::CondVar cv;
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  std::string leader GUARDED_BY(mu);  // last observed holder
  std::atomic<bool> leading{false};
  std::thread thread;  // started once by Start (under mu); joined by Stop after `stopping`

  // Only the elector thread touches these.
  json observed_spec;  // the Lease's spec as last read or written
  rt::SteadyTime observed_time;

  Impl(kube::Client& c, LeaderElectionConfig cfg, LeaderCallbacks cb)
      : client(c),
        config(std::move(cfg)),
        callbacks(std::move(cb)),
        clock(config.clock != nullptr ? *config.clock : rt::RealClock::Get()) {
    if (config.identity.empty()) config.identity = DefaultIdentity();
  }

  bool Stopping() const EXCLUDES(mu) {
    rt::MutexLock lock(mu);
    return stopping;
  }

  std::string Now() const { return FormatMicroTime(clock.Now()); }

  // Waits until the clock reaches `until`, or until Stop(); true when stopping. Callers count
  // from when their attempt began, not from when they got here, so a thread that runs late does
  // not shift the schedule.
  bool SleepUntil(rt::SteadyTime until) EXCLUDES(mu) {
    rt::MutexLock lock(mu);
    while (!stopping) {
      const auto gap = until - clock.SteadyNow();
      if (gap <= Steady::duration::zero()) return false;
      cv.WaitUntil(mu, Steady::now() + std::min<Steady::duration>(gap, kClockRecheck));
    }
    return true;
  }

  // d plus up to `factor` × d (wait.Jitter): spreads replicas that start together.
  std::chrono::milliseconds Jittered(std::chrono::milliseconds d, double factor) {
    double f = std::uniform_real_distribution<double>(0.0, factor)(rng);
    return d + std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * f));
  }

  void Observe(const json& spec, const std::string& holder) {
    if (spec != observed_spec) {
      observed_spec = spec;
      observed_time = clock.SteadyNow();
    }
    bool changed;
    {
      rt::MutexLock lock(mu);
      changed = leader != holder;
      leader = holder;
    }
    if (changed && !holder.empty()) {
      spdlog::info("leader election {}/{}: leader is now {}", config.ns, config.name, holder);
      if (callbacks.on_new_leader) callbacks.on_new_leader(holder);
    }
  }

  json Spec(const std::string& holder, int64_t duration_s, const std::string& acquired,
            const std::string& renewed, int64_t transitions) const {
    return {{"holderIdentity", holder},
            {"leaseDurationSeconds", duration_s},
            {"acquireTime", acquired},
            {"renewTime", renewed},
            {"leaseTransitions", transitions}};
  }

  bool TryCreate() {
    std::string now = Now();
    json spec = Spec(config.identity, CeilSeconds(config.lease_duration), now, now, 0);
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", config.name}, {"namespace", config.ns}}},
                  {"spec", spec}};
    auto created = client.Create(kube::resources::kLeases, config.ns, lease);
    if (!created.ok()) {
      if (!kube::IsAlreadyExists(created.status())) {
        spdlog::warn("leader election {}/{}: cannot create lease: {}", config.ns, config.name,
                     created.status().ToString());
      }
      return false;
    }
    Observe((*created)["spec"], config.identity);
    return true;
  }

  // One attempt of client-go's tryAcquireOrRenew.
  bool TryAcquireOrRenew() {
    auto got = client.Get(kube::resources::kLeases, config.ns, config.name);
    if (!got.ok()) {
      if (kube::IsNotFound(got.status())) return TryCreate();
      spdlog::warn("leader election {}/{}: cannot read lease: {}", config.ns, config.name,
                   got.status().ToString());
      return false;
    }
    json lease = std::move(*got);
    json spec = lease.value("spec", json::object());
    std::string holder = spec.value("holderIdentity", "");
    Observe(spec, holder);
    auto valid_for = std::chrono::seconds(spec.value("leaseDurationSeconds", int64_t{0}));
    if (!holder.empty() && holder != config.identity &&
        clock.SteadyNow() < observed_time + valid_for) {
      return false;  // held by someone else and not expired
    }
    std::string now = Now();
    bool ours = holder == config.identity;
    int64_t transitions = spec.value("leaseTransitions", int64_t{0}) + (ours ? 0 : 1);
    lease["spec"] = Spec(config.identity, CeilSeconds(config.lease_duration),
                         ours ? spec.value("acquireTime", now) : now, now, transitions);
    auto updated = client.Update(kube::resources::kLeases, config.ns, lease);
    if (!updated.ok()) {
      if (!kube::IsConflict(updated.status())) {
        spdlog::warn("leader election {}/{}: cannot update lease: {}", config.ns, config.name,
                     updated.status().ToString());
      }
      return false;
    }
    Observe((*updated)["spec"], config.identity);
    return true;
  }

  // One release attempt: true when done (released, or no longer ours), false to retry.
  bool TryRelease(std::string* error) {
    auto got = client.Get(kube::resources::kLeases, config.ns, config.name);
    if (!got.ok()) {
      *error = got.status().ToString();
      return kube::IsNotFound(got.status());
    }
    json lease = std::move(*got);
    json spec = lease.value("spec", json::object());
    if (spec.value("holderIdentity", "") != config.identity) return true;
    std::string now = Now();
    lease["spec"] = Spec("", 1, now, now, spec.value("leaseTransitions", int64_t{0}));
    auto updated = client.Update(kube::resources::kLeases, config.ns, lease);
    if (!updated.ok()) {
      *error = updated.status().ToString();
      return false;
    }
    spdlog::info("leader election {}/{}: released", config.ns, config.name);
    return true;
  }

  // Gives the Lease up if we still hold it, so the next replica need not wait for expiry.
  // Retries for one retry_period (a conflict, a dropped connection), counted in attempts 100 ms
  // apart, so a stopped clock cannot hold Stop() up; Stop() is already set, so the waits are
  // plain sleeps.
  void Release() {
    const int64_t attempts = std::max<int64_t>(1, config.retry_period / kReleaseRetry);
    std::string error;
    for (int64_t attempt = 1; !TryRelease(&error); ++attempt) {
      if (attempt >= attempts) {
        spdlog::warn(
            "leader election {}/{}: cannot release lease ({}); the next leader waits "
            "for it to expire",
            config.ns, config.name, error);
        return;
      }
      std::this_thread::sleep_for(kReleaseRetry);
    }
  }

  // Keeps renewing; false when a renewal did not succeed within renew_deadline.
  // Renews every retry_period from `renewed` (when the Lease was last written); false when no
  // renewal succeeded for renew_deadline since then. Every time is the clock's at the start of
  // an attempt, as the Lease's holder is judged by the others.
  bool RenewLoop(rt::SteadyTime renewed) {
    while (!Stopping()) {
      const rt::SteadyTime attempt = clock.SteadyNow();
      if (TryAcquireOrRenew()) {
        renewed = attempt;
        if (SleepUntil(attempt + config.retry_period)) return true;
        continue;
      }
      const rt::SteadyTime deadline = renewed + config.renew_deadline;
      if (clock.SteadyNow() >= deadline) return Stopping();
      if (SleepUntil(std::min(attempt + config.retry_period, deadline))) return true;
    }
    return true;
  }

  void Run() {
    rt::SteadyTime attempt = clock.SteadyNow();
    while (!TryAcquireOrRenew()) {
      if (SleepUntil(attempt + Jittered(config.acquire_period, 0.5))) return;
      attempt = clock.SteadyNow();
    }
    if (Stopping()) {
      Release();
      return;
    }
    leading = true;
    spdlog::info("leader election {}/{}: {} is leading", config.ns, config.name, config.identity);
    if (callbacks.on_started_leading) callbacks.on_started_leading();
    bool kept = RenewLoop(attempt);
    if (kept) {
      Release();
      leading = false;
      return;
    }
    leading = false;
    spdlog::error("leader election {}/{}: lost the lease (no renewal within {} ms)", config.ns,
                  config.name, config.renew_deadline.count());
    if (callbacks.on_lost) callbacks.on_lost();
  }
};

LeaderElector::LeaderElector(kube::Client& client, LeaderElectionConfig config,
                             LeaderCallbacks callbacks)
    : impl_(std::make_unique<Impl>(client, std::move(config), std::move(callbacks))) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  rt::MutexLock lock(impl_->mu);
  if (impl_->started || impl_->stopping) return;
  impl_->started = true;
  impl_->thread = std::thread([this] { impl_->Run(); });
}

void LeaderElector::Stop() {
  {
    rt::MutexLock lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.NotifyAll();
  }
  if (impl_->thread.joinable() && impl_->thread.get_id() != std::this_thread::get_id()) {
    impl_->thread.join();
  }
}

bool LeaderElector::IsLeader() const { return impl_->leading; }

std::string LeaderElector::Leader() const {
  rt::MutexLock lock(impl_->mu);
  return impl_->leader;
}

const std::string& LeaderElector::identity() const { return impl_->config.identity; }

}  // namespace parallelrun::op::manager
