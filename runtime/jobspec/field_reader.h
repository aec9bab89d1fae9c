// Typed reads of the fields of a JSON document that record a FieldError for every value that is
// not what its field expects, and go on: the validator reports all errors at once. Internal to
// runtime/jobspec.
//
// A field set to null counts as absent (Get), as the Kubernetes API server prunes nulls from custom
// resources. Each read takes the field's path (`spec.inputs[1].pattern`) for its error and the
// "expected ..." text of the rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/jobspec/field_text.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::jobspec {

class FieldReader {
 public:
  using json = nlohmann::json;

  explicit FieldReader(std::vector<FieldError>* errors) : errors_(errors) {}

  // Records an error at `path` (`value` nullptr: the field is missing).
  void Fail(std::string path, const json* value, std::string expected, std::string problem = "");

  // The field's value, or nullptr when it is absent or null.
  static const json* Get(const json& object, std::string_view key);

  // Fails each key of `object` that is not in `known`, suggesting the closest known key.
  template <typename Range>
  void UnknownKeys(const json& object, const std::string& path, const Range& known) {
    for (const auto& [key, value] : object.items()) {
      if (std::find(std::begin(known), std::end(known), key) != std::end(known)) continue;
      std::vector<std::string> names(std::begin(known), std::end(known));
      Fail(Child(path, key), &value, "one of " + JoinList(names),
           "unknown field" + DidYouMean(Suggest(key, known)));
    }
  }

  // Whether `v` is present; fails a missing field when it is `required`.
  bool Required(const json* v, const std::string& path, const std::string& expected, bool required);

  // Whether `v` is present and a mapping (a list for Array); fails it when it is not.
  bool Object(const json* v, const std::string& path, bool required,
              const std::string& expected = "a mapping");
  bool Array(const json* v, const std::string& path, bool required,
             const std::string& expected = "a list");

  // The value when present and of its type; nullopt otherwise (failed when of another type, or
  // missing and `required`).
  std::optional<std::string> String(const json* v, const std::string& path,
                                    const std::string& expected = "a string",
                                    bool required = false);
  std::optional<bool> Bool(const json* v, const std::string& path);
  // An integer in [min, max]. `bounded`: the maximum is part of the rule and always shown;
  // otherwise it is the width of the field and shown only to a value beyond it.
  std::optional<int64_t> Int(const json* v, const std::string& path, int64_t min, int64_t max,
                             bool bounded = false, bool required = false);

  // Int on `object[key]`, stored in `*out` when valid.
  template <typename T>
  void ReadInt(const json& object, const std::string& parent, std::string_view key, int64_t min,
               int64_t max, T* out, bool bounded = false) {
    if (auto value = Int(Get(object, key), Child(parent, key), min, max, bounded)) {
      *out = static_cast<T>(*value);
    }
  }

  // A string that is one of `options` (a misspelt one gets a suggestion).
  std::optional<std::string> Enum(const json* v, const std::string& path,
                                  std::initializer_list<std::string_view> options);

 private:
  std::vector<FieldError>* errors_;
};

}  // namespace parallelrun::rt::jobspec
