#include "tests/cluster/selector.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::cluster {
namespace {

struct LabelCase {
  std::string selector;
  Json labels;
  bool matches;
};

class LabelSelectorTest : public ::testing::TestWithParam<LabelCase> {};

TEST_P(LabelSelectorTest, MatchesLikeTheApiServer) {
  std::string error;
  auto sel = LabelSelector::Parse(GetParam().selector, &error);
  ASSERT_TRUE(sel.has_value()) << error;
  EXPECT_EQ(sel->Matches(GetParam().labels), GetParam().matches) << GetParam().selector;
}

INSTANTIATE_TEST_SUITE_P(
    Forms, LabelSelectorTest,
    ::testing::Values(
        LabelCase{"", Json::object(), true}, LabelCase{"app=web", {{"app", "web"}}, true},
        LabelCase{"app==web", {{"app", "db"}}, false}, LabelCase{"app!=web", Json::object(), true},
        LabelCase{"app in (web, db)", {{"app", "db"}}, true},
        LabelCase{"app notin (web,db)", {{"app", "db"}}, false},
        LabelCase{"app", {{"app", ""}}, true}, LabelCase{"!app", {{"app", "x"}}, false},
        LabelCase{"app=web,tier=gold", {{"app", "web"}, {"tier", "gold"}}, true},
        LabelCase{"app=web,tier=gold", {{"app", "web"}}, false}));

TEST(LabelSelectorTest, RejectsMalformedSelectors) {
  std::string error;
  EXPECT_FALSE(LabelSelector::Parse("app in web", &error).has_value());
  EXPECT_NE(error.find("app in web"), std::string::npos);
}

TEST(FieldSelectorTest, MatchesNestedFieldsAndNegation) {
  std::string error;
  Json event = {{"metadata", {{"name", "e1"}, {"namespace", "ns"}}},
                {"involvedObject", {{"uid", "u1"}, {"kind", "Gadget"}}}};
  auto sel = FieldSelector::Parse("involvedObject.uid=u1,involvedObject.kind!=Pod", &error);
  ASSERT_TRUE(sel.has_value()) << error;
  EXPECT_TRUE(sel->Matches(event));
  auto other = FieldSelector::Parse("metadata.name==e2", &error);
  EXPECT_FALSE(other->Matches(event));
  EXPECT_FALSE(FieldSelector::Parse("metadata.name", &error).has_value());
}

}  // namespace
}  // namespace parallelrun::rt::cluster
