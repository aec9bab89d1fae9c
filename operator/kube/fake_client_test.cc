// The in-process test client: what it adds to the test cluster's API server (start-up objects,
// error mapping, watch streams, test hooks). The API semantics themselves are tested with the
// cluster (tests/cluster/apiserver_test.cc and its end-to-end tests).
#include "operator/kube/fake_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace parallelrun::op::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const Resource& kConfigMaps = resources::kConfigMaps;

json Cm(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"labels", labels}}}, {"data", {{"k", "v"}}}};
}

std::string Rv(const json& obj) { return obj["metadata"]["resourceVersion"].get<std::string>(); }

FakeClientOptions InNamespace(const std::string& ns) {
  FakeClientOptions o;
  o.namespaces = {ns};
  return o;
}

// Reads events until `n` arrived (or the stream ends/fails, which fails the test).
std::vector<std::string> Take(WatchStream& w, size_t n) {
  std::vector<std::string> out;
  while (out.size() < n) {
    auto next = w.Next();
    EXPECT_TRUE(next.ok()) << next.status().ToString();
    if (!next.ok() || !next->has_value()) break;
    out.push_back((*next)->type + ":" + (*next)->object["metadata"].value("name", ""));
  }
  return out;
}

TEST(FakeClientTest, StartsWithTheProjectCrdsAndTheListedNamespaces) {
  FakeClient c(InNamespace("team-a"));
  auto jobs = c.List(resources::kParallelRunJobs, "team-a", {});
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ((*jobs)["kind"], "ParallelRunJobList");
  EXPECT_TRUE(c.Create(kConfigMaps, "team-a", Cm("a")).ok());
  EXPECT_TRUE(c.Create(kConfigMaps, "default", Cm("a")).ok());
  auto missing = c.Create(kConfigMaps, "nowhere", Cm("a"));
  EXPECT_TRUE(IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr("namespaces \"nowhere\" not found"));
}

TEST(FakeClientTest, AStartThatFailsFailsEveryCall) {
  FakeClientOptions o;
  o.crd_files = {"/nonexistent/crd.yaml"};
  FakeClient c(o);
  auto got = c.Get(kConfigMaps, "default", "a");
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("/nonexistent/crd.yaml"));
  EXPECT_EQ(c.CallCount("get", "configmaps"), 1);
}

TEST(FakeClientTest, ErrorsAreMappedAsTheHttpsClientMapsThem) {
  FakeClient c(InNamespace("ns"));
  auto created = c.Create(kConfigMaps, "ns", Cm("a"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto again = c.Create(kConfigMaps, "ns", Cm("a"));
  EXPECT_TRUE(IsAlreadyExists(again.status()));
  EXPECT_THAT(again.status().message(),
              HasSubstr("POST /api/v1/namespaces/ns/configmaps: 409 AlreadyExists"));
  auto missing = c.Get(kConfigMaps, "ns", "nope");
  EXPECT_TRUE(IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(),
              HasSubstr("GET /api/v1/namespaces/ns/configmaps/nope: 404 NotFound"));
  json first = *created;
  first["data"]["k"] = "w";
  ASSERT_TRUE(c.Update(kConfigMaps, "ns", first).ok());
  json stale = *created;
  stale["data"]["k"] = "x";
  auto conflict = c.Update(kConfigMaps, "ns", stale);
  EXPECT_TRUE(IsConflict(conflict.status()));
  EXPECT_THAT(conflict.status().message(),
              HasSubstr("PUT /api/v1/namespaces/ns/configmaps/a: 409"));
  EXPECT_EQ(c.Create(kConfigMaps, "ns", Cm("Upper")).status().code(), StatusCode::kInvalidArgument);
}

TEST(FakeClientTest, PatchTypesReachTheServer) {
  FakeClient c(InNamespace("ns"));
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Cm("a")).ok());
  auto merged = c.Patch(kConfigMaps, "ns", "a", PatchType::kMerge, {{"data", {{"m", "1"}}}});
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ((*merged)["data"], (json{{"k", "v"}, {"m", "1"}}));
  auto patched = c.Patch(kConfigMaps, "ns", "a", PatchType::kJson,
                         json::array({{{"op", "remove"}, {"path", "/data/k"}}}));
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["data"], (json{{"m", "1"}}));
  json failing = json::array({{{"op", "test"}, {"path", "/data/m"}, {"value", "2"}}});
  EXPECT_FALSE(c.Patch(kConfigMaps, "ns", "a", PatchType::kJson, failing).ok());
  json apply = {{"apiVersion", "v1"},
                {"kind", "ConfigMap"},
                {"metadata", {{"name", "b"}}},
                {"data", {{"x", "y"}}}};
  auto applied = c.Patch(kConfigMaps, "ns", "b", PatchType::kApply, apply);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ((*applied)["data"]["x"], "y");
}

TEST(FakeClientTest, DeleteWaitsForFinalizers) {
  FakeClient c(InNamespace("ns"));
  json cm = Cm("a");
  cm["metadata"]["finalizers"] = {"example.com/keep"};
  auto created = c.Create(kConfigMaps, "ns", cm);
  ASSERT_TRUE(created.ok());
  DeleteOptions wrong_uid;
  wrong_uid.precondition_uid = "not-the-uid";
  EXPECT_TRUE(IsConflict(c.Delete(kConfigMaps, "ns", "a", wrong_uid)));
  ASSERT_TRUE(c.Delete(kConfigMaps, "ns", "a").ok());
  auto deleting = c.Get(kConfigMaps, "ns", "a");
  ASSERT_TRUE(deleting.ok());
  EXPECT_TRUE((*deleting)["metadata"].contains("deletionTimestamp"));
  ASSERT_TRUE(
      c.Patch(kConfigMaps, "ns", "a", PatchType::kMerge, {{"metadata", {{"finalizers", nullptr}}}})
          .ok());
  EXPECT_TRUE(IsNotFound(c.Get(kConfigMaps, "ns", "a").status()));
  EXPECT_TRUE(IsNotFound(c.Delete(kConfigMaps, "ns", "a")));
}

TEST(FakeClientTest, ListPassesSelectorsAndPaging) {
  FakeClient c(InNamespace("ns"));
  for (const char* n : {"a", "b", "c"}) {
    ASSERT_TRUE(
        c.Create(kConfigMaps, "ns", Cm(n, {{"app", n == std::string("b") ? "x" : "y"}})).ok());
  }
  ListOptions selected;
  selected.label_selector = "app=y";
  auto list = c.List(kConfigMaps, "ns", selected);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ((*list)["items"].size(), 2u);
  ListOptions page;
  page.limit = 2;
  auto first = c.List(kConfigMaps, "ns", page);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)["items"].size(), 2u);
  page.continue_token = (*first)["metadata"]["continue"];
  auto second = c.List(kConfigMaps, "ns", page);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)["items"].size(), 1u);
  ListOptions bad;
  bad.label_selector = "app in (";
  EXPECT_EQ(c.List(kConfigMaps, "ns", bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(FakeClientTest, WatchFromAResourceVersionAndFromNow) {
  FakeClient c(InNamespace("ns"));
  auto a = c.Create(kConfigMaps, "ns", Cm("a"));
  ASSERT_TRUE(a.ok());
  ListOptions from_a;
  from_a.resource_version = Rv(*a);
  auto later = c.Watch(kConfigMaps, "ns", from_a);
  auto all = c.Watch(kConfigMaps, "ns", {});
  ASSERT_TRUE(later.ok() && all.ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Cm("b")).ok());
  EXPECT_THAT(Take(**later, 1), ElementsAre("ADDED:b"));
  EXPECT_THAT(Take(**all, 2), ElementsAre("ADDED:a", "ADDED:b"));
}

TEST(FakeClientTest, CompactedHistoryIsGone) {
  FakeClient c(InNamespace("ns"));
  auto a = c.Create(kConfigMaps, "ns", Cm("a"));
  ASSERT_TRUE(a.ok());
  ListOptions from_a;
  from_a.resource_version = Rv(*a);
  auto open = c.Watch(kConfigMaps, "ns", from_a);
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Cm("b")).ok());
  c.CompactHistory();
  EXPECT_EQ(c.CurrentResourceVersion(), std::stoll(Rv(*c.Get(kConfigMaps, "ns", "b"))));
  auto gone = c.Watch(kConfigMaps, "ns", from_a);
  EXPECT_TRUE(IsGone(gone.status())) << gone.status().ToString();
  // An open watch that has not read the lost events gets an ERROR event (410) and ends.
  auto event = (*open)->Next();
  ASSERT_TRUE(event.ok() && event->has_value());
  EXPECT_EQ((*event)->type, "ERROR");
  EXPECT_EQ((*event)->object["code"], 410);
  auto end = (*open)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
}

TEST(FakeClientTest, BookmarksOnlyWhenAllowed) {
  FakeClient c(InNamespace("ns"));
  ListOptions with;
  with.allow_watch_bookmarks = true;
  ListOptions without;
  without.allow_watch_bookmarks = false;
  without.timeout_seconds = 1;
  auto w1 = c.Watch(kConfigMaps, "ns", with);
  auto w2 = c.Watch(kConfigMaps, "ns", without);
  ASSERT_TRUE(w1.ok() && w2.ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Cm("a")).ok());
  c.SendBookmarks();
  auto e1 = Take(**w1, 2);
  EXPECT_THAT(e1, ElementsAre("ADDED:a", "BOOKMARK:"));
  EXPECT_THAT(Take(**w2, 2), ElementsAre("ADDED:a")) << "then the 1 s timeout ends the stream";
}

TEST(FakeClientTest, CancelUnblocksNext) {
  FakeClient c(InNamespace("ns"));
  auto w = c.Watch(kConfigMaps, "ns", {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(c.OpenWatches(), 1);
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (*w)->Cancel();
  });
  auto next = (*w)->Next();
  canceller.join();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  EXPECT_EQ(c.OpenWatches(), 0);
}

TEST(FakeClientTest, CloseAllWatchesEndsStreamsAndDropsPendingEvents) {
  FakeClient c(InNamespace("ns"));
  auto clean = c.Watch(kConfigMaps, "ns", {});
  auto broken = c.Watch(kConfigMaps, "ns", {});
  ASSERT_TRUE(clean.ok() && broken.ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Cm("a")).ok());
  c.CloseAllWatches();
  auto end = (*clean)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value()) << "the unread ADDED is lost";
  auto broken2 = c.Watch(kConfigMaps, "ns", {});
  ASSERT_TRUE(broken2.ok());
  c.CloseAllWatches(rt::UnavailableError("connection reset"));
  EXPECT_EQ((*broken2)->Next().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(c.OpenWatches(), 0);
}

TEST(FakeClientTest, StreamsOutliveTheClient) {
  std::unique_ptr<WatchStream> w;
  {
    FakeClient c(InNamespace("ns"));
    auto opened = c.Watch(kConfigMaps, "ns", {});
    ASSERT_TRUE(opened.ok());
    w = std::move(*opened);
  }
  auto next = w->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
}

TEST(FakeClientTest, InjectedErrorsFailTheNextCallsAndAreRecorded) {
  FakeClient c(InNamespace("ns"));
  c.InjectError("create", "configmaps", rt::UnavailableError("503"), 2);
  EXPECT_EQ(c.Create(kConfigMaps, "ns", Cm("a")).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(c.Create(kConfigMaps, "ns", Cm("a")).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c.Create(kConfigMaps, "ns", Cm("a")).ok());
  c.InjectError("*", "*", rt::UnavailableError("down"), 1);
  EXPECT_FALSE(c.Get(kConfigMaps, "ns", "a").ok());
  EXPECT_TRUE(c.Get(kConfigMaps, "ns", "a").ok());
  EXPECT_EQ(c.CallCount("create", "configmaps"), 3);
  ASSERT_TRUE(c.Update(resources::kParallelRunJobs, "ns", {{"metadata", {{"name", "j"}}}}, "status")
                  .status()
                  .code() == StatusCode::kNotFound);
  EXPECT_EQ(c.Calls().at(ApiCall{"update", "parallelrun.io", "parallelrunjobs/status"}), 1);
  c.ResetCalls();
  EXPECT_TRUE(c.Calls().empty());
}

}  // namespace
}  // namespace parallelrun::op::kube
