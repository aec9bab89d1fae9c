#include "operator/informer/informer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "operator/kube/fake_client.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::op::informer {
namespace {

using namespace std::chrono_literals;
using fakes::FakeClock;
using fakes::WaitFor;
using kube::FakeClient;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr auto kPatience = 10s;
const kube::Resource& kPods = kube::resources::kPods;

json Pod(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"labels", labels}}},
          {"spec", {{"containers", json::array({{{"name", "c"}, {"image", "x"}}})}}}};
}

// Records handler calls as "TYPE:key" (and the old object's name for MODIFIED/DELETED).
class Events {
 public:
  EventHandler Handler() {
    return [this](const std::string& type, const ObjectPtr& old, const ObjectPtr& obj) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string s = type + ":" + KeyOf(*obj);
      if (type == "ADDED") {
        EXPECT_EQ(old, nullptr);
      }
      if (old) last_old_[KeyOf(*obj)] = old;
      seen_.push_back(s);
      cv_.notify_all();
    };
  }
  // Waits until `n` events arrived in total.
  bool WaitCount(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return seen_.size() >= n; });
  }
  bool WaitFor(const std::string& event) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] {
      return std::find(seen_.begin(), seen_.end(), event) != seen_.end();
    });
  }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    auto out = std::move(seen_);
    seen_.clear();
    return out;
  }
  ObjectPtr LastOld(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return last_old_[key];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> seen_;
  std::map<std::string, ObjectPtr> last_old_;
};

// Polls `cond` until true or the patience runs out (for state with no notification).
template <typename F>
bool Eventually(F cond) {
  return fakes::WaitFor(cond, kPatience, 2ms);
}

InformerOptions PodOptions(const std::string& ns = "ns") {
  InformerOptions o;
  o.resource = kPods;
  o.ns = ns;
  o.backoff_initial = 20ms;
  o.backoff_max = 200ms;
  return o;
}

TEST(InformerTest, KeyOf) {
  EXPECT_EQ(KeyOf(json{{"metadata", {{"namespace", "ns"}, {"name", "a"}}}}), "ns/a");
  EXPECT_EQ(KeyOf(json{{"metadata", {{"name", "node1"}}}}), "node1");
}

TEST(InformerTest, ListsInPagesThenFollowsTheWatch) {
  FakeClient client({.namespaces = {"ns", "other"}});
  for (const char* n : {"a", "b", "c", "d", "e"})
    ASSERT_TRUE(client.Create(kPods, "ns", Pod(n)).ok());
  ASSERT_TRUE(client.Create(kPods, "other", Pod("x")).ok());
  InformerOptions o = PodOptions();
  o.page_size = 2;
  Informer inf(client, o);
  Events events;
  inf.AddHandler(events.Handler());
  EXPECT_FALSE(inf.HasSynced());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  EXPECT_EQ(inf.Size(), 5u);
  EXPECT_EQ(client.CallCount("list", "pods"), 3);
  EXPECT_THAT(events.Take(),
              ElementsAre("ADDED:ns/a", "ADDED:ns/b", "ADDED:ns/c", "ADDED:ns/d", "ADDED:ns/e"));

  json f = *client.Create(kPods, "ns", Pod("f"));
  ASSERT_TRUE(client
                  .Patch(kPods, "ns", "a", kube::PatchType::kMerge,
                         {{"metadata", {{"labels", {{"x", "y"}}}}}})
                  .ok());
  ASSERT_TRUE(client.Delete(kPods, "ns", "b").ok());
  ASSERT_TRUE(client.Create(kPods, "other", Pod("y")).ok());
  ASSERT_TRUE(events.WaitCount(3));
  EXPECT_THAT(events.Take(), ElementsAre("ADDED:ns/f", "MODIFIED:ns/a", "DELETED:ns/b"));
  EXPECT_EQ(inf.Size(), 5u);
  EXPECT_EQ(inf.Get("ns", "b"), nullptr);
  ASSERT_NE(inf.Get("ns", "a"), nullptr);
  EXPECT_EQ((*inf.Get("ns", "a"))["metadata"]["labels"]["x"], "y");
  ASSERT_NE(events.LastOld("ns/a"), nullptr);
  EXPECT_FALSE((*events.LastOld("ns/a"))["metadata"]["labels"].contains("x"));
  EXPECT_EQ(inf.LastResourceVersion(), std::to_string(client.CurrentResourceVersion() - 1));
  EXPECT_EQ(client.CallCount("watch", "pods"), 1);
  (void)f;
}

TEST(InformerTest, WatchStartsAtTheListsVersionWithoutReplayingIt) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  Informer inf(client, PodOptions());
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("b")).ok());
  ASSERT_TRUE(events.WaitFor("ADDED:ns/b"));
  EXPECT_THAT(events.Take(), ElementsAre("ADDED:ns/a", "ADDED:ns/b"));
}

TEST(InformerTest, AllNamespacesAndStoreQueries) {
  FakeClient client({.namespaces = {"a", "b"}});
  ASSERT_TRUE(client.Create(kPods, "a", Pod("w0", {{"job", "j"}, {"role", "worker"}})).ok());
  ASSERT_TRUE(client.Create(kPods, "a", Pod("c", {{"job", "j"}, {"role", "coordinator"}})).ok());
  ASSERT_TRUE(client.Create(kPods, "b", Pod("w0", {{"job", "j"}, {"role", "worker"}})).ok());
  Informer inf(client, PodOptions(""));
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  EXPECT_EQ(inf.List().size(), 3u);
  EXPECT_EQ(inf.List("a").size(), 2u);
  auto workers = inf.ListByLabels("", {{"role", "worker"}});
  std::vector<std::string> keys;
  for (const auto& w : workers) keys.push_back(KeyOf(*w));
  EXPECT_THAT(keys, UnorderedElementsAre("a/w0", "b/w0"));
  EXPECT_EQ(inf.ListByLabels("a", {{"job", "j"}, {"role", "worker"}}).size(), 1u);
  EXPECT_THAT(inf.ListByLabels("a", {{"job", "other"}}), IsEmpty());
  EXPECT_EQ(inf.ListByLabels("b", {}).size(), 1u);
  ASSERT_NE(inf.Get("b", "w0"), nullptr);
  EXPECT_EQ((*inf.Get("b", "w0"))["kind"], "Pod");
}

TEST(InformerTest, LabelSelectorLimitsWhatIsCached) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("mine", {{"app", "x"}})).ok());
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("theirs", {{"app", "y"}})).ok());
  InformerOptions o = PodOptions();
  o.label_selector = "app=x";
  Informer inf(client, o);
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  EXPECT_EQ(inf.Size(), 1u);
  // Relabelling out of the selector reads as a deletion.
  ASSERT_TRUE(client
                  .Patch(kPods, "ns", "mine", kube::PatchType::kMerge,
                         {{"metadata", {{"labels", {{"app", "z"}}}}}})
                  .ok());
  ASSERT_TRUE(events.WaitFor("DELETED:ns/mine"));
  EXPECT_EQ(inf.Size(), 0u);
}

TEST(InformerTest, TransformTrimsStoredObjects) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  InformerOptions o = PodOptions();
  o.transform = [](json obj) {
    obj.erase("spec");
    return obj;
  };
  Informer inf(client, o);
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("b")).ok());
  ASSERT_TRUE(Eventually([&] { return inf.Get("ns", "b") != nullptr; }));
  EXPECT_FALSE(inf.Get("ns", "a")->contains("spec"));
  EXPECT_FALSE(inf.Get("ns", "b")->contains("spec"));
  EXPECT_TRUE(inf.Get("ns", "b")->contains("metadata"));
}

// The store keeps objects packed; what Get, List and the handlers see is the stored object
// exactly: integers of both signs, large and fractional numbers, nulls, nested lists, non-ASCII
// text.
TEST(InformerTest, PackedObjectsReadBackExactly) {
  FakeClient client({.namespaces = {"ns"}});
  json pod = Pod("p", {{"job", "j"}, {"count", 3}});
  pod["spec"]["numbers"] = {-1,    0,   18446744073709551615ull, -9223372036854775807ll - 1, 0.1,
                            1e300, 2.5f};
  pod["spec"]["text"] = "grüße, 日本, \u0001";
  pod["spec"]["nothing"] = nullptr;
  pod["spec"]["nested"] = {{"a", json::array({json::object(), json::array(), true, false})}};
  auto created = client.Create(kPods, "ns", pod);  // with the server's defaults
  ASSERT_TRUE(created.ok());
  Informer inf(client, PodOptions());
  std::vector<ObjectPtr> handed;
  inf.AddHandler(
      [&](const std::string&, const ObjectPtr&, const ObjectPtr& obj) { handed.push_back(obj); });
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ObjectPtr got = inf.Get("ns", "p");
  ASSERT_NE(got, nullptr);
  EXPECT_EQ((*got)["spec"], (*created)["spec"]);
  EXPECT_EQ((*got)["spec"]["numbers"], pod["spec"]["numbers"]);
  EXPECT_TRUE((*got)["spec"]["numbers"][0].is_number_integer());
  ASSERT_EQ(handed.size(), 1u);
  EXPECT_EQ(*handed[0], *got);
  EXPECT_EQ(*inf.List()[0], *got);
  // Snapshots: a second read is equal but its own copy.
  EXPECT_NE(inf.Get("ns", "p"), got);
  // Only string labels select.
  EXPECT_EQ(inf.ListByLabels("ns", {{"job", "j"}}).size(), 1u);
  EXPECT_THAT(inf.ListByLabels("ns", {{"count", "3"}}), IsEmpty());
}

TEST(InformerTest, BookmarksAdvanceTheResourceVersion) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  Informer inf(client, PodOptions());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  const std::string synced = inf.LastResourceVersion();
  // Writes the informer does not see (another resource) move the server's version on.
  ASSERT_TRUE(client.Create(kube::resources::kConfigMaps, "ns", Pod("cm")).ok());
  ASSERT_TRUE(client.Create(kube::resources::kConfigMaps, "ns", Pod("cm2")).ok());
  const std::string now = std::to_string(client.CurrentResourceVersion());
  ASSERT_NE(now, synced);
  EXPECT_EQ(inf.LastResourceVersion(), synced);
  client.SendBookmarks();
  EXPECT_TRUE(Eventually([&] { return inf.LastResourceVersion() == now; }));
}

TEST(InformerTest, RewatchesFromLastVersionWhenTheStreamEnds) {
  FakeClient client({.namespaces = {"ns"}});
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  Informer inf(client, PodOptions());
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  client.CloseAllWatches();
  // Written while the informer is between watches: replayed from history, not lost.
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("b")).ok());
  ASSERT_TRUE(events.WaitFor("ADDED:ns/b"));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("c")).ok());
  ASSERT_TRUE(events.WaitFor("ADDED:ns/c"));
  EXPECT_EQ(client.CallCount("list", "pods"), 1) << "a clean end does not re-list";
  EXPECT_GE(client.CallCount("watch", "pods"), 2);
  EXPECT_EQ(inf.Size(), 3u);
}

TEST(InformerTest, RewatchesAfterABrokenConnection) {
  FakeClient client({.namespaces = {"ns"}});
  Informer inf(client, PodOptions());
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  client.CloseAllWatches(rt::UnavailableError("connection reset by peer"));
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  ASSERT_TRUE(events.WaitFor("ADDED:ns/a"));
  EXPECT_EQ(client.CallCount("list", "pods"), 1);
}

TEST(InformerTest, GoneRelistsAndEmitsTheDifference) {
  FakeClient client({.namespaces = {"ns"}});
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(client.Create(kPods, "ns", Pod(n)).ok());
  Informer inf(client, PodOptions());
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  events.Take();

  // Keep the informer disconnected while things change and the history is compacted away.
  client.InjectError("watch", "pods", rt::UnavailableError("apiserver restarting"), 1 << 30);
  int watches = client.CallCount("watch", "pods");
  client.CloseAllWatches();
  ASSERT_TRUE(Eventually([&] { return client.CallCount("watch", "pods") > watches; }));
  ASSERT_TRUE(client.Delete(kPods, "ns", "a").ok());
  ASSERT_TRUE(client
                  .Patch(kPods, "ns", "b", kube::PatchType::kMerge,
                         {{"metadata", {{"labels", {{"v", "2"}}}}}})
                  .ok());
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("d")).ok());
  client.CompactHistory();
  client.ClearInjectedErrors();

  ASSERT_TRUE(events.WaitCount(4));
  EXPECT_THAT(events.Take(),
              ElementsAre("DELETED:ns/a", "MODIFIED:ns/b", "MODIFIED:ns/c", "ADDED:ns/d"));
  EXPECT_EQ(client.CallCount("list", "pods"), 2);
  EXPECT_EQ((*inf.Get("ns", "b"))["metadata"]["labels"]["v"], "2");
  EXPECT_EQ(inf.Get("ns", "a"), nullptr);
  EXPECT_EQ(inf.LastResourceVersion(), std::to_string(client.CurrentResourceVersion()));
  // And it watches again from the new list.
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("e")).ok());
  EXPECT_TRUE(events.WaitFor("ADDED:ns/e"));
}

TEST(InformerTest, ExpiredContinueTokenRestartsTheList) {
  FakeClient client({.namespaces = {"ns"}});
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(client.Create(kPods, "ns", Pod(n)).ok());
  InformerOptions o = PodOptions();
  o.page_size = 1;
  // While the first page is being stored, the server forgets the list's snapshot.
  bool once = true;
  o.transform = [&](json obj) {
    if (once) {
      once = false;
      EXPECT_TRUE(client.Create(kPods, "ns", Pod("late")).ok());
      client.CompactHistory();
    }
    return obj;
  };
  Informer inf(client, o);
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  EXPECT_EQ(inf.Size(), 4u);
  // Page 1, page 2 (410), then four pages of the new list.
  EXPECT_EQ(client.CallCount("list", "pods"), 6);
}

TEST(InformerTest, ListErrorsBackOffOnItsClockAndRecover) {
  FakeClient client({.namespaces = {"ns"}});
  FakeClock clock;
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  client.InjectError("list", "pods", rt::UnavailableError("503"), 3);
  InformerOptions o = PodOptions();
  o.backoff_initial = 60s;  // a test on the real clock would not finish
  o.backoff_max = 10min;
  o.clock = &clock;
  Informer inf(client, o);
  inf.Start();
  // Waits of 60, 120 and 240 s, each jittered up to +25 %, between the four attempts.
  int lists = 1;
  for (auto wait : {75s, 150s, 300s}) {
    ASSERT_TRUE(WaitFor([&] { return client.CallCount("list", "pods") == lists; }));
    EXPECT_FALSE(inf.HasSynced());
    clock.Advance(wait);
    ++lists;
  }
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  EXPECT_EQ(client.CallCount("list", "pods"), 4);
  EXPECT_EQ(inf.Size(), 1u);
}

TEST(InformerTest, WatchErrorsBackOffWithoutRelisting) {
  FakeClient client({.namespaces = {"ns"}});
  client.InjectError("watch", "pods", rt::UnavailableError("503"), 2);
  Informer inf(client, PodOptions());
  Events events;
  inf.AddHandler(events.Handler());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  ASSERT_TRUE(events.WaitFor("ADDED:ns/a"));
  EXPECT_EQ(client.CallCount("watch", "pods"), 3);
  EXPECT_EQ(client.CallCount("list", "pods"), 1);
}

TEST(InformerTest, StopIsPromptWhileWatching) {
  FakeClient client({.namespaces = {"ns"}});
  Informer inf(client, PodOptions());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(kPatience));
  ASSERT_TRUE(Eventually([&] { return client.OpenWatches() == 1; }));
  auto start = std::chrono::steady_clock::now();
  inf.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(client.OpenWatches(), 0);
  // No more events after Stop.
  ASSERT_TRUE(client.Create(kPods, "ns", Pod("a")).ok());
  EXPECT_EQ(inf.Size(), 0u);
}

TEST(InformerTest, StopIsPromptWhileBackingOff) {
  FakeClient client({.namespaces = {"ns"}});
  client.InjectError("list", "pods", rt::UnavailableError("503"), 1 << 30);
  InformerOptions o = PodOptions();
  o.backoff_initial = 60s;
  o.backoff_max = 60s;
  Informer inf(client, o);
  inf.Start();
  ASSERT_TRUE(Eventually([&] { return client.CallCount("list", "pods") >= 1; }));
  auto start = std::chrono::steady_clock::now();
  inf.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_FALSE(inf.HasSynced());
  EXPECT_FALSE(inf.WaitForSync(1ms));
}

TEST(InformerTest, DestructorStopsWithoutStart) {
  FakeClient client({.namespaces = {"ns"}});
  Informer inf(client, PodOptions());
}

}  // namespace
}  // namespace parallelrun::op::informer
