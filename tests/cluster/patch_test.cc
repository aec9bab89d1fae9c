#include "tests/cluster/patch.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::cluster {
namespace {

TEST(MergePatchTest, NullDeletesAndListsAreReplaced) {
  Json target = {{"a", 1}, {"b", {{"c", 2}, {"d", 3}}}, {"l", {1, 2}}};
  Json out = ApplyMergePatch(target, {{"b", {{"c", nullptr}}}, {"l", {3}}});
  EXPECT_EQ(out, (Json{{"a", 1}, {"b", {{"d", 3}}}, {"l", {3}}}));
}

TEST(JsonPatchTest, AppliesOperationsAndFailsOnTest) {
  Json out;
  std::string error;
  ASSERT_TRUE(ApplyJsonPatch({{"spec", {{"size", 1}}}},
                             Json::parse(R"([{"op":"replace","path":"/spec/size","value":4}])"),
                             &out, &error));
  EXPECT_EQ(out["spec"]["size"], 4);
  EXPECT_FALSE(ApplyJsonPatch({{"a", 1}}, Json::parse(R"([{"op":"test","path":"/a","value":2}])"),
                              &out, &error));
  EXPECT_FALSE(error.empty());
}

TEST(StrategicMergePatchTest, MergesContainersByNameAndDropsDirectives) {
  Json pod = Json::parse(R"({"spec":{"containers":[
      {"name":"a","image":"x:1"},{"name":"b","image":"y:1"}]},
      "metadata":{"finalizers":["f1"]}})");
  Json patch = Json::parse(R"({"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],
      "spec":{"containers":[{"name":"b","image":"y:2"},{"name":"c","image":"z:1"}]},
      "metadata":{"finalizers":["f2"]}})");
  Json out;
  std::string error;
  ASSERT_TRUE(ApplyStrategicMergePatch(pod, patch, &out, &error)) << error;
  ASSERT_EQ(out["spec"]["containers"].size(), 3u);
  EXPECT_EQ(out["spec"]["containers"][0]["image"], "x:1");
  EXPECT_EQ(out["spec"]["containers"][1]["image"], "y:2");
  EXPECT_EQ(out["metadata"]["finalizers"], (Json{"f1", "f2"}));
  EXPECT_FALSE(out.contains("$setElementOrder/containers"));
}

TEST(StrategicMergePatchTest, DeleteDirectiveRemovesAnElement) {
  Json pod = Json::parse(R"({"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]})");
  Json out;
  std::string error;
  ASSERT_TRUE(ApplyStrategicMergePatch(
      pod, Json::parse(R"({"env":[{"name":"A","$patch":"delete"}]})"), &out, &error));
  EXPECT_EQ(out["env"], Json::parse(R"([{"name":"B","value":"2"}])"));
}

}  // namespace
}  // namespace parallelrun::rt::cluster
