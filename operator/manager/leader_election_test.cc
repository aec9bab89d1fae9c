#include "operator/manager/leader_election.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <regex>
#include <thread>

#include "operator/kube/fake_client.h"

namespace parallelrun::op::manager {
namespace {

using namespace std::chrono_literals;
using kube::FakeClient;
using nlohmann::json;

constexpr auto kPatience = 15s;
const kube::Resource& kLeases = kube::resources::kLeases;

template <typename F>
bool Eventually(F cond, std::chrono::milliseconds patience = kPatience) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

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

// Short periods, but wide gaps between them (renew deadline ≪ lease duration) so a busy machine
// cannot make a healthy leader miss its renewals.
LeaderElectionConfig Config(const std::string& identity,
                            std::chrono::milliseconds lease_duration = 3000ms) {
  LeaderElectionConfig c;
  c.ns = "ops";
  c.name = "parallelrun-operator";
  c.identity = identity;
  c.lease_duration = lease_duration;
  c.renew_deadline = 1500ms;
  c.retry_period = 100ms;
  c.acquire_period = 100ms;
  return c;
}

// Samples both electors for `d`: false if they ever both claimed to lead.
bool NeverBothLead(const LeaderElector& a, const LeaderElector& b, std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (a.IsLeader() && b.IsLeader()) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
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

TEST(LeaderElectionTest, FirstElectorCreatesTheLease) {
  FakeClient client({.namespaces = {"ops"}});
  Counts counts;
  LeaderElector e(client, Config("a"), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(Eventually([&] { return e.IsLeader(); }));
  EXPECT_EQ(counts.started, 1);
  EXPECT_EQ(e.Leader(), "a");
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseDurationSeconds"], 3);
  EXPECT_EQ(spec["leaseTransitions"], 0);
  EXPECT_TRUE(std::regex_match(spec["renewTime"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")));
  // It keeps renewing.
  std::string first = spec["renewTime"];
  ASSERT_TRUE(Eventually([&] { return Lease(client)["spec"]["renewTime"] != first; }));
  EXPECT_EQ(Lease(client)["spec"]["acquireTime"], spec["acquireTime"]);
  e.Stop();
  EXPECT_FALSE(e.IsLeader());
  EXPECT_EQ(counts.lost, 0) << "a clean stop is not a loss";
}

TEST(LeaderElectionTest, OnlyOneOfTwoLeads) {
  FakeClient client({.namespaces = {"ops"}});
  Counts ca, cb;
  LeaderElector a(client, Config("a"), ca.Callbacks());
  LeaderElector b(client, Config("b"), cb.Callbacks());
  a.Start();
  b.Start();
  ASSERT_TRUE(Eventually([&] { return a.IsLeader() || b.IsLeader(); }));
  EXPECT_TRUE(NeverBothLead(a, b, 3500ms)) << "more than a lease duration";
  EXPECT_EQ(ca.started + cb.started, 1);
  EXPECT_EQ(ca.lost + cb.lost, 0);
  std::string leader = a.IsLeader() ? "a" : "b";
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], leader);
  EXPECT_TRUE(Eventually([&] { return a.Leader() == leader && b.Leader() == leader; }));
}

TEST(LeaderElectionTest, ReleaseOnStopLetsTheOtherTakeOverAtOnce) {
  FakeClient client({.namespaces = {"ops"}});
  Counts ca, cb;
  // A long lease: only a release lets b in within the test's patience.
  LeaderElector a(client, Config("a", 60s), ca.Callbacks());
  ASSERT_TRUE((a.Start(), Eventually([&] { return a.IsLeader(); })));
  LeaderElector b(client, Config("b", 60s), cb.Callbacks());
  b.Start();
  ASSERT_TRUE(Eventually([&] { return b.Leader() == "a"; }));
  EXPECT_FALSE(b.IsLeader());
  a.Stop();
  ASSERT_TRUE(Eventually([&] { return b.IsLeader(); }));
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1) << "a release keeps the count; b taking over adds one";
  EXPECT_EQ(ca.lost, 0);
  std::lock_guard<std::mutex> lock(cb.mu);
  EXPECT_THAT(cb.leaders, ::testing::ElementsAre("a", "b"));
}

TEST(LeaderElectionTest, ReleaseIsRetriedAfterAFailedWrite) {
  FakeClient client({.namespaces = {"ops"}});
  Counts ca;
  LeaderElectionConfig config = Config("a", 60s);
  config.retry_period = 1000ms;  // the release keeps trying for this long
  LeaderElector a(client, config, ca.Callbacks());
  ASSERT_TRUE((a.Start(), Eventually([&] { return a.IsLeader(); })));
  client.InjectError("update", "leases", rt::UnavailableError("connection reset by peer"), 2);
  a.Stop();
  json spec = Lease(client)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "");
  EXPECT_EQ(spec["leaseDurationSeconds"], 1) << "client-go's ReleaseOnCancel";
  EXPECT_EQ(ca.lost, 0);
}

TEST(LeaderElectionTest, LeaderThatCannotRenewLosesAndTheOtherTakesOver) {
  FakeClient client({.namespaces = {"ops"}});
  PartitionableClient a_client(client);
  Counts ca, cb;
  LeaderElectionConfig a_config = Config("a");
  a_config.renew_deadline = 500ms;  // gives up long before the 3 s lease expires for b
  LeaderElector a(a_client, a_config, ca.Callbacks());
  ASSERT_TRUE((a.Start(), Eventually([&] { return a.IsLeader(); })));
  LeaderElector b(client, Config("b"), cb.Callbacks());
  b.Start();
  ASSERT_TRUE(Eventually([&] { return b.Leader() == "a"; }));
  auto cut_at = std::chrono::steady_clock::now();
  a_client.Cut();
  EXPECT_TRUE(NeverBothLead(a, b, 1500ms));
  ASSERT_TRUE(Eventually([&] { return ca.lost == 1; }));
  EXPECT_FALSE(a.IsLeader());
  ASSERT_TRUE(Eventually([&] { return b.IsLeader(); }));
  // b waited for the lease to expire as it observed it (3 s without a change).
  EXPECT_GE(std::chrono::steady_clock::now() - cut_at, 2s);
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
  LeftoverLease(client, "same");
  Counts counts;
  LeaderElector e(client, Config("same", 60s), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(Eventually([&] { return e.IsLeader(); }));
  EXPECT_EQ(Lease(client)["spec"]["leaseTransitions"], 3) << "no transition: same holder";
}

TEST(LeaderElectionTest, OtherIdentityWaitsForAnUnexpiredLease) {
  FakeClient client({.namespaces = {"ops"}});
  LeftoverLease(client, "crashed");
  Counts counts;
  LeaderElector e(client, Config("new", 60s), counts.Callbacks());
  e.Start();
  ASSERT_TRUE(Eventually([&] { return e.Leader() == "crashed"; }));
  ASSERT_TRUE(Eventually([&] { return client.CallCount("get", "leases") >= 3; }));
  EXPECT_FALSE(e.IsLeader());
  EXPECT_EQ(client.CallCount("update", "leases"), 0);
}

TEST(LeaderElectionTest, UsesOnlyTheGrantedVerbs) {
  FakeClient client({.namespaces = {"ops"}});
  Counts ca, cb;
  {
    LeaderElector a(client, Config("a"), ca.Callbacks());
    LeaderElector b(client, Config("b"), cb.Callbacks());
    a.Start();
    b.Start();
    ASSERT_TRUE(Eventually([&] { return a.IsLeader() || b.IsLeader(); }));
    std::this_thread::sleep_for(300ms);  // a few renewals and attempts
  }
  for (const auto& [call, n] : client.Calls()) {
    EXPECT_EQ(call.group, "coordination.k8s.io");
    EXPECT_EQ(call.resource, "leases");
    EXPECT_THAT(call.verb, ::testing::AnyOf("get", "create", "update")) << n;
  }
}

TEST(LeaderElectionTest, StopBeforeLeadingIsPrompt) {
  FakeClient client({.namespaces = {"ops"}});
  Counts ca, cb;
  LeaderElector a(client, Config("a", 60s), ca.Callbacks());
  ASSERT_TRUE((a.Start(), Eventually([&] { return a.IsLeader(); })));
  LeaderElectionConfig slow = Config("b", 60s);
  slow.acquire_period = 30s;
  LeaderElector b(client, slow, cb.Callbacks());
  b.Start();
  ASSERT_TRUE(Eventually([&] { return b.Leader() == "a"; }));
  auto start = std::chrono::steady_clock::now();
  b.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(Lease(client)["spec"]["holderIdentity"], "a") << "a non-leader releases nothing";
}

}  // namespace
}  // namespace parallelrun::op::manager
