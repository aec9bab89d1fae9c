// MakeHttpClient against the real local test cluster (tests/cluster): an HTTPS API server with
// its own CA, admin and service-account tokens, RBAC, watches and CRDs. One cluster per test
// (CTest runs each test in its own process anyway), without a kubelet: no pods are run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <thread>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_client.h"
#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

// LeakSanitizer (asan preset): library-internal OpenSSL thread state and pplx tasks (see
// runtime/protocol/http_test.cc).
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\nleak:libcpprest.so\nleak:pplx::\n";
}

namespace parallelrun::op::kube {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = std::chrono::seconds(30);
constexpr char kNs[] = "default";

const Resource kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                     "CustomResourceDefinition", false};
const Resource kGadgets{"kubetest.parallelrun.io", "v1", "gadgets", "Gadget"};

json ConfigMap(const std::string& name, const json& labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"labels", labels}}},
          {"data", {{"a", "1"}}}};
}

std::string Rv(const json& o) { return o["metadata"].value("resourceVersion", ""); }

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Testcluster("up"));
    Connect();
  }

  void TearDown() override { EXPECT_TRUE(Testcluster("down")); }

  // tests/cluster/testcluster VERB --state DIR, with the testcluster of this build.
  ::testing::AssertionResult Testcluster(const std::string& verb) {
    rt::SpawnOptions o;
    o.argv = {std::string(PARALLELRUN_SOURCE_DIR) + "/tests/cluster/testcluster", verb, "--state",
              state_};
    if (verb == "up") o.argv.push_back("--no-kubelet");
    o.env = {std::string("TESTCLUSTER_BIN=") + PARALLELRUN_BINARY_DIR + "/bin/testcluster"};
    const std::string out = state_ + "/testcluster-" + verb + ".out";
    o.stdout_path = out;
    o.stderr_path = out;
    o.die_with_parent = false;
    auto pid = rt::Spawn(o);
    if (!pid.ok()) return ::testing::AssertionFailure() << pid.status().ToString();
    rt::ExitInfo e = rt::Wait(*pid);
    if (!e.exited || e.code != 0) {
      auto text = rt::ReadFile(out);
      return ::testing::AssertionFailure() << "testcluster " << verb << ": " << e.ToString() << "\n"
                                           << (text.ok() ? *text : text.status().ToString());
    }
    return ::testing::AssertionSuccess();
  }

  void Connect() {
    auto c = LoadKubeconfig(state_ + "/kubeconfig");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    config_ = *c;
    client_ = MakeHttpClient(config_);
  }

  // Next event that is not a BOOKMARK (counted in bookmarks_).
  std::optional<WatchEvent> NextChange(WatchStream& w) {
    while (true) {
      auto e = w.Next();
      EXPECT_TRUE(e.ok()) << e.status().ToString();
      if (!e.ok() || !e->has_value()) return std::nullopt;
      if ((*e)->type != "BOOKMARK") return **e;
      EXPECT_FALSE(Rv((*e)->object).empty());
      ++bookmarks_;
    }
  }

  fakes::TempDir tmp_{"kube-cluster"};
  std::string state_ = tmp_.path();
  RestConfig config_;
  std::unique_ptr<Client> client_;
  int bookmarks_ = 0;
};

TEST_F(ClusterTest, ConfigMapLifecycle) {
  auto created = client_->Create(resources::kConfigMaps, kNs, ConfigMap("life"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_FALSE(Rv(*created).empty());
  EXPECT_TRUE(
      IsAlreadyExists(client_->Create(resources::kConfigMaps, kNs, ConfigMap("life")).status()));

  auto got = client_->Get(resources::kConfigMaps, kNs, "life");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["data"]["a"], "1");

  json change = *created;
  change["data"]["a"] = "2";
  auto updated = client_->Update(resources::kConfigMaps, kNs, change);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_NE(Rv(*updated), Rv(*created));
  // The same change again carries the old resourceVersion: someone else wrote in between.
  auto stale = client_->Update(resources::kConfigMaps, kNs, change);
  EXPECT_TRUE(IsConflict(stale.status())) << stale.status().ToString();

  auto merged = client_->Patch(resources::kConfigMaps, kNs, "life", PatchType::kMerge,
                               {{"data", {{"b", "x"}}}});
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ((*merged)["data"], json({{"a", "2"}, {"b", "x"}}));

  auto patched = client_->Patch(resources::kConfigMaps, kNs, "life", PatchType::kJson,
                                json::parse(R"([{"op":"replace","path":"/data/a","value":"4"},
                                                {"op":"remove","path":"/data/b"}])"));
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["data"], json({{"a", "4"}}));

  auto strategic = client_->Patch(resources::kConfigMaps, kNs, "life", PatchType::kStrategicMerge,
                                  {{"data", {{"c", "y"}}}});
  ASSERT_TRUE(strategic.ok()) << strategic.status().ToString();
  EXPECT_EQ((*strategic)["data"]["c"], "y");

  json apply = ConfigMap("life");
  apply["data"] = {{"d", "z"}};
  auto applied = client_->Patch(resources::kConfigMaps, kNs, "life", PatchType::kApply, apply);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ((*applied)["data"]["d"], "z");

  DeleteOptions wrong_uid;
  wrong_uid.precondition_uid = "not-the-uid";
  EXPECT_TRUE(IsConflict(client_->Delete(resources::kConfigMaps, kNs, "life", wrong_uid)));
  DeleteOptions right_uid;
  right_uid.precondition_uid = (*created)["metadata"]["uid"];
  ASSERT_TRUE(client_->Delete(resources::kConfigMaps, kNs, "life", right_uid).ok());
  EXPECT_TRUE(IsNotFound(client_->Get(resources::kConfigMaps, kNs, "life").status()));
  Status again = client_->Delete(resources::kConfigMaps, kNs, "life");
  EXPECT_TRUE(IsNotFound(again)) << again.ToString();
  EXPECT_THAT(again.message(), HasSubstr("DELETE /api/v1/namespaces/default/configmaps/life: 404"));
}

TEST_F(ClusterTest, InvalidObjectIsInvalidArgument) {
  json bad = ConfigMap("Not_A_Valid_Name");
  auto r = client_->Create(resources::kConfigMaps, kNs, bad);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("422"));
}

TEST_F(ClusterTest, ListPagesWithLimitAndContinue) {
  std::set<std::string> want;
  for (int i = 0; i < 5; ++i) {
    std::string name = "page-" + std::to_string(i);
    ASSERT_TRUE(
        client_->Create(resources::kConfigMaps, kNs, ConfigMap(name, {{"paged", "yes"}})).ok());
    want.insert(name);
  }
  ASSERT_TRUE(client_->Create(resources::kConfigMaps, kNs, ConfigMap("unpaged")).ok());

  ListOptions o;
  o.label_selector = "paged=yes";
  o.limit = 2;
  std::set<std::string> seen;
  int pages = 0;
  do {
    auto list = client_->List(resources::kConfigMaps, kNs, o);
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    ++pages;
    EXPECT_LE((*list)["items"].size(), 2u);
    for (const json& item : (*list)["items"]) seen.insert(item["metadata"]["name"]);
    o.continue_token = (*list)["metadata"].value("continue", "");
    ASSERT_LE(pages, 5);
  } while (!o.continue_token.empty());
  EXPECT_EQ(seen, want);
  EXPECT_EQ(pages, 3);
}

TEST_F(ClusterTest, WatchSeesChangesInOrderAndBookmarks) {
  ListOptions o;
  o.label_selector = "watched=yes";
  auto list = client_->List(resources::kConfigMaps, kNs, o);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  o.resource_version = (*list)["metadata"]["resourceVersion"];
  o.timeout_seconds = 30;
  auto w = client_->Watch(resources::kConfigMaps, kNs, o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();

  ASSERT_TRUE(
      client_->Create(resources::kConfigMaps, kNs, ConfigMap("w", {{"watched", "yes"}})).ok());
  ASSERT_TRUE(client_->Create(resources::kConfigMaps, kNs, ConfigMap("ignored")).ok());
  ASSERT_TRUE(
      client_->Patch(resources::kConfigMaps, kNs, "w", PatchType::kMerge, {{"data", {{"a", "2"}}}})
          .ok());
  ASSERT_TRUE(client_->Delete(resources::kConfigMaps, kNs, "w").ok());

  std::vector<std::string> types;
  int64_t last_rv = 0;
  for (int i = 0; i < 3; ++i) {
    auto e = NextChange(**w);
    ASSERT_TRUE(e.has_value()) << "after " << types.size() << " events";
    types.push_back(e->type);
    EXPECT_EQ(e->object["metadata"]["name"], "w");
    int64_t rv = std::stoll(Rv(e->object));
    EXPECT_GT(rv, last_rv);
    last_rv = rv;
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "MODIFIED", "DELETED"}));

  // The test cluster sends a BOOKMARK every few seconds of quiet (a real one about once a
  // minute); the watch's own timeout bounds the wait.
  while (bookmarks_ == 0) {
    auto e = (*w)->Next();
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE(e->has_value()) << "the watch ended without a BOOKMARK";
    ASSERT_EQ((*e)->type, "BOOKMARK");
    EXPECT_FALSE(Rv((*e)->object).empty());
    ++bookmarks_;
  }
}

TEST_F(ClusterTest, IdleWatchEndsWithoutError) {
  ListOptions o;
  o.label_selector = "nothing=here";
  o.timeout_seconds = 1;
  o.allow_watch_bookmarks = false;
  auto w = client_->Watch(resources::kConfigMaps, kNs, o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto e = (*w)->Next();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_FALSE(e->has_value());
}

TEST_F(ClusterTest, CancelUnblocksNext) {
  ListOptions o;
  o.label_selector = "nothing=here";
  auto w = client_->Watch(resources::kConfigMaps, kNs, o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  WatchStream* stream = w->get();
  auto next = std::async(std::launch::async, [stream] {
    while (true) {
      auto e = stream->Next();
      if (!e.ok() || !e->has_value() || (*e)->type != "BOOKMARK") return e;
    }
  });
  EXPECT_EQ(next.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  const auto start = Clock::now();
  stream->Cancel();
  ASSERT_EQ(next.wait_for(kDeadline), std::future_status::ready);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  auto e = next.get();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_FALSE(e->has_value());
}

TEST_F(ClusterTest, WatchFromTooOldResourceVersionIsGone) {
  auto created = client_->Create(resources::kConfigMaps, kNs, ConfigMap("old"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_TRUE(
      client_
          ->Patch(resources::kConfigMaps, kNs, "old", PatchType::kMerge, {{"data", {{"a", "2"}}}})
          .ok());
  // A restarted test cluster keeps its objects but no watch history (as etcd compaction).
  ASSERT_TRUE(Testcluster("down"));
  ASSERT_TRUE(Testcluster("up"));
  Connect();

  ListOptions o;
  o.resource_version = Rv(*created);
  o.timeout_seconds = 30;
  auto w = client_->Watch(resources::kConfigMaps, kNs, o);
  if (!w.ok()) {
    EXPECT_TRUE(IsGone(w.status())) << w.status().ToString();
    EXPECT_THAT(w.status().message(), HasSubstr("too old resource version"));
    return;
  }
  auto e = NextChange(**w);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "ERROR");
  EXPECT_EQ(e->object["code"], 410);
}

TEST_F(ClusterTest, ServiceAccountIsForbiddenWithoutRbac) {
  const std::string token_file = state_ + "/tokens/default/default";
  fakes::WaitFor([&] { return rt::PathExists(token_file); }, kDeadline);
  ASSERT_TRUE(rt::PathExists(token_file));
  RestConfig sa = config_;
  sa.bearer_token.clear();
  sa.bearer_token_file = token_file;
  auto r = MakeHttpClient(sa)->List(resources::kSecrets, kNs, {});
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("GET /api/v1/namespaces/default/secrets: 403"));

  RestConfig stranger = config_;
  stranger.bearer_token = "not-a-token";
  r = MakeHttpClient(stranger)->List(resources::kSecrets, kNs, {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated) << r.status().ToString();
}

TEST_F(ClusterTest, ServerIsVerifiedAgainstTheClusterCa) {
  RestConfig other = config_;
  other.ca_pem.clear();  // the system's CAs do not know the test cluster's
  auto r = MakeHttpClient(other)->List(resources::kConfigMaps, kNs, {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
}

TEST_F(ClusterTest, StatusSubresourceOfACustomResource) {
  json crd = json::parse(R"({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.kubetest.parallelrun.io"},
    "spec": {"group": "kubetest.parallelrun.io", "scope": "Namespaced",
      "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
      "versions": [{"name": "v1", "served": true, "storage": true,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
          "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
          "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}})");
  auto made = client_->Create(kCrds, "", crd);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  // A new type is served once the CRD is established.
  fakes::WaitFor([&] { return client_->List(kGadgets, kNs, {}).ok(); }, kDeadline);
  json gadget = {{"apiVersion", "kubetest.parallelrun.io/v1"},
                 {"kind", "Gadget"},
                 {"metadata", {{"name", "g"}}},
                 {"spec", {{"size", 1}}}};
  auto created = client_->Create(kGadgets, kNs, gadget);
  ASSERT_TRUE(created.ok()) << created.status().ToString();

  // Through the status subresource only the status changes.
  json change = *created;
  change["status"] = {{"phase", "Running"}};
  change["spec"]["size"] = 99;
  auto updated = client_->Update(kGadgets, kNs, change, "status");
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ((*updated)["status"]["phase"], "Running");
  EXPECT_EQ((*updated)["spec"]["size"], 1);
  // A stale status update conflicts like any other.
  EXPECT_TRUE(IsConflict(client_->Update(kGadgets, kNs, change, "status").status()));

  auto patched = client_->Patch(kGadgets, kNs, "g", PatchType::kMerge,
                                {{"status", {{"phase", "Done"}}}}, "status");
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  auto got = client_->Get(kGadgets, kNs, "g");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["status"]["phase"], "Done");
  EXPECT_EQ((*got)["spec"]["size"], 1);
}

}  // namespace
}  // namespace parallelrun::op::kube
