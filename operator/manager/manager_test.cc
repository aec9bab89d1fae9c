#include "operator/manager/manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "operator/kube/fake_client.h"

namespace parallelrun::op::manager {
namespace {

using namespace std::chrono_literals;
using kube::FakeClient;
using nlohmann::json;

constexpr auto kPatience = 15s;

template <typename F>
bool Eventually(F cond, std::chrono::milliseconds patience = kPatience) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// True when `cond` holds for the whole of `d`.
template <typename F>
bool Throughout(F cond, std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (!cond()) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

json Lease(FakeClient& c) { return *c.Get(kube::resources::kLeases, "ops", "operator"); }

// The Lease's holder; "" while there is no Lease.
std::string Holder(FakeClient& c) {
  auto lease = c.Get(kube::resources::kLeases, "ops", "operator");
  return lease.ok() ? (*lease)["spec"].value("holderIdentity", "") : "";
}

// One operator replica: a cache of ConfigMaps, a manager, and counts of its hooks.
struct Replica {
  informer::Informer cache;
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<int> lost{0};
  std::function<void()> on_stop_leading;
  Manager manager;

  Replica(FakeClient& client, LeaderElectionConfig config)
      : cache(client, {.resource = kube::resources::kConfigMaps,
                       .ns = "ops",
                       .backoff_initial = 50ms,
                       .backoff_max = 200ms}),
        manager(client, {&cache}, {.leader_election = config},
                {.start_leading = [this] { ++started; },
                 .stop_leading =
                     [this] {
                       if (on_stop_leading) on_stop_leading();
                       ++stopped;
                     },
                 .lost_lease = [this] { ++lost; }}) {}
};

// client-go's periods (15 s lease, 10 s renew deadline, 2 s retry) and our 1 s acquire period:
// what the operator runs with.
LeaderElectionConfig Config(const std::string& identity) {
  LeaderElectionConfig c;
  c.ns = "ops";
  c.name = "operator";
  c.identity = identity;
  return c;
}

TEST(ManagerTest, EveryReplicaIsReadyAndOnlyOneLeads) {
  FakeClient client({.namespaces = {"ops"}});
  Replica a(client, Config("a"));
  Replica b(client, Config("b"));
  a.manager.Start();
  ASSERT_TRUE(Eventually([&] { return a.manager.Leading(); }));
  b.manager.Start();
  ASSERT_TRUE(Eventually([&] { return b.manager.Ready(); }))
      << "a standby is Ready: readiness does not depend on leadership";
  EXPECT_TRUE(Throughout(
      [&] { return a.manager.Ready() && b.manager.Ready() && !b.manager.Leading(); }, 1500ms));
  EXPECT_EQ(a.started, 1);
  EXPECT_EQ(b.started, 0);
  EXPECT_EQ(b.manager.Leader(), "a");
  EXPECT_TRUE(a.manager.Healthy() && b.manager.Healthy());
}

TEST(ManagerTest, NotReadyAndNotLeadingUntilEveryCacheSynced) {
  FakeClient client({.namespaces = {"ops"}});
  client.InjectError("list", "configmaps", rt::UnavailableError("connection refused"), 1000000);
  Replica a(client, Config("a"));
  a.manager.Start();
  // It holds the Lease (elections need no cache) but neither reconciles nor says it is Ready.
  ASSERT_TRUE(Eventually([&] { return Holder(client) == "a"; }));
  EXPECT_TRUE(Throughout([&] { return !a.manager.Ready() && !a.manager.Leading(); }, 500ms));
  EXPECT_TRUE(a.manager.Healthy()) << "an API server that does not answer lists is not a reason "
                                      "to restart: liveness stays up";
  client.ClearInjectedErrors();
  ASSERT_TRUE(Eventually([&] { return a.manager.Ready() && a.manager.Leading(); }));
  EXPECT_EQ(a.started, 1);
}

TEST(ManagerTest, StoppedLeaderReleasesTheLeaseAndTheStandbyLeadsWithinThreeSeconds) {
  FakeClient client({.namespaces = {"ops"}});
  Replica a(client, Config("a"));
  Replica b(client, Config("b"));
  a.manager.Start();
  ASSERT_TRUE(Eventually([&] { return a.manager.Leading(); }));
  b.manager.Start();
  ASSERT_TRUE(Eventually([&] { return b.manager.Ready() && b.manager.Leader() == "a"; }));
  // The work stops while the Lease is still ours: the successor never overlaps with it.
  std::string holder_while_stopping;
  a.on_stop_leading = [&] {
    holder_while_stopping = Lease(client)["spec"].value("holderIdentity", "");
  };
  const auto stop_at = std::chrono::steady_clock::now();
  a.manager.Stop();
  EXPECT_EQ(holder_while_stopping, "a");
  EXPECT_EQ(a.stopped, 1);
  EXPECT_FALSE(a.manager.Ready());
  EXPECT_FALSE(a.manager.Leading());
  json spec = Lease(client)["spec"];
  EXPECT_NE(spec.value("holderIdentity", ""), "a") << "released on Stop";
  if (spec.value("holderIdentity", "") == "") {
    EXPECT_EQ(spec["leaseDurationSeconds"], 1) << "client-go's ReleaseOnCancel";
  }
  ASSERT_TRUE(Eventually([&] { return b.manager.Leading(); }, 5s));
  const auto took = std::chrono::steady_clock::now() - stop_at;
  EXPECT_LT(took, 3s) << "the 15 s lease did not have to expire";
  std::printf("standby took over %.0f ms after the leader's Stop()\n",
              std::chrono::duration<double, std::milli>(took).count());
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], "b");
  EXPECT_EQ(b.started, 1);
}

TEST(ManagerTest, LeaderThatLosesTheLeaseIsUnhealthy) {
  FakeClient client({.namespaces = {"ops"}});
  LeaderElectionConfig config = Config("a");
  config.renew_deadline = 300ms;
  config.retry_period = 50ms;
  Replica a(client, config);
  a.manager.Start();
  ASSERT_TRUE(Eventually([&] { return a.manager.Leading(); }));
  client.InjectError("update", "leases", rt::UnavailableError("connection refused"), 1000000);
  ASSERT_TRUE(Eventually([&] { return a.lost == 1; }));
  EXPECT_FALSE(a.manager.Healthy()) << "it will never lead again: liveness restarts it";
  client.ClearInjectedErrors();
}

TEST(ManagerTest, WithoutLeaderElectionItLeadsOnceSynced) {
  FakeClient client({.namespaces = {"ops"}});
  informer::Informer cache(client, {.resource = kube::resources::kConfigMaps, .ns = "ops"});
  std::atomic<int> started{0};
  Manager m(client, {&cache}, {}, {.start_leading = [&] { ++started; }});
  m.Start();
  ASSERT_TRUE(Eventually([&] { return m.Ready() && m.Leading(); }));
  EXPECT_EQ(started, 1);
  EXPECT_EQ(client.CallCount("get", "leases"), 0);
  m.Stop();
  m.Stop();  // idempotent
  EXPECT_FALSE(m.Ready());
}

}  // namespace
}  // namespace parallelrun::op::manager
