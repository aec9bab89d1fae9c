#include "operator/manager/leader_election.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <regex>
#include <thread>

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

const kube::Resource& kLeases = kube::resources::kLeases;

// Forwards to the shared fake unless cut off, as a replica behind a network partition.
class PartitionableClient : public kube::Client {
 public:
  explicit PartitionableClient(kube::Client& inner) : inner_(inner) {}
  void Cut() { cut_ = true; }

  kube::StatusOr<json> Get(const kube::Resource& r, const std::string& ns,
                           const std::string& name) override {
    if (cut_) return Down();
    return inner_.Get(r, ns, name);
  }
  kube::StatusOr<json> List(const kube::Resource& r, const std::string& ns,
                            const kube::ListOptions& o) override {
    if (cut_) return Down();
    return inner_.List(r, ns, o);
  }
  kube::StatusOr<json> Create(const kube::Resource& r, const std::string& ns,
                              const json& obj) override {
    if (cut_) return Down();
    return inner_.Create(r, ns, obj);
  }
  kube::StatusOr<json> Update(const kube::Resource& r, const std::string& ns, const json& obj,
                              const std::string& sub) override {
    if (cut_) return Down();
    return inner_.Update(r, ns, obj, sub);
  }
  kube::StatusOr<json> Patch(const kube::Resource& r, const std::string& ns,
                             const std::string& name, kube::PatchType t, const json& p,
                             const std::string& sub) override {
    if (cut_) return Down();
    return inner_.Patch(r, ns, name, t, p, sub);
  }
  kube::Status Delete(const kube::Resource& r, const std::string& ns, const std::string& name,
                      const kube::DeleteOptions& o) override {
    if (cut_) return Down();
    return inner_.Delete(r, ns, name, o);
  }
  kube::StatusOr<std::unique_ptr<kube::WatchStream>> Watch(const kube::Resource& r,
                                                           const std::string& ns,
                                                           const kube::ListOptions& o) override {
    if (cut_) return Down();
    return inner_.Watch(r, ns, o);
  }

 private:
  static kube::Status Down() { return rt::UnavailableError("connection refused"); }
  kube::Client& inner_;
  std::atomic<bool> cut_{false};
};

// client-go's periods (15 s lease, 10 s renew deadline, 2 s retry) and our 1 s acquire period,
// measured on `clock`: the tests move it by hand, so nothing depends on how fast the machine is.
LeaderElectionConfig Config(const std::string& identity, const FakeClock& clock,
                            std::chrono::milliseconds lease_duration = 15s) {
  LeaderElectionConfig c;
  c.ns = "ops";
  c.name = "parallelrun-operator";
  c.identity = identity;
  c.lease_duration = lease_duration;
  c.clock = &clock;
  return c;
}

struct Counts {
  std::atomic<int> started{0};
  std::atomic<int> lost{0};
  std::mutex mu;
  std::vector<std::string> leaders;

  LeaderCallbacks Callbacks() {
    LeaderCallbacks cb;
    cb.on_started_leading = [this] { ++started; };
    cb.on_lost = [this] { ++lost; };
    cb.on_new_leader = [this](const std::string& id) {
      std::lock_guard<std::mutex> lock(mu);
      leaders.push_back(id);
    };
    return cb;
  }
};

json Lease(FakeClient& c) { return *c.Get(kLeases, "ops", "parallelrun-operator"); }

// Moves the clock on by `d` and waits for the leader's renewal that this makes due.
bool AdvanceAndRenew(FakeClient& client, FakeClock& clock, std::chrono::milliseconds d) {
  const int renewals = client.CallCount("update", "leases");
  clock.Advance(d);
  return WaitFor([&] { return client.CallCount("update", "leases") > renewals; });
}

TEST(LeaderElectionTest, FormatMicroTime) {
  auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456));
  EXPECT_EQ(FormatMicroTime(t), "2023-11-14T22:13:20.123456Z");
}

TEST(LeaderElectionTest, DefaultIdentityIsHostnameAndUuid) {
  std::string a = DefaultIdentity(), b = DefaultIdentity();
  EXPECT_NE(a, b);
  EXPECT_TRUE(std::regex_match(
      a, std::regex(".+_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << a;
}

TEST(LeaderElectionTest, FirstElectorCreatesTheLeaseAndRenewsItEveryRetryPeriod) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts counts;
  LeaderElector e(client, Config("a", clock), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(WaitFor([&] { return e.IsLeader(); }));
  EXPECT_EQ(counts.started, 1);
  EXPECT_EQ(e.Leader(), "a");
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseDurationSeconds"], 15);
  EXPECT_EQ(spec["leaseTransitions"], 0);
  EXPECT_EQ(spec["acquireTime"], "2026-11-23T11:05:08.000000Z") << "the clock's wall time";
  EXPECT_EQ(spec["renewTime"], "2026-11-23T11:05:08.000000Z");
  // The first renewal comes at once, the next one a retry period (2 s) later.
  ASSERT_TRUE(WaitFor([&] { return client.CallCount("update", "leases") == 1; }));
  clock.Advance(1900ms);
  EXPECT_EQ(client.CallCount("update", "leases"), 1) << "no renewal before the retry period";
  ASSERT_TRUE(AdvanceAndRenew(client, clock, 100ms));
  EXPECT_EQ(Lease(client)["spec"]["renewTime"], "2026-11-23T11:05:10.000000Z");
  EXPECT_EQ(Lease(client)["spec"]["acquireTime"], spec["acquireTime"]);
  e.Stop();
  EXPECT_FALSE(e.IsLeader());
  EXPECT_EQ(counts.lost, 0) << "a clean stop is not a loss";
}

TEST(LeaderElectionTest, OnlyOneOfTwoLeads) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts ca, cb;
  LeaderElector a(client, Config("a", clock), ca.Callbacks());
  LeaderElector b(client, Config("b", clock), cb.Callbacks());
  a.Start();
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader() || b.IsLeader(); }));
  LeaderElector& leader = a.IsLeader() ? a : b;
  LeaderElector& standby = a.IsLeader() ? b : a;
  // Both started at once: the standby may have lost the race to create the Lease, and then it
  // reads the holder only at its next attempt, one acquire period (1 s, jittered up to 1.5 s)
  // after its first one on the clock (a CI image build saw it wait forever).
  clock.Advance(1600ms);
  ASSERT_TRUE(WaitFor([&] { return standby.Leader() == leader.identity(); }));
  // 20 s, more than a lease duration: the leader renews, the standby never takes over.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(AdvanceAndRenew(client, clock, 2s));
    ASSERT_TRUE(leader.IsLeader());
    ASSERT_FALSE(standby.IsLeader());
  }
  EXPECT_EQ(ca.started + cb.started, 1);
  EXPECT_EQ(ca.lost + cb.lost, 0);
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], leader.identity());
  EXPECT_EQ(Lease(client)["spec"]["leaseTransitions"], 0);
}

TEST(LeaderElectionTest, ReleaseOnStopLetsTheOtherTakeOverAtOnce) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts ca, cb;
  LeaderElector a(client, Config("a", clock, 60s), ca.Callbacks());
  ASSERT_TRUE((a.Start(), WaitFor([&] { return a.IsLeader(); })));
  LeaderElector b(client, Config("b", clock, 60s), cb.Callbacks());
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.Leader() == "a"; }));
  EXPECT_FALSE(b.IsLeader());
  a.Stop();
  // b's next attempt, one acquire period (1 s, jittered up to 1.5 s) on: far less than 60 s.
  clock.Advance(1500ms);
  ASSERT_TRUE(WaitFor([&] { return b.IsLeader(); }));
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1) << "a release keeps the count; b taking over adds one";
  EXPECT_EQ(ca.lost, 0);
  std::lock_guard<std::mutex> lock(cb.mu);
  EXPECT_THAT(cb.leaders, ::testing::ElementsAre("a", "b"));
}

TEST(LeaderElectionTest, ReleaseIsRetriedAfterAFailedWrite) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts ca;
  LeaderElector a(client, Config("a", clock, 60s), ca.Callbacks());
  ASSERT_TRUE((a.Start(), WaitFor([&] { return a.IsLeader(); })));
  client.InjectError("update", "leases", rt::UnavailableError("connection reset by peer"), 2);
  a.Stop();  // up to one retry period (2 s): 20 attempts 100 ms apart
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "");
  EXPECT_EQ(spec["leaseDurationSeconds"], 1) << "client-go's ReleaseOnCancel";
  EXPECT_EQ(ca.lost, 0);
}

TEST(LeaderElectionTest, LeaderThatCannotRenewLosesAndTheOtherTakesOver) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  PartitionableClient a_client(client);
  Counts ca, cb;
  LeaderElector a(a_client, Config("a", clock), ca.Callbacks());
  ASSERT_TRUE((a.Start(), WaitFor([&] { return a.IsLeader(); })));
  LeaderElector b(client, Config("b", clock), cb.Callbacks());
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.Leader() == "a"; }));
  // Cut a off right after a renewal (started at T, between 2 s before this Advance and it): a
  // gives up 10 s after T, and the lease b saw renewed at T or later expires for b no earlier
  // than 15 s after T.
  ASSERT_TRUE(AdvanceAndRenew(client, clock, 2s));
  a_client.Cut();
  const auto cut_at = clock.Elapsed();
  for (int s = 0; s < 12; ++s) {
    clock.Advance(1s);
    ASSERT_FALSE(b.IsLeader()) << s + 1 << " s after the cut";
  }
  ASSERT_TRUE(WaitFor([&] { return ca.lost == 1; }));
  EXPECT_FALSE(a.IsLeader());
  EXPECT_FALSE(b.IsLeader()) << "the lease has not expired for b";
  // b takes over once the lease expired as b observed it: 15 s after T at the earliest.
  ASSERT_TRUE(AdvanceUntil(clock, 500ms, [&] { return b.IsLeader(); }));
  EXPECT_GE(clock.Elapsed() - cut_at, 13s);
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], "b");
  EXPECT_EQ(Lease(client)["spec"]["leaseTransitions"], 1);
  EXPECT_EQ(ca.lost, 1);
  EXPECT_EQ(cb.lost, 0);
}

// A lease left behind by a crashed process (not released, not expired).
void LeftoverLease(FakeClient& client, const std::string& holder) {
  std::string now = FormatMicroTime(std::chrono::system_clock::now());
  json lease = {{"metadata", {{"name", "parallelrun-operator"}}},
                {"spec",
                 {{"holderIdentity", holder},
                  {"leaseDurationSeconds", 60},
                  {"acquireTime", now},
                  {"renewTime", now},
                  {"leaseTransitions", 3}}}};
  ASSERT_TRUE(client.Create(kLeases, "ops", lease).ok());
}

TEST(LeaderElectionTest, SameIdentityRenewsAHeldLeaseAtOnce) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  LeftoverLease(client, "same");
  Counts counts;
  LeaderElector e(client, Config("same", clock, 60s), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(WaitFor([&] { return e.IsLeader(); }));
  EXPECT_EQ(Lease(client)["spec"]["leaseTransitions"], 3) << "no transition: same holder";
}

TEST(LeaderElectionTest, OtherIdentityWaitsForAnUnexpiredLeaseThenTakesItOver) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  LeftoverLease(client, "crashed");
  Counts counts;
  LeaderElector e(client, Config("new", clock, 60s), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(WaitFor([&] { return e.Leader() == "crashed"; }));
  // 55 s of attempts, one (at least) per 5 s step: the lease's 60 s have not passed.
  while (clock.Elapsed() + 5s < 60s) {
    const int gets = client.CallCount("get", "leases");
    clock.Advance(5s);
    ASSERT_TRUE(WaitFor([&] { return client.CallCount("get", "leases") > gets; }));
  }
  EXPECT_FALSE(e.IsLeader());
  EXPECT_EQ(client.CallCount("update", "leases"), 0);
  clock.Advance(6s);  // expired, and the next attempt (at most 1.5 s after the last) is due
  ASSERT_TRUE(WaitFor([&] { return e.IsLeader(); }));
  EXPECT_EQ(Lease(client)["spec"]["leaseTransitions"], 4);
}

TEST(LeaderElectionTest, UsesOnlyTheGrantedVerbs) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts ca, cb;
  {
    LeaderElector a(client, Config("a", clock), ca.Callbacks());
    LeaderElector b(client, Config("b", clock), cb.Callbacks());
    a.Start();
    b.Start();
    ASSERT_TRUE(WaitFor([&] { return a.IsLeader() || b.IsLeader(); }));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(AdvanceAndRenew(client, clock, 2s));
  }
  for (const auto& [call, n] : client.Calls()) {
    EXPECT_EQ(call.group, "coordination.k8s.io");
    EXPECT_EQ(call.resource, "leases");
    EXPECT_THAT(call.verb, ::testing::AnyOf("get", "create", "update")) << n;
  }
}

TEST(LeaderElectionTest, StopBeforeLeadingIsPrompt) {
  FakeClient client({.namespaces = {"ops"}});
  FakeClock clock;
  Counts ca, cb;
  LeaderElector a(client, Config("a", clock, 60s), ca.Callbacks());
  ASSERT_TRUE((a.Start(), WaitFor([&] { return a.IsLeader(); })));
  LeaderElector b(client, Config("b", clock, 60s), cb.Callbacks());
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.Leader() == "a"; }));
  auto start = std::chrono::steady_clock::now();
  b.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], "a") << "a non-leader releases nothing";
}

}  // namespace
}  // namespace parallelrun::op::manager
