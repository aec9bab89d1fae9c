#include "tests/cluster/apiserver.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "tests/cluster/protobuf.h"
#include "tests/cluster/table.h"
#include "tests/cluster/util.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt::cluster {
namespace {

const ResourceRef kCrds{"apiextensions.k8s.io", "customresourcedefinitions"};
const ResourceRef kGadgets{"test.io", "gadgets"};
const ResourceRef kConfigMaps{"", "configmaps"};

Json GadgetCrd() {
  return Json::parse(R"({"metadata":{"name":"gadgets.test.io"},"spec":{"group":"test.io",
    "scope":"Namespaced","names":{"plural":"gadgets","kind":"Gadget"},
    "versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}},
      "additionalPrinterColumns":[{"name":"Phase","type":"string","jsonPath":".status.phase"}],
      "schema":{"openAPIV3Schema":{"type":"object","properties":{
        "spec":{"type":"object","properties":{"size":{"type":"integer","default":1}}},
        "status":{"type":"object","properties":{"phase":{"type":"string"}}}}}}}]}})");
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart(); }
  void TearDown() override { api_.reset(); }
  void Restart() {
    api_.reset();
    api_ = std::make_unique<ApiServer>(dir_.string());
    std::string error;
    ASSERT_TRUE(api_->Start(&error)) << error;
  }
  void AddCrd() { ASSERT_TRUE(api_->Create(kCrds, "", GadgetCrd()).ok()); }

  fakes::TempDir tmp_{"apiserver-test"};
  std::filesystem::path dir_ = tmp_.path();
  std::unique_ptr<ApiServer> api_;
};

TEST_F(ApiServerTest, CreateAssignsMetadataAndDefaultsAndKeepsItAcrossRestarts) {
  AddCrd();
  ApiResult r =
      api_->Create(kGadgets, "default", {{"metadata", {{"name", "g"}}}, {"spec", Json::object()}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.code(), 201);
  EXPECT_EQ(r.value()["spec"]["size"], 1);
  EXPECT_EQ(r.value()["metadata"]["generation"], 1);
  EXPECT_FALSE(r.value()["metadata"].value("uid", "").empty());
  Restart();
  ApiResult again = api_->Get(kGadgets, "default", "g");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value()["metadata"]["uid"], r.value()["metadata"]["uid"]);
}

TEST_F(ApiServerTest, StaleResourceVersionConflictsAndStatusDoesNotBumpGeneration) {
  AddCrd();
  Json g = api_->Create(kGadgets, "default", {{"metadata", {{"name", "g"}}}}).value();
  Json changed = g;
  changed["spec"]["size"] = 2;
  ASSERT_TRUE(api_->Update(kGadgets, "default", "g", changed).ok());
  ApiResult stale = api_->Update(kGadgets, "default", "g", changed);
  EXPECT_EQ(stale.error().code, 409);
  Json cur = api_->Get(kGadgets, "default", "g").value();
  EXPECT_EQ(cur["metadata"]["generation"], 2);
  cur["status"] = {{"phase", "Done"}};
  ApiResult st = api_->Update(kGadgets, "default", "g", cur, "status");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st.value()["metadata"]["generation"], 2);
  Json no_rv = st.value();
  no_rv["metadata"].erase("resourceVersion");
  EXPECT_EQ(api_->Update(kGadgets, "default", "g", no_rv).error().code, 422);
}

TEST_F(ApiServerTest, WatchFromAnOldResourceVersionIsGoneAfterRestart) {
  AddCrd();
  Json g = api_->Create(kGadgets, "default", {{"metadata", {{"name", "g"}}}}).value();
  std::string old_rv = g["metadata"]["resourceVersion"];
  api_->Patch(kGadgets, "default", "g", "application/merge-patch+json", R"({"spec":{"size":3}})");
  Restart();
  ApiError error;
  ListOptions opts;
  opts.resource_version = old_rv;
  EXPECT_EQ(api_->Watch(kGadgets, "default", opts, &error), nullptr);
  EXPECT_EQ(error.code, 410);
}

TEST_F(ApiServerTest, WatchDeliversChangesAfterTheResourceVersion) {
  Json list = api_->List(kConfigMaps, "default").value();
  ListOptions opts;
  opts.resource_version = list["metadata"]["resourceVersion"];
  ApiError error;
  auto w = api_->Watch(kConfigMaps, "default", opts, &error);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(api_->Create(kConfigMaps, "default", {{"metadata", {{"name", "c"}}}}).ok());
  auto ev = w->Next(std::chrono::seconds(10));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, "ADDED");
  EXPECT_EQ(ev->object["metadata"]["name"], "c");
}

TEST_F(ApiServerTest, ListPagesWithContinueTokens) {
  for (const char* n : {"a", "b", "c"}) {
    ASSERT_TRUE(api_->Create(kConfigMaps, "default", {{"metadata", {{"name", n}}}}).ok());
  }
  ListOptions opts;
  opts.limit = 2;
  opts.field_selector = "metadata.name!=kube-root-ca.crt";
  Json page = api_->List(kConfigMaps, "default", opts).value();
  ASSERT_EQ(page["items"].size(), 2u);
  opts.continue_token = page["metadata"]["continue"];
  Json rest = api_->List(kConfigMaps, "default", opts).value();
  ASSERT_EQ(rest["items"].size(), 1u);
  EXPECT_EQ(rest["items"][0]["metadata"]["name"], "c");
  EXPECT_FALSE(rest["metadata"].contains("continue"));
}

TEST_F(ApiServerTest, TableUsesPrinterColumnsAndAges) {
  AddCrd();
  auto type = api_->registry().Find("test.io", "gadgets");
  ASSERT_TRUE(type.has_value());
  Json g = {{"metadata", {{"name", "g"}, {"creationTimestamp", "2026-01-01T00:00:00Z"}}},
            {"status", {{"phase", "Running"}}}};
  auto now = *ParseRfc3339("2026-01-01T00:05:00Z");
  Json table = RenderTable(*type, {g}, {{"resourceVersion", "7"}}, now);
  EXPECT_EQ(table["columnDefinitions"][0]["name"], "Name");
  EXPECT_EQ(table["columnDefinitions"][1]["name"], "Phase");
  EXPECT_EQ(table["rows"][0]["cells"], (Json{"g", "Running"}));
  auto pods = api_->registry().Find("", "pods");
  Json pod = {{"metadata", {{"name", "p"}, {"creationTimestamp", "2026-01-01T00:00:00Z"}}},
              {"spec", {{"containers", {{{"name", "main"}}}}}},
              {"status",
               {{"phase", "Running"},
                {"containerStatuses",
                 {{{"name", "main"},
                   {"ready", true},
                   {"restartCount", 2},
                   {"state", {{"running", Json::object()}}}}}}}}};
  Json pt = RenderTable(*pods, {pod}, Json::object(), now);
  EXPECT_EQ(pt["rows"][0]["cells"][1], "1/1");
  EXPECT_EQ(pt["rows"][0]["cells"][2], "Running");
  EXPECT_EQ(pt["rows"][0]["cells"][4], "5m");
}

TEST_F(ApiServerTest, EmptyNamespaceTakesTheRequestsAndAMismatchIsBadRequest) {
  // Protobuf bodies (Helm's release Secrets) always carry metadata.namespace, empty when unset.
  Json empty = {{"metadata", {{"name", "a"}, {"namespace", ""}}}};
  ApiResult r = api_->Create(kConfigMaps, "default", empty);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value()["metadata"]["namespace"], "default");
  Json other = {{"metadata", {{"name", "b"}, {"namespace", "kube-system"}}}};
  ApiResult bad = api_->Create(kConfigMaps, "default", other);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, 400);
  EXPECT_EQ(bad.error().reason, "BadRequest");
  EXPECT_EQ(bad.error().message,
            "the namespace of the provided object does not match the namespace sent on the "
            "request");
  Json moved = r.value();
  moved["metadata"]["namespace"] = "kube-system";
  EXPECT_EQ(api_->Update(kConfigMaps, "default", "a", moved).error().code, 400);
  Json cleared = r.value();
  cleared["metadata"]["namespace"] = "";
  ApiResult updated = api_->Update(kConfigMaps, "default", "a", cleared);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated.value()["metadata"]["namespace"], "default");
}

TEST_F(ApiServerTest, DeploymentOwnsOneReplicaSetPerTemplateAndItOwnsThePods) {
  const ResourceRef deployments{"apps", "deployments"}, sets{"apps", "replicasets"};
  const ResourceRef pods{"", "pods"};
  Json d = Json::parse(R"({"metadata":{"name":"web"},"spec":{"replicas":2,
    "selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
    "spec":{"containers":[{"name":"c","image":"busybox"}]}}}})");
  ASSERT_TRUE(api_->Create(deployments, "default", d).ok());
  auto owned_by = [&](const ResourceRef& ref, const std::string& owner_uid) {
    std::vector<Json> out;
    const Json list = api_->List(ref, "default").value();
    for (const Json& o : list["items"]) {
      for (const Json& r : o["metadata"].value("ownerReferences", Json::array())) {
        if (r.value("uid", "") == owner_uid && r.value("controller", false)) out.push_back(o);
      }
    }
    return out;
  };
  std::string uid = api_->Get(deployments, "default", "web").value()["metadata"]["uid"];
  std::vector<Json> rs;
  ASSERT_TRUE(fakes::WaitFor([&] {
    rs = owned_by(sets, uid);
    return rs.size() == 1 && owned_by(pods, rs[0]["metadata"]["uid"]).size() == 2;
  }));
  const Json first = rs[0];
  const std::string hash = first["metadata"]["labels"]["pod-template-hash"];
  EXPECT_EQ(first["metadata"]["name"], "web-" + hash);
  EXPECT_EQ(first["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash);
  // The template as stored on the Deployment, plus the hash label (what helm --wait compares).
  Json tmpl = first["spec"]["template"];
  tmpl["metadata"]["labels"].erase("pod-template-hash");
  EXPECT_EQ(tmpl, api_->Get(deployments, "default", "web").value()["spec"]["template"]);
  EXPECT_FALSE(tmpl["spec"].contains("tolerations"));  // admission defaults are for pods only
  ASSERT_TRUE(api_->Patch(deployments, "default", "web", "application/merge-patch+json",
                          R"({"spec":{"template":{"metadata":{"annotations":{"v":"2"}}}}})")
                  .ok());
  ASSERT_TRUE(fakes::WaitFor([&] {
    rs = owned_by(sets, uid);
    if (rs.size() != 2) return false;
    for (const Json& r : rs) {
      bool old = r["metadata"]["uid"] == first["metadata"]["uid"];
      if (r["spec"]["replicas"] != (old ? 0 : 2)) return false;
      if (owned_by(pods, r["metadata"]["uid"]).size() != (old ? 0u : 2u)) return false;
    }
    return true;
  }));
  ASSERT_TRUE(api_->Delete(deployments, "default", "web").ok());
  EXPECT_TRUE(fakes::WaitFor([&] {
    return api_->List(sets, "default").value()["items"].empty() &&
           api_->List(pods, "default").value()["items"].empty();
  }));
}

// A length-delimited protobuf field (wire type 2); lengths below 128.
std::string Field(int number, const std::string& bytes) {
  return std::string(1, static_cast<char>(number << 3 | 2)) +
         std::string(1, static_cast<char>(bytes.size())) + bytes;
}

TEST(ProtobufTest, DecodesTheDeleteOptionsOfHelmUninstall) {
  std::string options = std::string("\x08\x00", 2) + Field(4, "Background") + Field(5, "All");
  std::string body = std::string("k8s\0", 4) +
                     Field(1, Field(1, "v1") + Field(2, "DeleteOptions")) + Field(2, options);
  std::string error;
  auto decoded = DecodeKubernetesProtobuf(body, &error);
  ASSERT_TRUE(decoded.has_value()) << error;
  EXPECT_EQ(*decoded, Json::parse(R"({"apiVersion":"v1","kind":"DeleteOptions",
    "gracePeriodSeconds":0,"propagationPolicy":"Background","dryRun":["All"]})"));
}

TEST_F(ApiServerTest, BackgroundDeletionCollectsDependents) {
  Json owner = api_->Create(kConfigMaps, "default", {{"metadata", {{"name", "owner"}}}}).value();
  Json dep = {{"metadata",
               {{"name", "dep"},
                {"ownerReferences",
                 {{{"apiVersion", "v1"},
                   {"kind", "ConfigMap"},
                   {"name", "owner"},
                   {"uid", owner["metadata"]["uid"]}}}}}}};
  ASSERT_TRUE(api_->Create(kConfigMaps, "default", dep).ok());
  ASSERT_TRUE(api_->Delete(kConfigMaps, "default", "owner").ok());
  fakes::WaitFor([&] { return !api_->Get(kConfigMaps, "default", "dep").ok(); });
  EXPECT_EQ(api_->Get(kConfigMaps, "default", "dep").error().code, 404);
}

}  // namespace
}  // namespace parallelrun::rt::cluster

namespace parallelrun::rt::cluster {
namespace {

const ResourceRef kPods{"", "pods"};

class PodRulesTest : public ApiServerTest {
 protected:
  // The message of creating a pod with `spec_extra` and `container_extra` (Invalid expected).
  std::string Refusal(const Json& spec_extra, const Json& container_extra = Json::object()) {
    Json container = {{"name", "c"}, {"image", "busybox"}};
    if (container_extra.is_object()) container.update(container_extra);
    Json pod = {{"metadata", {{"name", "p"}}}, {"spec", {{"containers", {container}}}}};
    if (spec_extra.is_object()) pod["spec"].update(spec_extra);
    ApiResult r = api_->Create(kPods, "default", pod);
    if (r.ok()) return "created";
    EXPECT_EQ(r.error().code, 422);
    return r.error().message;
  }
};

TEST_F(PodRulesTest, EnvEntriesNeedANameAndOneSource) {
  EXPECT_EQ(Refusal({}, {{"env", {{{"value", "1"}}}}}),
            "Pod \"p\" is invalid: spec.containers[0].env[0].name: Required value");
  EXPECT_EQ(Refusal({}, {{"env",
                          {{{"name", "A"},
                            {"value", "1"},
                            {"valueFrom", {{"fieldRef", {{"fieldPath", "x"}}}}}}}}}),
            "Pod \"p\" is invalid: spec.containers[0].env[0].valueFrom: Invalid value: \"\": may "
            "not be specified when `value` is not empty");
  EXPECT_EQ(Refusal({}, {{"env", {{{"name", "A"}, {"valueFrom", Json::object()}}}}}),
            "Pod \"p\" is invalid: spec.containers[0].env[0].valueFrom: Invalid value: \"\": must "
            "specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
  EXPECT_EQ(Refusal({}, {{"env",
                          {{{"name", "A"},
                            {"valueFrom",
                             {{"fieldRef", {{"fieldPath", "x"}}},
                              {"secretKeyRef", {{"name", "s"}, {"key", "k"}}}}}}}}}),
            "Pod \"p\" is invalid: spec.containers[0].env[0].valueFrom: Invalid value: \"\": may "
            "not have more than one field specified at a time");
  EXPECT_EQ(Refusal({}, {{"env", {{{"name", "A"}, {"value", "1"}}}}}), "created");
}

TEST_F(PodRulesTest, VolumesNeedOneSourceAndAUniqueName) {
  EXPECT_EQ(Refusal({{"volumes",
                      {{{"name", "v"},
                        {"emptyDir", Json::object()},
                        {"persistentVolumeClaim", {{"claimName", "c"}}}}}}}),
            "Pod \"p\" is invalid: spec.volumes[0].persistentVolumeClaim: Forbidden: may not "
            "specify more than 1 volume type");
  EXPECT_EQ(Refusal({{"volumes", {{{"name", "v"}}}}}),
            "Pod \"p\" is invalid: spec.volumes[0]: Required value: must specify a volume type");
  EXPECT_EQ(Refusal({{"volumes", {{{"emptyDir", Json::object()}}}}}),
            "Pod \"p\" is invalid: spec.volumes[0].name: Required value");
  EXPECT_EQ(Refusal({{"volumes",
                      {{{"name", "v"}, {"emptyDir", Json::object()}},
                       {{"name", "v"}, {"emptyDir", Json::object()}}}}}),
            "Pod \"p\" is invalid: spec.volumes[1].name: Duplicate value: \"v\"");
}

TEST_F(PodRulesTest, TolerationsNeedAKnownOperatorAndEffect) {
  EXPECT_EQ(Refusal({{"tolerations", {{{"key", "k"}, {"operator", "In"}}}}}),
            "Pod \"p\" is invalid: spec.tolerations[0].operator: Unsupported value: \"In\": "
            "supported values: \"Equal\", \"Exists\"");
  EXPECT_EQ(Refusal({{"tolerations", {{{"key", "k"}, {"operator", "Exists"}, {"value", "v"}}}}}),
            "Pod \"p\" is invalid: spec.tolerations[0].operator: Invalid value: "
            "core.Toleration{Key:\"k\", Operator:\"Exists\", Value:\"v\", Effect:\"\", "
            "TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'");
  EXPECT_EQ(Refusal({{"tolerations", {{{"key", "k"}, {"effect", "NoRun"}}}}}),
            "Pod \"p\" is invalid: spec.tolerations[0].effect: Unsupported value: \"NoRun\": "
            "supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
  EXPECT_EQ(Refusal({{"tolerations", {{{"key", "k"}, {"value", "v"}, {"effect", "NoSchedule"}}}}}),
            "created");
}

TEST_F(PodRulesTest, DryRunValidatesAndStoresNothing) {
  Json pod = {{"metadata", {{"name", "p"}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  WriteOptions dry;
  dry.dry_run = true;
  ApiResult r = api_->Create(kPods, "default", pod, dry);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value()["spec"]["restartPolicy"], "Always");  // defaulted as if created
  EXPECT_FALSE(api_->Get(kPods, "default", "p").ok());
  pod["spec"]["containers"][0]["env"] = {{{"nam", "X"}}};
  ApiResult bad = api_->Create(kPods, "default", pod, dry);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, 422);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
