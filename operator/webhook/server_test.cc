#include "operator/webhook/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "operator/reconciler/certs.h"
#include "operator/webhook/test_job.h"

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Review(const json& spec_extra) {
  json job = testing::MinimalJob(spec_extra);
  return {{"apiVersion", "admission.k8s.io/v1"},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", "705ab4f5-6393-11e8-b7cc-42010a800002"},
            {"operation", "CREATE"},
            {"namespace", "team-a"},
            {"name", "score"},
            {"userInfo",
             {{"username", "alice"}, {"uid", "u-1"}, {"groups", {"dev", "system:authenticated"}}}},
            {"object", job}}}};
}

// Every pod passes (the pods' own review is pods_test.cc's).
PodReview PassingPods() {
  return {[](const std::string&, const json&) { return rt::Status::Ok(); },
          {.default_image = "parallelrun:0.1.0"}};
}

TEST(HandleAdmissionReviewTest, AllowsAPlainJobAndEchoesTheUid) {
  auto reply = HandleAdmissionReview(
      Review(json::object()),
      [](const UserInfo&) { return [](const Right&) -> rt::StatusOr<bool> { return false; }; },
      PassingPods());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ((*reply)["apiVersion"], "admission.k8s.io/v1");
  EXPECT_EQ((*reply)["kind"], "AdmissionReview");
  EXPECT_EQ((*reply)["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
  EXPECT_EQ((*reply)["response"]["allowed"], true);
}

TEST(HandleAdmissionReviewTest, DeniesWithStatusAndAsksAsTheRequestingUser) {
  UserInfo seen;
  auto reply = HandleAdmissionReview(
      Review({{"serviceAccountName", "deployer"}}),
      [&seen](const UserInfo& user) {
        seen = user;
        return [](const Right&) -> rt::StatusOr<bool> { return false; };
      },
      PassingPods());
  ASSERT_TRUE(reply.ok());
  const json& response = (*reply)["response"];
  EXPECT_EQ(response["allowed"], false);
  EXPECT_EQ(response["status"]["code"], 403);
  EXPECT_EQ(response["status"]["reason"], "Forbidden");
  EXPECT_THAT(response["status"]["message"].get<std::string>(),
              HasSubstr("spec.serviceAccountName: user \"alice\" may not create pods in "
                        "namespace \"team-a\""));
  EXPECT_EQ(seen.username, "alice");
  EXPECT_EQ(seen.uid, "u-1");
  EXPECT_EQ(seen.groups, (std::vector<std::string>{"dev", "system:authenticated"}));
}

TEST(HandleAdmissionReviewTest, NotAReviewIsAnError) {
  auto reply = HandleAdmissionReview(
      json{{"kind", "Pod"}},
      [](const UserInfo&) { return [](const Right&) -> rt::StatusOr<bool> { return true; }; },
      PassingPods());
  EXPECT_FALSE(reply.ok());
}

TEST(ServeTest, AnswersTheProbeOverTls) {
  const std::string dir = ::testing::TempDir() + "/webhook-certs-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  auto creds = reconciler::GenerateJobCredentials("op", "ns", std::chrono::system_clock::now());
  ASSERT_TRUE(creds.ok());
  std::ofstream(dir + "/tls.crt") << creds->tls_crt;
  std::ofstream(dir + "/tls.key") << creds->tls_key;
  auto server = Serve(
      {"127.0.0.1:0", dir},
      [](const UserInfo&) { return [](const Right&) -> rt::StatusOr<bool> { return true; }; },
      PassingPods());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_TRUE(Probe("127.0.0.1", (*server)->port()).ok());
  (*server)->Stop();
  EXPECT_FALSE(Probe("127.0.0.1", (*server)->port(), 500).ok());
}

TEST(ServeTest, MissingCertificateIsAnErrorNamingTheFile) {
  auto server = Serve({"127.0.0.1:0", "/nonexistent"}, nullptr, PassingPods());
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("/nonexistent/tls.crt"));
}

}  // namespace
}  // namespace parallelrun::op::webhook
