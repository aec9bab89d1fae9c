#include "operator/kube/fake_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace parallelrun::op::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const Resource kWidgets{"example.com", "v1", "widgets", "Widget"};
const Resource& kPods = resources::kPods;
const Resource& kConfigMaps = resources::kConfigMaps;

json Obj(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"labels", labels}}}, {"spec", {{"size", 1}}}};
}

std::string Rv(const json& obj) { return obj["metadata"]["resourceVersion"].get<std::string>(); }

std::vector<std::string> Names(const json& list) {
  std::vector<std::string> names;
  for (const auto& item : list["items"]) names.push_back(item["metadata"]["name"]);
  return names;
}

// Reads events until `n` arrived (or the stream ends/fails, which fails the test).
std::vector<WatchEvent> Take(WatchStream& w, size_t n) {
  std::vector<WatchEvent> out;
  while (out.size() < n) {
    auto next = w.Next();
    EXPECT_TRUE(next.ok()) << next.status().ToString();
    if (!next.ok() || !next->has_value()) break;
    out.push_back(**next);
  }
  return out;
}

std::vector<std::string> Types(const std::vector<WatchEvent>& events) {
  std::vector<std::string> t;
  for (const auto& e : events) t.push_back(e.type + ":" + e.object["metadata"].value("name", ""));
  return t;
}

TEST(FakeClientTest, CreateSetsServerFields) {
  FakeClient c;
  auto created = c.Create(kWidgets, "ns", Obj("w1"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const json& m = (*created)["metadata"];
  EXPECT_EQ(m["namespace"], "ns");
  EXPECT_EQ(m["generation"], 1);
  EXPECT_EQ(m["uid"].get<std::string>().size(), 36u);
  EXPECT_FALSE(m["creationTimestamp"].get<std::string>().empty());
  EXPECT_EQ((*created)["apiVersion"], "example.com/v1");
  EXPECT_EQ((*created)["kind"], "Widget");
  EXPECT_EQ(Rv(*created), std::to_string(c.CurrentResourceVersion()));
  auto got = c.Get(kWidgets, "ns", "w1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, *created);
}

TEST(FakeClientTest, CreateExistingIsAlreadyExists) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("p")).ok());
  auto again = c.Create(kPods, "ns", Obj("p"));
  EXPECT_TRUE(IsAlreadyExists(again.status()));
  EXPECT_THAT(again.status().message(), HasSubstr("POST /api/v1/namespaces/ns/pods: 409"));
  EXPECT_TRUE(c.Create(kPods, "other", Obj("p")).ok()) << "names are per namespace";
}

TEST(FakeClientTest, CreateRejectsBadInput) {
  FakeClient c;
  EXPECT_EQ(c.Create(kPods, "ns", Obj("Upper")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Create(kPods, "ns", json{{"metadata", json::object()}}).status().code(),
            StatusCode::kInvalidArgument);
  json with_rv = Obj("p");
  with_rv["metadata"]["resourceVersion"] = "5";
  EXPECT_EQ(c.Create(kPods, "ns", with_rv).status().code(), StatusCode::kInvalidArgument);
  json other_ns = Obj("p");
  other_ns["metadata"]["namespace"] = "b";
  EXPECT_EQ(c.Create(kPods, "a", other_ns).status().code(), StatusCode::kInvalidArgument);
}

TEST(FakeClientTest, GenerateNameMakesUniqueNames) {
  FakeClient c;
  json obj = {{"metadata", {{"generateName", "job-"}}}};
  auto a = c.Create(kPods, "ns", obj);
  auto b = c.Create(kPods, "ns", obj);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_THAT((*a)["metadata"]["name"].get<std::string>(), ::testing::StartsWith("job-"));
  EXPECT_NE((*a)["metadata"]["name"], (*b)["metadata"]["name"]);
}

TEST(FakeClientTest, GetMissingIsNotFound) {
  FakeClient c;
  auto got = c.Get(kWidgets, "ns", "nope");
  EXPECT_TRUE(IsNotFound(got.status()));
  EXPECT_THAT(got.status().message(),
              HasSubstr("GET /apis/example.com/v1/namespaces/ns/widgets/nope: 404 NotFound"));
}

TEST(FakeClientTest, StaleUpdateIsConflict) {
  FakeClient c;
  auto created = c.Create(kWidgets, "ns", Obj("w"));
  json first = *created;
  first["spec"]["size"] = 2;
  auto updated = c.Update(kWidgets, "ns", first);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  json stale = *created;
  stale["spec"]["size"] = 3;
  auto conflict = c.Update(kWidgets, "ns", stale);
  EXPECT_TRUE(IsConflict(conflict.status()));
  EXPECT_THAT(conflict.status().message(), HasSubstr("the object has been modified"));
}

TEST(FakeClientTest, UnconditionalUpdateOnlyForBuiltIns) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kWidgets, "ns", Obj("w")).ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Obj("cm")).ok());
  EXPECT_EQ(c.Update(kWidgets, "ns", Obj("w")).status().code(), StatusCode::kInvalidArgument);
  json cm = Obj("cm");
  cm["data"] = {{"k", "v"}};
  auto updated = c.Update(kConfigMaps, "ns", cm);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ((*updated)["data"]["k"], "v");
}

TEST(FakeClientTest, GenerationBumpsOnSpecNotOnStatusOrMetadata) {
  FakeClient c;
  json w = *c.Create(kWidgets, "ns", Obj("w"));
  w["metadata"]["labels"]["a"] = "b";
  w = *c.Update(kWidgets, "ns", w);
  EXPECT_EQ(w["metadata"]["generation"], 1);
  w["spec"]["size"] = 5;
  w = *c.Update(kWidgets, "ns", w);
  EXPECT_EQ(w["metadata"]["generation"], 2);
  w["status"] = {{"phase", "Running"}};
  w = *c.Update(kWidgets, "ns", w, "status");
  EXPECT_EQ(w["metadata"]["generation"], 2);
  EXPECT_EQ(w["status"]["phase"], "Running");
}

TEST(FakeClientTest, StatusSubresourceSeparatesStatusFromSpec) {
  FakeClient c;
  json body = Obj("w");
  body["status"] = {{"phase", "Fake"}};
  json w = *c.Create(kWidgets, "ns", body);
  EXPECT_FALSE(w.contains("status")) << "create drops status";

  json s = w;
  s["spec"]["size"] = 99;
  s["status"] = {{"phase", "Running"}};
  w = *c.Update(kWidgets, "ns", s, "status");
  EXPECT_EQ(w["spec"]["size"], 1) << "status writes ignore spec";
  EXPECT_EQ(w["status"]["phase"], "Running");

  json m = w;
  m["status"]["phase"] = "Hacked";
  m["spec"]["size"] = 2;
  w = *c.Update(kWidgets, "ns", m);
  EXPECT_EQ(w["status"]["phase"], "Running") << "main writes keep status";
  EXPECT_EQ(w["spec"]["size"], 2);

  auto patched = c.Patch(kWidgets, "ns", "w", PatchType::kMerge,
                         {{"status", {{"phase", "Done"}}}, {"spec", {{"size", 7}}}}, "status");
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["status"]["phase"], "Done");
  EXPECT_EQ((*patched)["spec"]["size"], 2);

  EXPECT_TRUE(IsNotFound(
      c.Patch(kConfigMaps, "ns", "x", PatchType::kMerge, json::object(), "status").status()));
}

TEST(FakeClientTest, NoOpWriteKeepsResourceVersion) {
  FakeClient c;
  json w = *c.Create(kWidgets, "ns", Obj("w"));
  auto same = c.Update(kWidgets, "ns", w);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(Rv(*same), Rv(w));
  auto patched = c.Patch(kWidgets, "ns", "w", PatchType::kMerge, {{"spec", {{"size", 1}}}});
  EXPECT_EQ(Rv(*patched), Rv(w));
}

TEST(FakeClientTest, MergePatchFollowsRfc7386) {
  FakeClient c;
  json body = Obj("w", {{"a", "1"}, {"b", "2"}});
  ASSERT_TRUE(c.Create(kWidgets, "ns", body).ok());
  auto p = c.Patch(
      kWidgets, "ns", "w", PatchType::kMerge,
      {{"metadata", {{"labels", {{"a", nullptr}, {"c", "3"}}}}}, {"spec", {{"list", {1, 2}}}}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)["metadata"]["labels"], json({{"b", "2"}, {"c", "3"}}));
  EXPECT_EQ((*p)["spec"]["list"], json({1, 2}));
  EXPECT_EQ((*p)["spec"]["size"], 1);
}

TEST(FakeClientTest, JsonPatchAppliesOpsAndFailsOnTest) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kWidgets, "ns", Obj("w")).ok());
  auto p = c.Patch(kWidgets, "ns", "w", PatchType::kJson,
                   json::array({{{"op", "test"}, {"path", "/spec/size"}, {"value", 1}},
                                {{"op", "replace"}, {"path", "/spec/size"}, {"value", 4}},
                                {{"op", "add"}, {"path", "/spec/x"}, {"value", "y"}}}));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)["spec"]["size"], 4);
  EXPECT_EQ((*p)["spec"]["x"], "y");
  auto failed = c.Patch(kWidgets, "ns", "w", PatchType::kJson,
                        json::array({{{"op", "test"}, {"path", "/spec/size"}, {"value", 1}}}));
  EXPECT_EQ(failed.status().code(), StatusCode::kInvalidArgument);
}

TEST(FakeClientTest, PatchResourceVersionIsAPrecondition) {
  FakeClient c;
  json w = *c.Create(kWidgets, "ns", Obj("w"));
  ASSERT_TRUE(c.Patch(kWidgets, "ns", "w", PatchType::kMerge, {{"spec", {{"size", 2}}}}).ok());
  auto stale = c.Patch(kWidgets, "ns", "w", PatchType::kMerge,
                       {{"metadata", {{"resourceVersion", Rv(w)}}}, {"spec", {{"size", 3}}}});
  EXPECT_TRUE(IsConflict(stale.status()));
}

TEST(FakeClientTest, ApplyCreatesThenMerges) {
  FakeClient c;
  auto created = c.Patch(kWidgets, "ns", "w", PatchType::kApply, Obj("w"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)["metadata"]["generation"], 1);
  auto merged = c.Patch(kWidgets, "ns", "w", PatchType::kApply, {{"spec", {{"size", 8}}}});
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ((*merged)["spec"]["size"], 8);
  EXPECT_EQ(c.CallCount("patch", "widgets"), 2);
  EXPECT_EQ(c.CallCount("create", "widgets"), 0);
}

TEST(FakeClientTest, StrategicMergeIsRefused) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("p")).ok());
  EXPECT_EQ(c.Patch(kPods, "ns", "p", PatchType::kStrategicMerge, json::object()).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(FakeClientTest, DeleteWithFinalizersWaitsForThem) {
  FakeClient c;
  json body = Obj("w");
  body["metadata"]["finalizers"] = {"a/x", "b/y"};
  ASSERT_TRUE(c.Create(kWidgets, "ns", body).ok());
  ASSERT_TRUE(c.Delete(kWidgets, "ns", "w").ok());
  json w = *c.Get(kWidgets, "ns", "w");
  ASSERT_TRUE(w["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(w["metadata"]["generation"], 2);
  std::string ts = w["metadata"]["deletionTimestamp"];
  ASSERT_TRUE(c.Delete(kWidgets, "ns", "w").ok());
  EXPECT_EQ((*c.Get(kWidgets, "ns", "w"))["metadata"]["deletionTimestamp"], ts);

  json more = w;
  more["metadata"]["finalizers"] = {"a/x", "b/y", "c/z"};
  auto refused = c.Update(kWidgets, "ns", more);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("no new finalizers"));

  json fewer = w;
  fewer["metadata"]["finalizers"] = {"b/y"};
  w = *c.Update(kWidgets, "ns", fewer);
  EXPECT_TRUE(c.Get(kWidgets, "ns", "w").ok());
  auto last = c.Patch(kWidgets, "ns", "w", PatchType::kJson,
                      json::array({{{"op", "remove"}, {"path", "/metadata/finalizers"}}}));
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_TRUE(IsNotFound(c.Get(kWidgets, "ns", "w").status()));
}

TEST(FakeClientTest, DeletePreconditionsAndNotFound) {
  FakeClient c;
  json p = *c.Create(kPods, "ns", Obj("p"));
  DeleteOptions wrong_uid;
  wrong_uid.precondition_uid = "x";
  EXPECT_TRUE(IsConflict(c.Delete(kPods, "ns", "p", wrong_uid)));
  DeleteOptions right;
  right.precondition_uid = p["metadata"]["uid"];
  right.precondition_resource_version = Rv(p);
  EXPECT_TRUE(c.Delete(kPods, "ns", "p", right).ok());
  EXPECT_TRUE(IsNotFound(c.Delete(kPods, "ns", "p")));
}

TEST(FakeClientTest, GarbageCollectionFollowsOwnerReferences) {
  FakeClientOptions options;
  options.garbage_collection = true;
  FakeClient c(options);
  json owner = *c.Create(kWidgets, "ns", Obj("job"));
  json ref = {{"apiVersion", "example.com/v1"},
              {"kind", "Widget"},
              {"name", "job"},
              {"uid", owner["metadata"]["uid"]},
              {"controller", true}};
  json other = *c.Create(kWidgets, "ns", Obj("other"));
  json other_ref = ref;
  other_ref["name"] = "other";
  other_ref["uid"] = other["metadata"]["uid"];
  json child = Obj("child");
  child["metadata"]["ownerReferences"] = {ref};
  json shared = Obj("shared");
  shared["metadata"]["ownerReferences"] = {ref, other_ref};
  json unrelated = Obj("unrelated");
  ASSERT_TRUE(c.Create(kPods, "ns", child).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", shared).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", unrelated).ok());

  ASSERT_TRUE(c.Delete(kWidgets, "ns", "job").ok());
  EXPECT_TRUE(IsNotFound(c.Get(kPods, "ns", "child").status()));
  auto s = c.Get(kPods, "ns", "shared");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)["metadata"]["ownerReferences"], json::array({other_ref}));
  EXPECT_TRUE(c.Get(kPods, "ns", "unrelated").ok());

  DeleteOptions orphan;
  orphan.propagation_policy = "Orphan";
  ASSERT_TRUE(c.Delete(kWidgets, "ns", "other", orphan).ok());
  s = c.Get(kPods, "ns", "shared");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE((*s)["metadata"].contains("ownerReferences"));
}

TEST(FakeClientTest, NoGarbageCollectionByDefault) {
  FakeClient c;
  json owner = *c.Create(kWidgets, "ns", Obj("job"));
  json child = Obj("child");
  child["metadata"]["ownerReferences"] = {{{"uid", owner["metadata"]["uid"]}, {"name", "job"}}};
  ASSERT_TRUE(c.Create(kPods, "ns", child).ok());
  ASSERT_TRUE(c.Delete(kWidgets, "ns", "job").ok());
  EXPECT_TRUE(c.Get(kPods, "ns", "child").ok());
}

TEST(FakeClientTest, ListFiltersByLabelSelector) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("a", {{"role", "worker"}, {"job", "j"}})).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("b", {{"role", "coordinator"}, {"job", "j"}})).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("c", {{"role", "worker"}})).ok());
  ASSERT_TRUE(c.Create(kPods, "other", Obj("d", {{"role", "worker"}, {"job", "j"}})).ok());
  struct Case {
    std::string selector;
    std::vector<std::string> names;
  };
  const std::vector<Case> cases = {
      {"", {"a", "b", "c"}},
      {"role=worker", {"a", "c"}},
      {"role==worker,job=j", {"a"}},
      {"role!=worker", {"b"}},
      {"role in (coordinator, other)", {"b"}},
      {"role notin (coordinator)", {"a", "c"}},
      {"job", {"a", "b"}},
      {"!job", {"c"}},
      {"job, role in (worker,coordinator), !missing", {"a", "b"}},
  };
  for (const auto& tc : cases) {
    ListOptions o;
    o.label_selector = tc.selector;
    auto list = c.List(kPods, "ns", o);
    ASSERT_TRUE(list.ok()) << tc.selector << ": " << list.status().ToString();
    EXPECT_EQ(Names(*list), tc.names) << tc.selector;
  }
  ListOptions bad;
  bad.label_selector = "role in (a";
  EXPECT_EQ(c.List(kPods, "ns", bad).status().code(), StatusCode::kInvalidArgument);
  auto all = c.List(kPods, "", {});
  EXPECT_EQ(Names(*all).size(), 4u) << "empty namespace lists all namespaces";
}

TEST(FakeClientTest, ListFiltersByFieldSelector) {
  FakeClient c;
  json a = Obj("a");
  a["spec"]["nodeName"] = "n1";
  ASSERT_TRUE(c.Create(kPods, "ns", a).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("b")).ok());
  ListOptions o;
  o.field_selector = "metadata.name=b";
  EXPECT_THAT(Names(*c.List(kPods, "ns", o)), ElementsAre("b"));
  o.field_selector = "spec.nodeName!=n1,metadata.namespace==ns";
  EXPECT_THAT(Names(*c.List(kPods, "ns", o)), ElementsAre("b"));
  o.field_selector = "spec.nodeName=";
  EXPECT_THAT(Names(*c.List(kPods, "ns", o)), ElementsAre("b"));
}

TEST(FakeClientTest, ListPagesOverAConsistentSnapshot) {
  FakeClient c;
  for (const char* n : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(c.Create(kPods, "ns", Obj(n)).ok());
  ListOptions o;
  o.limit = 2;
  json page1 = *c.List(kPods, "ns", o);
  EXPECT_THAT(Names(page1), ElementsAre("a", "b"));
  const std::string rv = page1["metadata"]["resourceVersion"];
  // Changes between pages are not seen by the rest of the list.
  ASSERT_TRUE(c.Delete(kPods, "ns", "c").ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("bb")).ok());
  o.continue_token = page1["metadata"]["continue"];
  json page2 = *c.List(kPods, "ns", o);
  EXPECT_THAT(Names(page2), ElementsAre("c", "d"));
  EXPECT_EQ(page2["metadata"]["resourceVersion"], rv);
  o.continue_token = page2["metadata"]["continue"];
  json page3 = *c.List(kPods, "ns", o);
  EXPECT_THAT(Names(page3), ElementsAre("e"));
  EXPECT_FALSE(page3["metadata"].contains("continue"));
}

TEST(FakeClientTest, ExpiredContinueTokenIsGone) {
  FakeClient c;
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(c.Create(kPods, "ns", Obj(n)).ok());
  ListOptions o;
  o.limit = 1;
  json page1 = *c.List(kPods, "ns", o);
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("d")).ok());
  c.CompactHistory();
  o.continue_token = page1["metadata"]["continue"];
  auto gone = c.List(kPods, "ns", o);
  EXPECT_TRUE(IsGone(gone.status())) << gone.status().ToString();
}

TEST(FakeClientTest, WatchFromResourceVersionSendsOnlyLaterChanges) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("a")).ok());
  json list = *c.List(kPods, "ns", {});
  ListOptions o;
  o.resource_version = list["metadata"]["resourceVersion"];
  auto w = c.Watch(kPods, "ns", o);
  ASSERT_TRUE(w.ok());
  json b = *c.Create(kPods, "ns", Obj("b"));
  b["spec"]["size"] = 2;
  ASSERT_TRUE(c.Update(kPods, "ns", b).ok());
  ASSERT_TRUE(c.Delete(kPods, "ns", "a").ok());
  ASSERT_TRUE(c.Create(kPods, "other", Obj("x")).ok());
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Obj("cm")).ok());
  auto events = Take(**w, 3);
  EXPECT_THAT(Types(events), ElementsAre("ADDED:b", "MODIFIED:b", "DELETED:a"));
  EXPECT_EQ(Rv(events[2].object), std::to_string(c.CurrentResourceVersion() - 2))
      << "DELETED carries the deletion's resourceVersion";
}

TEST(FakeClientTest, WatchWithoutResourceVersionStartsWithSyntheticAdds) {
  FakeClient c;
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("a")).ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("b")).ok());
  auto w = c.Watch(kPods, "ns", {});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("c")).ok());
  EXPECT_THAT(Types(Take(**w, 3)), ElementsAre("ADDED:a", "ADDED:b", "ADDED:c"));
}

TEST(FakeClientTest, WatchReplaysHistoryAfterResourceVersion) {
  FakeClient c;
  json a = *c.Create(kPods, "ns", Obj("a"));
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("b")).ok());
  ListOptions o;
  o.resource_version = Rv(a);
  auto w = c.Watch(kPods, "ns", o);
  EXPECT_THAT(Types(Take(**w, 1)), ElementsAre("ADDED:b"));
}

TEST(FakeClientTest, WatchSelectorTransitionsBecomeAddedAndDeleted) {
  FakeClient c;
  ListOptions o;
  o.label_selector = "role=worker";
  o.resource_version = std::to_string(c.CurrentResourceVersion());
  auto w = c.Watch(kPods, "ns", o);
  json p = *c.Create(kPods, "ns", Obj("p", {{"role", "none"}}));
  p = *c.Patch(kPods, "ns", "p", PatchType::kMerge,
               {{"metadata", {{"labels", {{"role", "worker"}}}}}});
  p = *c.Patch(kPods, "ns", "p", PatchType::kMerge, {{"spec", {{"size", 3}}}});
  p = *c.Patch(kPods, "ns", "p", PatchType::kMerge,
               {{"metadata", {{"labels", {{"role", "none"}}}}}});
  EXPECT_THAT(Types(Take(**w, 3)), ElementsAre("ADDED:p", "MODIFIED:p", "DELETED:p"));
}

TEST(FakeClientTest, WatchOlderThanHistoryGetsGoneEvent) {
  FakeClientOptions options;
  options.history_window = 2;
  FakeClient c(options);
  json a = *c.Create(kPods, "ns", Obj("a"));
  for (const char* n : {"b", "c", "d"}) ASSERT_TRUE(c.Create(kPods, "ns", Obj(n)).ok());
  ListOptions o;
  o.resource_version = Rv(a);
  auto w = c.Watch(kPods, "ns", o);
  ASSERT_TRUE(w.ok());
  auto first = (*w)->Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->type, "ERROR");
  EXPECT_EQ((*first)->object["code"], 410);
  EXPECT_EQ((*first)->object["reason"], "Expired");
  auto end = (*w)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value()) << "the server ends the stream after the error";

  // The newest two events are still there.
  o.resource_version = std::to_string(c.CurrentResourceVersion() - 2);
  auto ok = c.Watch(kPods, "ns", o);
  EXPECT_THAT(Types(Take(**ok, 2)), ElementsAre("ADDED:c", "ADDED:d"));
}

TEST(FakeClientTest, BookmarksOnlyWhenAllowed) {
  FakeClient c;
  ListOptions with;
  with.resource_version = "0";
  ListOptions without = with;
  without.allow_watch_bookmarks = false;
  auto a = c.Watch(kPods, "ns", with);
  auto b = c.Watch(kPods, "ns", without);
  ASSERT_TRUE(c.Create(kConfigMaps, "ns", Obj("cm")).ok());
  c.SendBookmarks();
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("p")).ok());
  auto ea = Take(**a, 2);
  ASSERT_EQ(ea.size(), 2u);
  EXPECT_EQ(ea[0].type, "BOOKMARK");
  EXPECT_EQ(ea[0].object["kind"], "Pod");
  EXPECT_EQ(Rv(ea[0].object), "1");
  EXPECT_EQ(ea[1].type, "ADDED");
  auto eb = Take(**b, 1);
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(eb[0].type, "ADDED");
}

TEST(FakeClientTest, CancelUnblocksNext) {
  FakeClient c;
  auto w = c.Watch(kPods, "ns", {});
  ASSERT_TRUE(w.ok());
  std::atomic<bool> returned{false};
  std::thread reader([&] {
    auto next = (*w)->Next();
    EXPECT_TRUE(next.ok());
    EXPECT_FALSE(next->has_value());
    returned = true;
  });
  (*w)->Cancel();
  reader.join();
  EXPECT_TRUE(returned);
  EXPECT_EQ(c.OpenWatches(), 0);
}

TEST(FakeClientTest, CloseAllWatchesEndsStreamsAndDropsPendingEvents) {
  FakeClient c;
  auto clean = c.Watch(kPods, "ns", {});
  auto broken = c.Watch(kConfigMaps, "ns", {});
  ASSERT_TRUE(c.Create(kPods, "ns", Obj("p")).ok());
  EXPECT_EQ(c.OpenWatches(), 2);
  c.CloseAllWatches();
  auto end = (*clean)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_EQ(c.OpenWatches(), 0);

  auto again = c.Watch(kConfigMaps, "ns", {});
  c.CloseAllWatches(rt::UnavailableError("connection reset"));
  auto err = (*again)->Next();
  EXPECT_EQ(err.status().code(), StatusCode::kUnavailable);
}

TEST(FakeClientTest, WatchTimeoutEndsStream) {
  FakeClient c;
  ListOptions o;
  o.timeout_seconds = 1;
  auto w = c.Watch(kPods, "ns", o);
  auto start = std::chrono::steady_clock::now();
  auto end = (*w)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900));
}

TEST(FakeClientTest, InjectedErrorsFailTheNextCalls) {
  FakeClient c;
  c.InjectError("create", "pods", rt::UnavailableError("boom"), 2);
  EXPECT_EQ(c.Create(kPods, "ns", Obj("p")).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c.Create(kConfigMaps, "ns", Obj("p")).ok()) << "other resources unaffected";
  EXPECT_EQ(c.Create(kPods, "ns", Obj("p")).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c.Create(kPods, "ns", Obj("p")).ok());
  c.InjectError("*", "widgets/status", rt::PermissionDeniedError("no"));
  json w = *c.Create(kWidgets, "ns", Obj("w"));
  EXPECT_EQ(c.Update(kWidgets, "ns", w, "status").status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(c.Update(kWidgets, "ns", w, "status").ok());
  c.InjectError("watch", "*", rt::UnavailableError("down"));
  EXPECT_EQ(c.Watch(kPods, "ns", {}).status().code(), StatusCode::kUnavailable);
}

TEST(FakeClientTest, RecordsEveryVerbAndResource) {
  FakeClient c;
  json w = *c.Create(kWidgets, "ns", Obj("w"));
  (void)c.Get(kWidgets, "ns", "w");
  (void)c.Get(kWidgets, "ns", "w");
  (void)c.List(kPods, "", {});
  (void)c.Watch(kPods, "", {});
  (void)c.Update(kWidgets, "ns", w, "status");
  (void)c.Delete(kPods, "ns", "missing");
  auto calls = c.Calls();
  std::vector<std::string> seen;
  for (const auto& [call, n] : calls) {
    seen.push_back(call.verb + " " + call.group + " " + call.resource + " " + std::to_string(n));
  }
  EXPECT_THAT(seen, UnorderedElementsAre(
                        "create example.com widgets 1", "get example.com widgets 2", "list  pods 1",
                        "watch  pods 1", "update example.com widgets/status 1", "delete  pods 1"));
  EXPECT_EQ(c.CallCount("get", "widgets"), 2);
  c.ResetCalls();
  EXPECT_TRUE(c.Calls().empty());
}

TEST(FakeClientTest, ClusterScopedResourcesIgnoreNamespace) {
  const Resource nodes{"", "v1", "nodes", "Node", false};
  FakeClient c;
  auto n = c.Create(nodes, "", Obj("n1"));
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE((*n)["metadata"].contains("namespace"));
  EXPECT_TRUE(c.Get(nodes, "", "n1").ok());
  EXPECT_THAT(Names(*c.List(nodes, "", {})), ElementsAre("n1"));
}

TEST(FakeClientTest, ConcurrentWritersGetDistinctResourceVersions) {
  FakeClient c;
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r =
            c.Create(kConfigMaps, "ns", Obj("cm-" + std::to_string(t) + "-" + std::to_string(i)));
        EXPECT_TRUE(r.ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  json list = *c.List(kConfigMaps, "ns", {});
  std::set<std::string> rvs;
  for (const auto& item : list["items"]) rvs.insert(Rv(item));
  EXPECT_EQ(rvs.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(c.CurrentResourceVersion(), kThreads * kEach);
}

}  // namespace
}  // namespace parallelrun::op::kube
