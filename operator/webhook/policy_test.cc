#include "operator/webhook/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// A plain job: one PVC, the defaults.
json Job() {
  return json::parse(R"({
    "apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
    "metadata": {"name": "score", "namespace": "team-a"},
    "spec": {
      "entryScript": "score.py",
      "sourceDirectory": {"volume": "data", "path": "code"},
      "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
                  {"name": "scratch", "emptyDir": {}}],
      "inputs": [{"name": "docs", "type": "file", "source": {"volume": "data", "path": "in/"}}],
      "output": {"volume": "data", "path": "out/"}
    }
  })");
}

// Answers from a set of rights the user holds; records what was asked.
struct FakeRights {
  std::set<std::string> held;  // Right::Describe()
  std::vector<std::string> asked;
  RightChecker Checker() {
    return [this](const Right& r) -> rt::StatusOr<bool> {
      asked.push_back(r.Describe());
      return held.count(r.Describe()) > 0;
    };
  }
};

const std::string kCreatePods = "create pods in namespace \"team-a\"";

Decision Create(const json& job, FakeRights& rights) {
  return Review({"CREATE", "team-a", "score", "alice", job, json()}, rights.Checker());
}

TEST(PolicyTest, PlainJobNeedsNoRightsAndAsksNothing) {
  FakeRights rights;
  const Decision d = Create(Job(), rights);
  EXPECT_TRUE(d.allowed) << d.message;
  EXPECT_TRUE(rights.asked.empty());
}

TEST(PolicyTest, RestrictedSecurityContextIsFree) {
  json job = Job();
  job["spec"]["securityContext"] = {{"runAsUser", 2000},
                                    {"runAsNonRoot", true},
                                    {"fsGroup", 3000},
                                    {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  job["spec"]["serviceAccountName"] = "default";
  job["spec"]["podAnnotations"] = {{"example.com/team", "vision"}};
  FakeRights rights;
  EXPECT_TRUE(Create(job, rights).allowed);
  EXPECT_TRUE(rights.asked.empty());
}

struct Case {
  const char* name;
  void (*mutate)(json& spec);
  const char* field;
  const char* what;
};

const Case kNeedPods[] = {
    {"HostPath",
     [](json& s) {
       s["volumes"].push_back({{"name", "h"}, {"hostPath", {{"path", "/"}}}});
     },
     "spec.volumes[2].hostPath", "hostPath volumes"},
    {"Projected",
     [](json& s) {
       s["volumes"].push_back({{"name", "p"}, {"projected", {{"sources", json::array()}}}});
     },
     "spec.volumes[2].projected", "projected volumes"},
    {"RunAsRoot",
     [](json& s) {
       s["securityContext"] = {{"runAsUser", 0}};
     },
     "spec.securityContext.runAsUser", "runAsUser 0"},
    {"RunAsNonRootFalse",
     [](json& s) {
       s["securityContext"] = {{"runAsNonRoot", false}};
     },
     "spec.securityContext.runAsNonRoot", "runAsNonRoot false"},
    {"Privileged",
     [](json& s) {
       s["securityContext"] = {{"privileged", true}};
     },
     "spec.securityContext.privileged", "securityContext.privileged"},
    {"Sysctls",
     [](json& s) {
       s["securityContext"] = {{"sysctls", json::array()}};
     },
     "spec.securityContext.sysctls", "securityContext.sysctls"},
    {"SeccompUnconfined",
     [](json& s) {
       s["securityContext"] = {{"seccompProfile", {{"type", "Unconfined"}}}};
     },
     "spec.securityContext.seccompProfile", "seccompProfile"},
    {"ServiceAccount", [](json& s) { s["serviceAccountName"] = "deployer"; },
     "spec.serviceAccountName", "another ServiceAccount"},
    {"NodeSelector",
     [](json& s) {
       s["nodeSelector"] = {{"node-role.kubernetes.io/control-plane", ""}};
     },
     "spec.nodeSelector", "nodeSelector"},
    {"Tolerations",
     [](json& s) {
       s["tolerations"] = json::array({{{"operator", "Exists"}}});
     },
     "spec.tolerations", "tolerations"},
    {"Affinity",
     [](json& s) {
       s["affinity"] = {{"nodeAffinity", json::object()}};
     },
     "spec.affinity", "affinity"},
    {"PriorityClass", [](json& s) { s["priorityClassName"] = "system-node-critical"; },
     "spec.priorityClassName", "priorityClassName"},
    {"AppArmorAnnotation",
     [](json& s) {
       s["podAnnotations"] = {
           {"container.apparmor.security.beta.kubernetes.io/worker", "unconfined"}};
     },
     "spec.podAnnotations.container.apparmor.security.beta.kubernetes.io/worker", "annotations"},
};

class NeedsPodsTest : public ::testing::TestWithParam<Case> {};

TEST_P(NeedsPodsTest, RefusedWithoutCreatePodsNamingFieldAndRight) {
  json job = Job();
  GetParam().mutate(job["spec"]);
  FakeRights rights;
  const Decision d = Create(job, rights);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 403);
  EXPECT_THAT(d.message, HasSubstr(std::string(GetParam().field) +
                                   ": user \"alice\" may not create pods in namespace \"team-a\""));
  EXPECT_THAT(d.message, HasSubstr(GetParam().what));
}

TEST_P(NeedsPodsTest, AllowedWithCreatePods) {
  json job = Job();
  GetParam().mutate(job["spec"]);
  FakeRights rights{{kCreatePods}};
  const Decision d = Create(job, rights);
  EXPECT_TRUE(d.allowed) << d.message;
  EXPECT_EQ(rights.asked, std::vector<std::string>{kCreatePods});
}

INSTANTIATE_TEST_SUITE_P(Fields, NeedsPodsTest, ::testing::ValuesIn(kNeedPods),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PolicyTest, SecretKeyRefNeedsCreatePodsAndGetSecret) {
  json job = Job();
  job["spec"]["env"] = json::parse(R"([{"name": "A", "value": "1"},
      {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}])");
  FakeRights pods_only{{kCreatePods}};
  Decision d = Create(job, pods_only);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.message,
            "spec.env[1].valueFrom.secretKeyRef: user \"alice\" may not get secret \"db\" in "
            "namespace \"team-a\" (needed for secretKeyRef env)");
  FakeRights both{{kCreatePods, "get secret \"db\" in namespace \"team-a\""}};
  EXPECT_TRUE(Create(job, both).allowed);
}

TEST(PolicyTest, ConfigMapKeyRefNeedsGetConfigMap) {
  json job = Job();
  job["spec"]["env"] = json::parse(
      R"([{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}])");
  FakeRights none;
  const Decision d = Create(job, none);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("may not create pods"));
  EXPECT_THAT(d.message, HasSubstr("may not get configmap \"settings\""));
}

TEST(PolicyTest, SecretVolumeNeedsOnlyGetOnThatSecret) {
  json job = Job();
  job["spec"]["volumes"].push_back({{"name", "s"}, {"secret", {{"secretName", "creds"}}}});
  FakeRights none;
  Decision d = Create(job, none);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.message,
            "spec.volumes[2].secret: user \"alice\" may not get secret \"creds\" in namespace "
            "\"team-a\" (needed for secret volumes)");
  FakeRights get{{"get secret \"creds\" in namespace \"team-a\""}};
  EXPECT_TRUE(Create(job, get).allowed);
}

TEST(PolicyTest, EveryRefusalIsListedAndEachRightAskedOnce) {
  json job = Job();
  job["spec"]["volumes"].push_back({{"name", "h"}, {"hostPath", {{"path", "/"}}}});
  job["spec"]["securityContext"] = {{"runAsUser", 0}};
  job["spec"]["serviceAccountName"] = "deployer";
  FakeRights none;
  const Decision d = Create(job, none);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("spec.volumes[2].hostPath"));
  EXPECT_THAT(d.message, HasSubstr("spec.securityContext.runAsUser"));
  EXPECT_THAT(d.message, HasSubstr("spec.serviceAccountName"));
  EXPECT_EQ(none.asked, std::vector<std::string>{kCreatePods});
}

TEST(PolicyTest, CheckerErrorDenies) {
  json job = Job();
  job["spec"]["serviceAccountName"] = "deployer";
  const Decision d = Review({"CREATE", "team-a", "score", "alice", job, json()},
                            [](const Right&) -> rt::StatusOr<bool> {
                              return rt::UnavailableError("connection refused");
                            });
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 500);
  EXPECT_THAT(d.message, HasSubstr("connection refused"));
}

TEST(PolicyTest, SemanticallyInvalidSpecIsRefusedNamingTheField) {
  json job = Job();
  job["spec"]["arguments"] = {"$(inputs.nope)"};
  FakeRights rights;
  const Decision d = Create(job, rights);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 422);
  EXPECT_THAT(d.message, HasSubstr("spec.arguments[0]"));
}

// The rules the CRD schema cannot express (its header comment lists them) are the webhook's.
TEST(PolicyTest, EveryRuleTheSchemaCannotSayIsRefusedNamingTheField) {
  struct Case {
    const char* field;
    std::function<void(json&)> change;
  };
  const std::vector<Case> cases = {
      {"spec.arguments[1]",
       [](json& j) {
         j["spec"]["arguments"] = {"--lexicon", "$(sideInputs.lexicn)/words.tsv"};
       }},
      {"spec.inputs[0].source.volume",
       [](json& j) { j["spec"]["inputs"][0]["source"]["volume"] = "nowhere"; }},
      {"spec.inputs[0].header", [](json& j) { j["spec"]["inputs"][0]["header"] = true; }},
      {"metadata.name", [](json& j) { j["metadata"]["name"] = std::string(33, 'a'); }},
      {"spec.miniBatchSize", [](json& j) { j["spec"]["miniBatchSize"] = "2MB"; }},
  };
  for (const Case& c : cases) {
    json job = Job();
    c.change(job);
    FakeRights rights;
    const Decision d = Create(job, rights);
    EXPECT_FALSE(d.allowed) << c.field;
    EXPECT_EQ(d.code, 422) << c.field;
    EXPECT_THAT(d.message, HasSubstr(c.field));
  }
}

TEST(PolicyTest, ReservedVolumeNameIsRefused) {
  json job = Job();
  job["spec"]["volumes"][1]["name"] = "parallelrun-secret";
  job["spec"]["volumes"][1]["emptyDir"] = json::object();
  FakeRights rights;
  const Decision d = Create(job, rights);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("spec.volumes[1].name"));
}

TEST(PolicyTest, GenerateNameIsAccepted) {
  json job = Job();
  job["metadata"].erase("name");
  job["metadata"]["generateName"] = "score-";
  FakeRights rights;
  EXPECT_TRUE(Review({"CREATE", "team-a", "", "alice", job, json()}, rights.Checker()).allowed);
}

TEST(PolicyTest, UpdateWithTheSameSpecIsAllowedWithoutQuestions) {
  json old_job = Job();
  old_job["spec"]["volumes"].push_back({{"name", "h"}, {"hostPath", {{"path", "/"}}}});
  json job = old_job;
  job["metadata"]["finalizers"] = {"parallelrun.io/finalizer"};
  FakeRights none;
  EXPECT_TRUE(Review({"UPDATE", "team-a", "score", "system:serviceaccount:x:op", job, old_job},
                     none.Checker())
                  .allowed);
  EXPECT_TRUE(none.asked.empty());
}

TEST(PolicyTest, SuspendingAPrivilegedJobNeedsNoRights) {
  json old_job = Job();
  old_job["spec"]["volumes"].push_back({{"name", "h"}, {"hostPath", {{"path", "/data"}}}});
  json suspend = old_job;
  suspend["spec"]["suspend"] = true;
  suspend["spec"]["ttlSecondsAfterFinished"] = 60;
  FakeRights none;
  EXPECT_TRUE(
      Review({"UPDATE", "team-a", "score", "alice", suspend, old_job}, none.Checker()).allowed);
  EXPECT_TRUE(none.asked.empty());
}

TEST(PolicyTest, AnyOtherChangeToAPrivilegedJobIsCheckedInFull) {
  // Regression: a new image on bob's hostPath job would run alice's code with bob's volume.
  json old_job = Job();
  old_job["spec"]["volumes"].push_back({{"name", "h"}, {"hostPath", {{"path", "/data"}}}});
  json image = old_job;
  image["spec"]["image"] = "alice/tool:1";
  FakeRights none;
  const Decision d = Review({"UPDATE", "team-a", "score", "alice", image, old_job}, none.Checker());
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("spec.volumes[2].hostPath: user \"alice\" may not"));
  FakeRights pods{{kCreatePods}};
  EXPECT_TRUE(Review({"UPDATE", "team-a", "score", "bob", image, old_job}, pods.Checker()).allowed);
}

TEST(PolicyTest, DeleteIsNotReviewed) {
  FakeRights none;
  EXPECT_TRUE(
      Review({"DELETE", "team-a", "score", "alice", json(), Job()}, none.Checker()).allowed);
}

}  // namespace
}  // namespace parallelrun::op::webhook
