// The job's pods judged by the test cluster's API server (its real pod validation, in process).
#include "operator/webhook/pods.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/kube/fake_client.h"
#include "operator/webhook/test_job.h"

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json Job(const json& spec_extra) { return testing::MinimalJob(spec_extra); }

AdmissionInput Create(const json& spec_extra) {
  AdmissionInput input;
  input.operation = "CREATE";
  input.ns = "team-a";
  input.name = "score";
  input.username = "alice";
  input.object = Job(spec_extra);
  return input;
}

class ReviewPodsTest : public ::testing::Test {
 protected:
  kube::FakeClient client_{{.namespaces = {"team-a"}}};
  PodReview pods_{KubePodJudge(client_), {.default_image = "parallelrun:0.1.0"}};
};

TEST_F(ReviewPodsTest, AValidJobIsAllowedAndTheDryRunStoresNoPod) {
  const Decision d =
      ReviewPods(Create({{"env", {{{"name", "A"}, {"value", "1"}}}},
                         {"tolerations", {{{"key", "gpu"}, {"operator", "Exists"}}}}}),
                 pods_);
  EXPECT_TRUE(d.allowed) << d.message;
  EXPECT_EQ(client_.CallCount("create", "pods"), 2);  // the coordinator and worker 0
  auto pods = client_.List(kube::resources::kPods, "team-a", {});
  ASSERT_TRUE(pods.ok()) << pods.status().ToString();
  EXPECT_TRUE((*pods)["items"].empty()) << (*pods)["items"].dump();
}

TEST_F(ReviewPodsTest, EnvWithoutANameIsDeniedNamingTheJobsField) {
  const Decision d = ReviewPods(
      Create({{"env", {{{"name", "A"}, {"value", "1"}}, {{"nam", "X"}, {"value", "2"}}}}}), pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 422);
  EXPECT_EQ(d.reason, "Invalid");
  EXPECT_EQ(d.message, "spec.env[1].name: Required value");
}

TEST_F(ReviewPodsTest, ATolerationWithABadOperatorIsDeniedNamingTheJobsField) {
  const Decision d = ReviewPods(
      Create(
          {{"tolerations", {{{"key", "gpu"}, {"operator", "Equals"}, {"effect", "NoSchedule"}}}}}),
      pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 422);
  EXPECT_EQ(d.message,
            "spec.tolerations[0].operator: Unsupported value: \"Equals\": supported values: "
            "\"Equal\", \"Exists\"");
}

TEST_F(ReviewPodsTest, AVolumeWithTwoSourcesIsDeniedNamingTheJobsVolume) {
  json volumes = Job(json::object())["spec"]["volumes"];
  volumes.push_back(
      {{"name", "scratch"}, {"emptyDir", json::object()}, {"hostPath", {{"path", "/tmp"}}}});
  const Decision d = ReviewPods(Create({{"volumes", volumes}}), pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.message,
            "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type");
}

TEST_F(ReviewPodsTest, SeveralCausesAreAllNamed) {
  const Decision d = ReviewPods(
      Create({{"env", {{{"value", "1"}}}},
              {"tolerations", {{{"key", "a"}, {"operator", "Exists"}, {"value", "v"}}}}}),
      pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("spec.env[0].name: Required value"));
  EXPECT_THAT(d.message, HasSubstr("; spec.tolerations[0].operator: Invalid value: "));
  EXPECT_THAT(d.message, HasSubstr("value must be empty when `operator` is 'Exists'"));
  EXPECT_THAT(d.message, Not(HasSubstr("containers")));
}

TEST_F(ReviewPodsTest, AnUnreachableApiServerDeniesSayingTheCheckFailed) {
  client_.InjectError("create", "pods",
                      rt::UnavailableError("POST /api/v1/...: connection refused"));
  const Decision d = ReviewPods(Create(json::object()), pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 500);
  EXPECT_EQ(d.reason, "InternalError");
  EXPECT_THAT(d.message, HasSubstr("could not check the job's pods with the API server: "));
  EXPECT_THAT(d.message, HasSubstr("connection refused"));
}

TEST_F(ReviewPodsTest, AForbiddenPodIsDeniedWithTheApiServersReason) {
  client_.InjectError(
      "create", "pods",
      rt::PermissionDeniedError("POST /api/v1/namespaces/team-a/pods: 403 Forbidden: pods \"x\" is "
                                "forbidden: violates PodSecurity \"restricted:latest\""));
  const Decision d = ReviewPods(Create(json::object()), pods_);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.code, 403);
  EXPECT_EQ(d.message,
            "the job's coordinator pod would be refused: pods \"x\" is forbidden: violates "
            "PodSecurity \"restricted:latest\"");
}

TEST_F(ReviewPodsTest, AFullQuotaDoesNotRefuseTheJob) {
  client_.InjectError("create", "pods",
                      rt::PermissionDeniedError(
                          "POST /api/v1/namespaces/team-a/pods: 403 Forbidden: pods \"x\" is "
                          "forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: "
                          "pods=2"),
                      2);
  EXPECT_TRUE(ReviewPods(Create(json::object()), pods_).allowed);
}

TEST_F(ReviewPodsTest, UpdatesOfRunControlsOnlyAndDeletesAreNotJudged) {
  AdmissionInput update = Create({{"suspend", true}});
  update.operation = "UPDATE";
  update.old_object = Job(json::object());
  EXPECT_TRUE(ReviewPods(update, pods_).allowed);
  AdmissionInput del = Create(json::object());
  del.operation = "DELETE";
  EXPECT_TRUE(ReviewPods(del, pods_).allowed);
  EXPECT_EQ(client_.CallCount("create", "pods"), 0);
  update.object = Job({{"env", {{{"nam", "X"}}}}});  // a real spec change is judged
  EXPECT_FALSE(ReviewPods(update, pods_).allowed);
}

TEST(JobFieldOfTest, MapsThePodsPathsToTheJobsFields) {
  rt::JobSpec spec;
  spec.pod = {{"env", {{{"name", "A"}}}}, {"resources", {{"limits", {{"cpu", "1"}}}}}};
  spec.volumes = json::array({{{"name", "data"}, {"emptyDir", json::object()}}});
  const json pod = {
      {"spec",
       {{"containers",
         {{{"name", "worker"},
           {"env", {{{"name", "POD_IP"}}, {{"name", "A"}}, {{"name", "AZUREML_MODEL_DIR"}}}}}}},
        {"volumes", {spec.volumes[0], {{"name", "parallelrun-secret"}}}}}}};
  EXPECT_EQ(JobFieldOf("spec.containers[0].env[1].name", pod, spec), "spec.env[0].name");
  EXPECT_EQ(JobFieldOf("spec.containers[0].env[0].name", pod, spec), "");  // the operator's
  EXPECT_EQ(JobFieldOf("spec.containers[0].env[2]", pod, spec), "");
  EXPECT_EQ(JobFieldOf("spec.volumes[0].emptyDir", pod, spec), "spec.volumes[0].emptyDir");
  EXPECT_EQ(JobFieldOf("spec.volumes[1].secret", pod, spec), "");
  EXPECT_EQ(JobFieldOf("spec.containers[0].resources.limits[cpu]", pod, spec),
            "spec.resources.limits[cpu]");
  EXPECT_EQ(JobFieldOf("spec.containers[0].securityContext.runAsUser", pod, spec),
            "spec.securityContext.runAsUser");
  EXPECT_EQ(JobFieldOf("spec.securityContext.fsGroup", pod, spec), "spec.securityContext.fsGroup");
  EXPECT_EQ(JobFieldOf("spec.nodeSelector", pod, spec), "spec.nodeSelector");
  EXPECT_EQ(JobFieldOf("spec.affinity.nodeAffinity", pod, spec), "spec.affinity.nodeAffinity");
  EXPECT_EQ(JobFieldOf("spec.tolerationsX", pod, spec), "");
  EXPECT_EQ(JobFieldOf("metadata.annotations", pod, spec), "spec.podAnnotations");
}

}  // namespace
}  // namespace parallelrun::op::webhook
