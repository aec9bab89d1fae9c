#include "operator/manager/manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "operator/kube/fake_client.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::op::manager {
namespace {

using namespace std::chrono_literals;
using fakes::AdvanceUntil;
using fakes::FakeClock;
using fakes::WaitFor;
using kube::FakeClient;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// What the runnables did, in order: "start:x", "stop:x".
class Journal {
 public:
  void Log(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(line);
  }
  std::vector<std::string> Lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  int Count(const std::string& line) const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count(lines_.begin(), lines_.end(), line));
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// A runnable that logs its calls; Ready() and Start()'s result are set by the test.
class FakeRunnable : public Runnable {
 public:
  FakeRunnable(std::string name, Journal& journal, bool ready = true)
      : name_(std::move(name)), journal_(journal), ready_(ready) {}
  std::string Name() const override { return name_; }
  rt::Status Start() override {
    journal_.Log("start:" + name_);
    return start_result_;
  }
  void Stop() override {
    if (on_stop) on_stop();
    journal_.Log("stop:" + name_);
  }
  bool Ready() const override { return ready_; }

  void SetReady(bool ready) { ready_ = ready; }
  void FailStart(rt::Status s) { start_result_ = std::move(s); }
  std::function<void()> on_stop;

 private:
  std::string name_;
  Journal& journal_;
  std::atomic<bool> ready_;
  rt::Status start_result_ = rt::Status::Ok();
};

// The Lease's holder; "" while there is no Lease.
std::string Holder(FakeClient& c) {
  auto lease = c.Get(kube::resources::kLeases, "ops", "operator");
  return lease.ok() ? (*lease)["spec"].value("holderIdentity", "") : "";
}

// client-go's periods (15 s lease, 10 s renew deadline, 2 s retry) and our 1 s acquire period,
// measured on `clock`.
LeaderElectionConfig Config(const std::string& identity, const rt::Clock* clock) {
  LeaderElectionConfig c;
  c.ns = "ops";
  c.name = "operator";
  c.identity = identity;
  c.clock = clock;
  return c;
}

// One operator replica: a server, a cache and a controller.
struct Replica {
  Journal journal;
  FakeRunnable server{"server", journal};
  FakeRunnable cache{"cache", journal};
  FakeRunnable controller{"controller", journal};
  std::atomic<int> lost{0};
  Manager manager;

  Replica(FakeClient& client, std::optional<LeaderElectionConfig> config)
      : manager(client, {.leader_election = config, .on_lost_lease = [this] { ++lost; }}) {
    manager.Add(Group::kLeader, &controller);
    manager.Add(Group::kCache, &cache);
    manager.Add(Group::kServer, &server);
  }
  bool Started() const { return journal.Count("start:controller") == 1; }
};

TEST(ManagerTest, StartsServersThenCachesThenTheLeaderRunnablesOnceCachesAreReady) {
  FakeClient client({.namespaces = {"ops"}});
  Journal journal;
  FakeRunnable web("webhook", journal), metrics("metrics", journal);
  FakeRunnable jobs("jobs", journal, /*ready=*/false), pods("pods", journal, /*ready=*/false);
  FakeRunnable first("first", journal), second("second", journal);
  Manager m(client, {});
  m.Add(Group::kLeader, &first);
  m.Add(Group::kCache, &jobs);
  m.Add(Group::kServer, &web);
  m.Add(Group::kLeader, &second);
  m.Add(Group::kCache, &pods);
  m.Add(Group::kServer, &metrics);
  ASSERT_TRUE(m.Start().ok());
  EXPECT_THAT(journal.Lines(),
              ElementsAre("start:webhook", "start:metrics", "start:jobs", "start:pods"));
  jobs.SetReady(true);
  EXPECT_FALSE(m.Ready()) << "pods has not synced";
  EXPECT_FALSE(m.Leading());
  pods.SetReady(true);
  ASSERT_TRUE(WaitFor([&] { return journal.Count("start:second") == 1; }));
  EXPECT_TRUE(m.Ready());
  EXPECT_TRUE(m.Leading());
  EXPECT_THAT(journal.Lines(), ElementsAre("start:webhook", "start:metrics", "start:jobs",
                                           "start:pods", "start:first", "start:second"));
  EXPECT_EQ(client.CallCount("get", "leases"), 0) << "no leader election configured";
  journal.Clear();
  m.Stop();
  m.Stop();  // idempotent
  EXPECT_THAT(journal.Lines(), ElementsAre("stop:second", "stop:first", "stop:pods", "stop:jobs",
                                           "stop:metrics", "stop:webhook"));
  EXPECT_FALSE(m.Ready());
  EXPECT_FALSE(m.Leading());
}

TEST(ManagerTest, ReadyWaitsForEveryServer) {
  FakeClient client({.namespaces = {"ops"}});
  Replica r(client, std::nullopt);
  r.server.SetReady(false);
  ASSERT_TRUE(r.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return r.Started(); }));
  EXPECT_FALSE(r.manager.Ready()) << "the webhook does not answer yet";
  r.server.SetReady(true);
  EXPECT_TRUE(r.manager.Ready());
}

TEST(ManagerTest, AServerThatCannotStartFailsStartAndStopsWhatStarted) {
  FakeClient client({.namespaces = {"ops"}});
  Journal journal;
  FakeRunnable ok("ok", journal), bad("bad", journal), cache("cache", journal);
  bad.FailStart(rt::InvalidArgumentError("address in use"));
  Manager m(client, {});
  m.Add(Group::kServer, &ok);
  m.Add(Group::kServer, &bad);
  m.Add(Group::kCache, &cache);
  rt::Status s = m.Start();
  EXPECT_EQ(s.code(), rt::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "bad: address in use");
  EXPECT_THAT(journal.Lines(), ElementsAre("start:ok", "start:bad", "stop:ok"));
  m.Stop();
  EXPECT_EQ(journal.Lines().size(), 3u) << "nothing is stopped twice, nothing unstarted stopped";
  EXPECT_FALSE(m.Start().ok()) << "a manager starts once";
}

TEST(ManagerTest, ACacheThatCannotStartStopsTheServersAndOtherCaches) {
  FakeClient client({.namespaces = {"ops"}});
  Journal journal;
  FakeRunnable server("server", journal), jobs("jobs", journal), pods("pods", journal);
  pods.FailStart(rt::UnavailableError("no watch"));
  Manager m(client, {});
  m.Add(Group::kServer, &server);
  m.Add(Group::kCache, &jobs);
  m.Add(Group::kCache, &pods);
  EXPECT_EQ(m.Start().message(), "pods: no watch");
  EXPECT_THAT(journal.Lines(),
              ElementsAre("start:server", "start:jobs", "start:pods", "stop:jobs", "stop:server"));
}

TEST(ManagerTest, ALeaderRunnableThatCannotStartMakesTheReplicaUnhealthy) {
  FakeClient client({.namespaces = {"ops"}});
  Replica r(client, std::nullopt);
  FakeRunnable after("after", r.journal);
  r.controller.FailStart(rt::InternalError("no workers"));
  r.manager.Add(Group::kLeader, &after);
  ASSERT_TRUE(r.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return !r.manager.Healthy(); }));
  EXPECT_EQ(r.journal.Count("start:after"), 0) << "later leader runnables are not started";
  r.manager.Stop();
  EXPECT_EQ(r.journal.Count("stop:controller"), 0) << "it did not start";
}

TEST(ManagerTest, StopBeforeTheCachesSyncStartsNoLeaderRunnable) {
  FakeClient client({.namespaces = {"ops"}});
  Replica r(client, std::nullopt);
  r.cache.SetReady(false);
  ASSERT_TRUE(r.manager.Start().ok());
  r.manager.Stop();
  EXPECT_THAT(r.journal.Lines(),
              ElementsAre("start:server", "start:cache", "stop:cache", "stop:server"));
}

TEST(ManagerTest, EveryReplicaIsReadyAndOnlyOneLeads) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Replica a(client, Config("a", &clock));
  Replica b(client, Config("b", &clock));
  ASSERT_TRUE(a.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.Started(); }));
  ASSERT_TRUE(b.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return b.manager.Ready() && b.manager.Leader() == "a"; }))
      << "a standby is Ready: readiness does not depend on leadership";
  // 20 s, more than the 15 s lease, of renewals (every 2 s) and acquire attempts: a keeps the
  // Lease, b never leads.
  for (int i = 0; i < 10; ++i) {
    const int renewals = client.CallCount("update", "leases");
    clock.Advance(2s);
    ASSERT_TRUE(WaitFor([&] { return client.CallCount("update", "leases") > renewals; }));
    ASSERT_FALSE(b.manager.Leading());
  }
  EXPECT_TRUE(a.manager.Ready() && b.manager.Ready());
  EXPECT_TRUE(a.manager.Leading());
  EXPECT_EQ(b.journal.Count("start:controller"), 0);
  EXPECT_EQ(Holder(client), "a");
  EXPECT_TRUE(a.manager.Healthy() && b.manager.Healthy());
}

TEST(ManagerTest, NotReadyAndNotLeadingUntilEveryCacheSynced) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Replica a(client, Config("a", &clock));
  a.cache.SetReady(false);
  ASSERT_TRUE(a.manager.Start().ok());
  // It holds the Lease (elections need no cache) but neither reconciles nor says it is Ready.
  ASSERT_TRUE(WaitFor([&] { return Holder(client) == "a"; }));
  clock.Advance(30s);
  EXPECT_FALSE(a.manager.Ready());
  EXPECT_FALSE(a.manager.Leading());
  EXPECT_FALSE(a.Started());
  EXPECT_TRUE(a.manager.Healthy()) << "an API server that does not answer lists is not a reason "
                                      "to restart: liveness stays up";
  a.cache.SetReady(true);
  ASSERT_TRUE(WaitFor([&] { return a.manager.Ready() && a.manager.Leading() && a.Started(); }));
}

TEST(ManagerTest, StoppedLeaderStopsItsWorkThenReleasesTheLeaseAndTheStandbyLeads) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Replica a(client, Config("a", &clock));
  Replica b(client, Config("b", &clock));
  ASSERT_TRUE(a.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.Started(); }));
  ASSERT_TRUE(b.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return b.manager.Ready() && b.manager.Leader() == "a"; }));
  // The work stops while the Lease is still ours: the successor never overlaps with it.
  std::string holder_while_stopping, holder_at_cache_stop;
  a.controller.on_stop = [&] { holder_while_stopping = Holder(client); };
  a.cache.on_stop = [&] { holder_at_cache_stop = Holder(client); };
  a.manager.Stop();
  EXPECT_EQ(holder_while_stopping, "a");
  EXPECT_EQ(holder_at_cache_stop, "") << "released before the caches stop";
  EXPECT_THAT(a.journal.Lines(), ElementsAre("start:server", "start:cache", "start:controller",
                                             "stop:controller", "stop:cache", "stop:server"));
  EXPECT_FALSE(a.manager.Ready());
  EXPECT_FALSE(a.manager.Leading());
  auto lease = client.Get(kube::resources::kLeases, "ops", "operator");
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ((*lease)["spec"]["leaseDurationSeconds"], 1) << "client-go's ReleaseOnCancel";
  // b sees the release on its next attempt (acquire period 1 s, jittered up to 1.5 s): the 15 s
  // lease does not have to expire.
  clock.Advance(1500ms);
  ASSERT_TRUE(WaitFor([&] { return b.Started(); }));
  EXPECT_EQ(Holder(client), "b");
}

TEST(ManagerTest, LeaderThatLosesTheLeaseIsUnhealthy) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Replica a(client, Config("a", &clock));
  ASSERT_TRUE(a.manager.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.Started(); }));
  client.InjectError("update", "leases", rt::UnavailableError("connection refused"), 1000000);
  // No renewal for the 10 s renew deadline, in retry periods of 2 s.
  ASSERT_TRUE(AdvanceUntil(clock, 500ms, [&] { return a.lost == 1; }));
  EXPECT_FALSE(a.manager.Healthy()) << "it will never lead again: liveness restarts it";
  client.ClearInjectedErrors();
}

TEST(ManagerTest, InformerRunnableIsReadyOnceSynced) {
  FakeClient client({.namespaces = {"ops"}});
  informer::Informer cache(client, {.resource = kube::resources::kConfigMaps, .ns = "ops"});
  InformerRunnable runnable("configmaps", cache);
  EXPECT_EQ(runnable.Name(), "configmaps");
  EXPECT_FALSE(runnable.Ready());
  ASSERT_TRUE(runnable.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return runnable.Ready(); }));
  runnable.Stop();
  EXPECT_THAT(cache.List(), IsEmpty());
}

}  // namespace
}  // namespace parallelrun::op::manager
