#include "runtime/cmd/local_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace parallelrun::rt::cmd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(LocalEnvTest, EntriesInOrderWithLaterOverridesAndKubernetesExpansion) {
  auto pod = nlohmann::json::parse(R"js({"image": "x", "env": [
      {"name": "MODEL", "value": "iris"},
      {"name": "MODEL_DIR", "value": "/models/$(MODEL)/$(UNKNOWN)/$$(MODEL)"},
      {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
      {"name": "EMPTY"},
      {"name": "MODEL", "value": "wine"}]})js");
  auto env = LocalEnvFromSpec(pod);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_THAT(env->entries,
              ElementsAre("MODEL=wine", "MODEL_DIR=/models/iris/$(UNKNOWN)/$(MODEL)", "EMPTY="));
  EXPECT_THAT(env->skipped, ElementsAre("TOKEN"));
}

TEST(LocalEnvTest, NoEnvIsNothing) {
  auto env = LocalEnvFromSpec(nlohmann::json::object());
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(env->entries.empty());
}

TEST(LocalEnvTest, MalformedEntriesNameTheField) {
  auto bad = [](const char* text) {
    auto env = LocalEnvFromSpec(nlohmann::json::parse(text));
    EXPECT_FALSE(env.ok()) << text;
    return env.ok() ? std::string() : env.status().message();
  };
  EXPECT_THAT(bad(R"({"env": ["A=1"]})"), HasSubstr("spec.env[0]: expected an object"));
  EXPECT_THAT(bad(R"({"env": [{"value": "1"}]})"), HasSubstr("spec.env[0].name"));
  EXPECT_THAT(bad(R"({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": 3}]})"),
              HasSubstr("spec.env[1].value: expected a string (quote it), got 3"));
}

}  // namespace
}  // namespace parallelrun::rt::cmd
