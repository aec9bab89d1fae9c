#include "operator/cmd/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace parallelrun::op::cmd {
namespace {

using ::testing::HasSubstr;

TEST(ParseOptions, DefaultsMatchTheDocumentedOnes) {
  auto o = ParseOptions({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->metrics_bind_address, ":8080");
  EXPECT_EQ(o->health_probe_bind_address, ":8081");
  EXPECT_FALSE(o->leader_elect);
  EXPECT_EQ(o->leader_election_id, "parallelrun-operator");
  EXPECT_EQ(o->max_concurrent_reconciles, 4);
  EXPECT_EQ(o->log_format, "json");
}

TEST(ParseOptions, TakesSpaceAndEqualsForms) {
  auto o = ParseOptions({"--kubeconfig", "/k", "--namespace=ns", "--leader-elect",
                         "--max-concurrent-reconciles=8", "--log-format", "text", "--default-image",
                         "img:1"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->kubeconfig, "/k");
  EXPECT_EQ(o->ns, "ns");
  EXPECT_TRUE(o->leader_elect);
  EXPECT_EQ(o->max_concurrent_reconciles, 8);
  EXPECT_EQ(o->log_format, "text");
  EXPECT_EQ(o->default_image, "img:1");
  auto off = ParseOptions({"--leader-elect=false"});
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->leader_elect);
}

TEST(ParseOptions, ReportsEveryProblemNamingTheFlag) {
  auto o = ParseOptions({"--max-concurrent-reconciles", "0", "--log-format=xml", "--nope",
                         "--leader-elect=maybe", "--kubeconfig"});
  ASSERT_FALSE(o.ok());
  const std::string m = o.status().message();
  EXPECT_THAT(m, HasSubstr("--max-concurrent-reconciles: got 0, expected an integer >= 1"));
  EXPECT_THAT(m, HasSubstr("--log-format: got xml, expected json or text"));
  EXPECT_THAT(m, HasSubstr("--nope: unknown flag"));
  EXPECT_THAT(m, HasSubstr("--leader-elect: got maybe"));
  EXPECT_THAT(m, HasSubstr("--kubeconfig: expected a value"));
}

TEST(ParseOptions, WebhookIsOffUnlessAnAddressIsGiven) {
  auto o = ParseOptions({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->webhook_bind_address, "0");
  o = ParseOptions({"--webhook-bind-address=:9443", "--webhook-cert-dir", "/certs",
                    "--operator-pod-labels=a=1,b=2"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->webhook_bind_address, ":9443");
  EXPECT_EQ(o->webhook_cert_dir, "/certs");
  EXPECT_EQ(SplitLabels(o->operator_pod_labels), (std::vector<std::string>{"a=1", "b=2"}));
  auto bad = ParseOptions({"--operator-pod-labels=a=1,b"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("--operator-pod-labels: got \"b\", expected key=value"));
}

}  // namespace
}  // namespace parallelrun::op::cmd
