// Typed reads of JSON fields that record FieldErrors (field_reader.h).

#include "runtime/jobspec/field_reader.h"

namespace parallelrun::rt::jobspec {

using json = nlohmann::json;

void FieldReader::Fail(std::string path, const json* value, std::string expected,
                       std::string problem) {
  errors_->push_back(FieldError{std::move(path), value == nullptr ? "" : ValueText(*value),
                                std::move(expected), std::move(problem)});
}

const json* FieldReader::Get(const json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

bool FieldReader::Required(const json* v, const std::string& path, const std::string& expected,
                           bool required) {
  if (v == nullptr && required) Fail(path, nullptr, expected);
  return v != nullptr;
}

bool FieldReader::Object(const json* v, const std::string& path, bool required,
                         const std::string& expected) {
  if (!Required(v, path, expected, required)) return false;
  if (!v->is_object()) {
    Fail(path, v, expected);
    return false;
  }
  return true;
}

bool FieldReader::Array(const json* v, const std::string& path, bool required,
                        const std::string& expected) {
  if (!Required(v, path, expected, required)) return false;
  if (!v->is_array()) {
    Fail(path, v, expected);
    return false;
  }
  return true;
}

std::optional<std::string> FieldReader::String(const json* v, const std::string& path,
                                               const std::string& expected, bool required) {
  if (!Required(v, path, expected, required)) return std::nullopt;
  if (!v->is_string()) {
    Fail(path, v, expected + (v->is_primitive() ? " (quote it)" : ""));
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<bool> FieldReader::Bool(const json* v, const std::string& path) {
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    const bool quoted = v->is_string() && (*v == "true" || *v == "false");
    Fail(path, v, quoted ? "true or false, without quotes" : "true or false");
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<int64_t> FieldReader::Int(const json* v, const std::string& path, int64_t min,
                                        int64_t max, bool bounded, bool required) {
  const std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  const std::string expected = bounded ? range : "an integer >= " + std::to_string(min);
  if (!Required(v, path, expected, required)) return std::nullopt;
  if (!v->is_number_integer()) {
    bool digits = false;
    if (v->is_string()) {
      const auto& s = v->get_ref<const std::string&>();
      digits = !s.empty() && std::all_of(s.begin(), s.end(),
                                         [](char c) { return (c >= '0' && c <= '9') || c == '-'; });
    }
    Fail(path, v, expected + (digits ? ", without quotes" : ""));
    return std::nullopt;
  }
  const bool too_big = v->is_number_unsigned() ? v->get<uint64_t>() > static_cast<uint64_t>(max)
                                               : v->get<int64_t>() > max;
  if (too_big) {
    Fail(path, v, range);
    return std::nullopt;
  }
  const int64_t value = v->get<int64_t>();
  if (value < min) {
    Fail(path, v, expected);
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> FieldReader::Enum(const json* v, const std::string& path,
                                             std::initializer_list<std::string_view> options) {
  if (v == nullptr) return std::nullopt;
  const std::string expected = "one of " + JoinList(options);
  if (!v->is_string()) {
    Fail(path, v, expected);
    return std::nullopt;
  }
  const auto& s = v->get_ref<const std::string&>();
  if (std::find(options.begin(), options.end(), s) == options.end()) {
    Fail(path, v, expected + DidYouMean(Suggest(s, options)));
    return std::nullopt;
  }
  return s;
}

}  // namespace parallelrun::rt::jobspec
