#include "tests/cluster/kubelet/container_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace parallelrun::rt::cluster {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;

Json TestPod() {
  return Json::parse(R"({
    "metadata": {"name": "p1", "namespace": "team", "uid": "u-1",
                 "labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b"}},
    "spec": {"nodeName": "node-1", "serviceAccountName": "runner",
             "containers": [{"name": "main", "image": "busybox"}]},
    "status": {"podIP": "127.0.1.5", "hostIP": "127.0.0.1"}
  })");
}

ClusterView TestView() {
  static const std::map<std::string, Json> objects = {
      {"configmaps/team/settings", Json::parse(R"({"data": {"mode": "fast", "level": "3"}})")},
      {"secrets/team/creds", Json::parse(R"({"data": {"password": "czNjcjN0"}})")},
  };
  ClusterView view;
  view.get = [](const std::string& resource, const std::string& ns,
                const std::string& name) -> std::optional<Json> {
    auto it = objects.find(resource + "/" + ns + "/" + name);
    if (it == objects.end()) return std::nullopt;
    return it->second;
  };
  view.api_host = "127.0.0.1";
  view.api_port = 6443;
  return view;
}

TEST(FieldPathValueTest, DownwardApiPaths) {
  struct Case {
    std::string path;
    std::string want;
  };
  const Case cases[] = {
      {"metadata.name", "p1"},
      {"metadata.namespace", "team"},
      {"metadata.uid", "u-1"},
      {"metadata.labels['app']", "web"},
      {"metadata.labels['missing']", ""},
      {"metadata.annotations['a']", "b"},
      {"status.podIP", "127.0.1.5"},
      {"status.hostIP", "127.0.0.1"},
      {"spec.nodeName", "node-1"},
      {"spec.serviceAccountName", "runner"},
      {"metadata.labels", "app=\"web\"\ntier=\"front\"\n"},
  };
  for (const auto& c : cases) {
    std::string value;
    EXPECT_TRUE(FieldPathValue(TestPod(), c.path, &value)) << c.path;
    EXPECT_EQ(value, c.want) << c.path;
  }
  std::string value;
  EXPECT_FALSE(FieldPathValue(TestPod(), "spec.containers", &value));
}

TEST(ExpandVarsTest, ReferencesEscapesAndUnknownNames) {
  std::vector<std::string> env = {"A=1", "B=two"};
  EXPECT_EQ(ExpandVars("$(A)-$(B)", env), "1-two");
  EXPECT_EQ(ExpandVars("$$(A)", env), "$(A)");
  EXPECT_EQ(ExpandVars("$(C) $A $", env), "$(C) $A $");
}

TEST(BuildContainerEnvTest, ValuesFieldRefsKeyRefsAndEnvFrom) {
  Json container = Json::parse(R"j({
    "name": "main",
    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                {"secretRef": {"name": "absent", "optional": true}}],
    "env": [
      {"name": "GREETING", "value": "hi $(CFG_mode)"},
      {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
      {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
      {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
      {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
      {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
      {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
    ],
    "resources": {"limits": {"memory": "256Mi"}}
  })j");
  std::vector<std::string> env;
  std::string error;
  ASSERT_TRUE(BuildContainerEnv(TestPod(), container, TestView(), {"PATH=/bin"}, &env, &error))
      << error;
  for (const char* want :
       {"PATH=/bin", "HOSTNAME=p1", "KUBERNETES_SERVICE_HOST=127.0.0.1",
        "KUBERNETES_SERVICE_PORT=6443", "CFG_mode=fast", "CFG_level=3", "GREETING=hi fast",
        "POD_IP=127.0.1.5", "APP=web", "PASSWORD=s3cr3t", "LEVEL=3", "MEM=256"}) {
    EXPECT_THAT(env, Contains(std::string(want)));
  }
  for (const auto& e : env) EXPECT_NE(e.substr(0, 4), "OPT=");
}

TEST(BuildContainerEnvTest, MissingReferencesGiveCreateContainerConfigErrorMessages) {
  struct Case {
    std::string env;
    std::string want;
  };
  const Case cases[] = {
      {R"([{"name":"X","valueFrom":{"secretKeyRef":{"name":"gone","key":"k"}}}])",
       "secret \"gone\" not found"},
      {R"([{"name":"X","valueFrom":{"secretKeyRef":{"name":"creds","key":"k"}}}])",
       "couldn't find key k in Secret team/creds"},
      {R"([{"name":"X","valueFrom":{"configMapKeyRef":{"name":"gone","key":"k"}}}])",
       "configmap \"gone\" not found"},
      {R"([{"name":"X","valueFrom":{"configMapKeyRef":{"name":"settings","key":"k"}}}])",
       "couldn't find key k in ConfigMap team/settings"},
  };
  for (const auto& c : cases) {
    Json container = {{"name", "main"}, {"env", Json::parse(c.env)}};
    std::vector<std::string> env;
    std::string error;
    EXPECT_FALSE(BuildContainerEnv(TestPod(), container, TestView(), {}, &env, &error)) << c.env;
    EXPECT_EQ(error, c.want);
  }
}

TEST(ContainerArgvTest, CommandArgsAndImageEntrypointStandIn) {
  std::vector<std::string> env = {"N=3"};
  const std::string path = "/usr/bin:/bin";
  EXPECT_THAT(
      ContainerArgv(Json::parse(R"j({"command":["sh","-c"],"args":["echo $(N)"]})j"), env, path),
      ElementsAre("sh", "-c", "echo 3"));
  // No ENTRYPOINT needed: args[0] is a command.
  EXPECT_THAT(ContainerArgv(Json::parse(R"({"image":"busybox","args":["true"]})"), env, path),
              ElementsAre("true"));
  // The image's base name stands in for its ENTRYPOINT.
  EXPECT_THAT(ContainerArgv(
                  Json::parse(R"({"image":"docker.io/library/python:3.11","args":["-c","pass"]})"),
                  env, path),
              ElementsAre("python", "-c", "pass"));
  EXPECT_THAT(
      ContainerArgv(Json::parse(R"({"image":"registry:5000/team/tool@sha256:abc"})"), env, path),
      ElementsAre("tool"));
}

}  // namespace
}  // namespace parallelrun::rt::cluster
