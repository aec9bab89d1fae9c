#pragma once
// Label and field selectors with the syntax of the Kubernetes API's `labelSelector` and
// `fieldSelector` query parameters.

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas (AND).
class LabelSelector {
 public:
  // Parses; on a syntax error returns nullopt and sets *error to a message naming the
  // offending part.
  static std::optional<LabelSelector> Parse(const std::string& text, std::string* error);
  // The selector of a `matchLabels` / `matchExpressions` object (LabelSelector type).
  static std::optional<LabelSelector> FromJson(const Json& selector, std::string* error);

  bool Matches(const Json& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  struct Requirement {
    std::string key;
    enum Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists } op;
    std::set<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

// `field=value`, `field==value`, `field!=value`, joined by commas.
class FieldSelector {
 public:
  static std::optional<FieldSelector> Parse(const std::string& text, std::string* error);

  // Field paths used (for checking them against what the resource supports).
  std::vector<std::string> Fields() const;
  // Value of a field of an object: "" when absent, booleans as true/false.
  static std::string FieldValue(const Json& object, const std::string& field);
  bool Matches(const Json& object) const;
  bool empty() const { return terms_.empty(); }

 private:
  struct Term {
    std::string field;
    bool negate = false;
    std::string value;
  };
  std::vector<Term> terms_;
};

}  // namespace parallelrun::rt::cluster
