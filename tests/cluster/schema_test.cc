#include "tests/cluster/schema.h"

#include <gtest/gtest.h>

namespace parallelrun::rt::cluster {
namespace {

const Json kSchema = Json::parse(R"({
  "type": "object",
  "properties": {
    "spec": {"type": "object", "required": ["size"], "properties": {
      "size": {"type": "integer", "minimum": 1, "maximum": 10},
      "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
      "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 3},
      "any": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
      "items": {"type": "array", "items": {"type": "object", "properties": {
        "n": {"type": "string"}}}}}}}})");

TEST(SchemaTest, DefaultsAbsentFields) {
  Json obj = {{"spec", {{"size", 2}}}};
  ApplySchemaDefaults(kSchema, &obj);
  EXPECT_EQ(obj["spec"]["color"], "red");
}

TEST(SchemaTest, PrunesUnknownFieldsAndReportsTheirPaths) {
  Json obj = {{"apiVersion", "x/v1"},
              {"metadata", {{"name", "n"}}},
              {"spec",
               {{"size", 2},
                {"nodeCont", 1},
                {"any", {{"free", 1}}},
                {"items", {{{"n", "a"}, {"nme", "b"}}}}}}};
  std::vector<std::string> unknown;
  PruneUnknownFields(kSchema, &obj, &unknown);
  EXPECT_EQ(unknown, (std::vector<std::string>{"spec.items[0].nme", "spec.nodeCont"}));
  EXPECT_EQ(obj["spec"]["any"]["free"], 1);
  EXPECT_TRUE(obj.contains("metadata"));
}

struct ValidationCase {
  Json spec;
  std::string expected;
};

class SchemaValidationTest : public ::testing::TestWithParam<ValidationCase> {};

TEST_P(SchemaValidationTest, ReportsTheRealServersMessage) {
  auto errors = ValidateAgainstSchema(kSchema, {{"spec", GetParam().spec}});
  ASSERT_EQ(errors.size(), 1u) << GetParam().spec.dump();
  EXPECT_EQ(errors[0].ToString(), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, SchemaValidationTest,
    ::testing::Values(
        ValidationCase{{{"size", 0}},
                       "spec.size: Invalid value: 0: spec.size in body should be greater than or "
                       "equal to 1"},
        ValidationCase{{{"size", 11}},
                       "spec.size: Invalid value: 11: spec.size in body should be less than or "
                       "equal to 10"},
        ValidationCase{{{"size", "x"}},
                       "spec.size: Invalid value: \"string\": spec.size in body must be of type "
                       "integer: \"string\""},
        ValidationCase{{{"size", 1}, {"color", "pink"}},
                       "spec.color: Unsupported value: \"pink\": supported values: \"red\", "
                       "\"blue\""},
        ValidationCase{{{"size", 1}, {"name", "ABC"}},
                       "spec.name: Invalid value: \"ABC\": spec.name in body should match "
                       "'^[a-z]+$'"},
        ValidationCase{{{"size", 1}, {"name", "ab"}},
                       "spec.name: Invalid value: \"ab\": spec.name in body should be at least 3 "
                       "chars long"},
        ValidationCase{Json::object(), "spec.size: Required value"}));

TEST(SchemaTest, StructuralCheckFindsTypelessFields) {
  Json bad = Json::parse(R"({"type":"object","properties":{"spec":{"properties":{}}}})");
  auto errors = CheckStructuralSchema(bad, "spec.versions[0].schema.openAPIV3Schema");
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].field, "spec.versions[0].schema.openAPIV3Schema.properties[spec].type");
}

}  // namespace
}  // namespace parallelrun::rt::cluster
