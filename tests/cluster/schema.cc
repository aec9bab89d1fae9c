#include "tests/cluster/schema.h"

#include <cmath>
#include <regex>

namespace parallelrun::rt::cluster {
namespace {

std::string Join(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}

bool PreservesUnknown(const Json& schema) {
  return schema.value("x-kubernetes-preserve-unknown-fields", false);
}

// How the real server prints a value in "Invalid value: X".
std::string ValueRepr(const Json& v) {
  if (v.is_string()) return Json(v.get<std::string>()).dump();
  if (v.is_object()) return "\"object\"";
  if (v.is_array()) return "\"array\"";
  if (v.is_null()) return "\"null\"";
  return v.dump();
}

std::string TypeOf(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::floor(d) == d ? "integer" : "number";
  }
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

bool TypeMatches(const std::string& type, const Json& v) {
  std::string actual = TypeOf(v);
  if (type == actual) return true;
  if (type == "number" && actual == "integer") return true;
  return false;
}

std::string NumberRepr(const Json& n) {
  if (n.is_number_float()) {
    double d = n.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  }
  return n.dump();
}

void Validate(const Json& schema, const Json& v, const std::string& path,
              std::vector<FieldError>* errors) {
  if (!schema.is_object()) return;
  const std::string shown = path.empty() ? "<root>" : path;
  if (v.is_null()) {
    if (schema.value("nullable", false)) return;
    if (schema.contains("type")) {
      errors->push_back({"FieldValueTypeInvalid", shown,
                         "Invalid value: \"null\": " + shown + " in body must be of type " +
                             schema["type"].get<std::string>() + ": \"null\""});
    }
    return;
  }
  if (schema.value("x-kubernetes-int-or-string", false)) {
    if (!v.is_string() && TypeOf(v) != "integer") {
      errors->push_back({"FieldValueTypeInvalid", shown,
                         "Invalid value: " + ValueRepr(v) + ": " + shown +
                             " in body must be of type integer or string: \"" + TypeOf(v) + "\""});
      return;
    }
  } else if (schema.contains("type") && schema["type"].is_string()) {
    std::string type = schema["type"];
    if (!TypeMatches(type, v)) {
      errors->push_back({"FieldValueTypeInvalid", shown,
                         "Invalid value: \"" + TypeOf(v) + "\": " + shown +
                             " in body must be of type " + type + ": \"" + TypeOf(v) + "\""});
      return;
    }
  }
  if (schema.contains("enum") && schema["enum"].is_array()) {
    bool found = false;
    for (const Json& e : schema["enum"]) found = found || e == v;
    if (!found) {
      std::string supported;
      for (const Json& e : schema["enum"]) {
        if (!supported.empty()) supported += ", ";
        supported += e.dump();
      }
      errors->push_back({"FieldValueNotSupported", shown,
                         "Unsupported value: " + v.dump() + ": supported values: " + supported});
    }
  }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    // Lengths count characters (code points), not bytes.
    size_t chars = 0;
    for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
    if (schema.contains("minLength") && chars < schema["minLength"].get<size_t>()) {
      errors->push_back({"FieldValueInvalid", shown,
                         "Invalid value: " + ValueRepr(v) + ": " + shown +
                             " in body should be at least " + schema["minLength"].dump() +
                             " chars long"});
    }
    if (schema.contains("maxLength") && chars > schema["maxLength"].get<size_t>()) {
      errors->push_back(
          {"FieldValueTooLong", shown,
           "Too long: may not be more than " + schema["maxLength"].dump() + " bytes"});
    }
    if (schema.contains("pattern") && schema["pattern"].is_string()) {
      std::string pattern = schema["pattern"];
      try {
        if (!std::regex_search(s, std::regex(pattern, std::regex::ECMAScript))) {
          errors->push_back({"FieldValueInvalid", shown,
                             "Invalid value: " + ValueRepr(v) + ": " + shown +
                                 " in body should match '" + pattern + "'"});
        }
      } catch (const std::regex_error&) {
        // An unusable pattern was reported when the CRD was registered.
      }
    }
  }
  if (v.is_number()) {
    double d = v.get<double>();
    if (schema.contains("minimum")) {
      double m = schema["minimum"].get<double>();
      bool excl = schema.value("exclusiveMinimum", false);
      if (excl ? d <= m : d < m) {
        errors->push_back({"FieldValueInvalid", shown,
                           "Invalid value: " + NumberRepr(v) + ": " + shown +
                               " in body should be " +
                               (excl ? "greater than " : "greater than or equal to ") +
                               NumberRepr(schema["minimum"])});
      }
    }
    if (schema.contains("maximum")) {
      double m = schema["maximum"].get<double>();
      bool excl = schema.value("exclusiveMaximum", false);
      if (excl ? d >= m : d > m) {
        errors->push_back(
            {"FieldValueInvalid", shown,
             "Invalid value: " + NumberRepr(v) + ": " + shown + " in body should be " +
                 (excl ? "less than " : "less than or equal to ") + NumberRepr(schema["maximum"])});
      }
    }
  }
  if (v.is_array()) {
    if (schema.contains("minItems") && v.size() < schema["minItems"].get<size_t>()) {
      errors->push_back({"FieldValueInvalid", shown,
                         "Invalid value: " + std::to_string(v.size()) + ": " + shown +
                             " in body should have at least " + schema["minItems"].dump() +
                             " items"});
    }
    if (schema.contains("maxItems") && v.size() > schema["maxItems"].get<size_t>()) {
      errors->push_back({"FieldValueTooMany", shown,
                         "Too many: " + std::to_string(v.size()) + ": must have at most " +
                             schema["maxItems"].dump() + " items"});
    }
    if (schema.contains("items")) {
      for (size_t i = 0; i < v.size(); ++i) {
        Validate(schema["items"], v[i], path + "[" + std::to_string(i) + "]", errors);
      }
    }
  }
  if (v.is_object()) {
    if (schema.contains("required") && schema["required"].is_array()) {
      for (const Json& r : schema["required"]) {
        std::string key = r.get<std::string>();
        if (!v.contains(key)) {
          errors->push_back({"FieldValueRequired", Join(path, key), "Required value"});
        }
      }
    }
    const Json* props = schema.contains("properties") ? &schema["properties"] : nullptr;
    for (const auto& [k, child] : v.items()) {
      if (path.empty() && (k == "metadata" || k == "apiVersion" || k == "kind")) continue;
      if (props != nullptr && props->contains(k)) {
        Validate((*props)[k], child, Join(path, k), errors);
      } else if (schema.contains("additionalProperties") &&
                 schema["additionalProperties"].is_object()) {
        Validate(schema["additionalProperties"], child, Join(path, k), errors);
      }
    }
    if (schema.contains("minProperties") && v.size() < schema["minProperties"].get<size_t>()) {
      errors->push_back({"FieldValueInvalid", shown,
                         "Invalid value: " + std::to_string(v.size()) + ": " + shown +
                             " in body should have at least " + schema["minProperties"].dump() +
                             " properties"});
    }
  }
  if (schema.contains("allOf") && schema["allOf"].is_array()) {
    for (const Json& s : schema["allOf"]) Validate(s, v, path, errors);
  }
}

}  // namespace

void ApplySchemaDefaults(const Json& schema, Json* value) {
  if (!schema.is_object()) return;
  if (value->is_object()) {
    if (schema.contains("properties")) {
      for (const auto& [k, child] : schema["properties"].items()) {
        if (!value->contains(k) && child.is_object() && child.contains("default")) {
          (*value)[k] = child["default"];
        }
        if (value->contains(k)) ApplySchemaDefaults(child, &(*value)[k]);
      }
    }
    if (schema.contains("additionalProperties") && schema["additionalProperties"].is_object()) {
      for (auto& [k, child] : value->items()) {
        (void)k;
        ApplySchemaDefaults(schema["additionalProperties"], &child);
      }
    }
  } else if (value->is_array() && schema.contains("items")) {
    for (Json& item : *value) ApplySchemaDefaults(schema["items"], &item);
  }
}

namespace {
void Prune(const Json& schema, Json* value, const std::string& path, bool root,
           std::vector<std::string>* unknown) {
  if (!schema.is_object()) return;
  if (value->is_object()) {
    bool embedded = schema.value("x-kubernetes-embedded-resource", false);
    const Json* props = schema.contains("properties") ? &schema["properties"] : nullptr;
    bool has_additional =
        schema.contains("additionalProperties") &&
        (schema["additionalProperties"].is_object() || schema["additionalProperties"] == true);
    for (auto it = value->begin(); it != value->end();) {
      const std::string key = it.key();
      if ((root || embedded) && (key == "apiVersion" || key == "kind" || key == "metadata")) {
        ++it;
        continue;
      }
      if (props != nullptr && props->contains(key)) {
        Prune((*props)[key], &it.value(), Join(path, key), false, unknown);
        ++it;
      } else if (has_additional) {
        if (schema["additionalProperties"].is_object()) {
          Prune(schema["additionalProperties"], &it.value(), Join(path, key), false, unknown);
        }
        ++it;
      } else if (PreservesUnknown(schema)) {
        ++it;
      } else {
        unknown->push_back(Join(path, key));
        it = value->erase(it);
      }
    }
  } else if (value->is_array() && schema.contains("items")) {
    for (size_t i = 0; i < value->size(); ++i) {
      Prune(schema["items"], &(*value)[i], path + "[" + std::to_string(i) + "]", false, unknown);
    }
  }
}
}  // namespace

void PruneUnknownFields(const Json& schema, Json* value, std::vector<std::string>* unknown) {
  Prune(schema, value, "", true, unknown);
}

std::vector<FieldError> ValidateAgainstSchema(const Json& schema, const Json& value) {
  std::vector<FieldError> errors;
  Validate(schema, value, "", &errors);
  return errors;
}

std::vector<FieldError> CheckStructuralSchema(const Json& schema, const std::string& path) {
  std::vector<FieldError> errors;
  if (!schema.is_object()) {
    errors.push_back({"FieldValueRequired", path, "Required value: a schema object is needed"});
    return errors;
  }
  bool typeless_ok = schema.value("x-kubernetes-int-or-string", false) || PreservesUnknown(schema);
  if (!schema.contains("type") && !typeless_ok) {
    errors.push_back({"FieldValueRequired", path + ".type",
                      "Required value: must not be empty for specified object fields"});
  }
  if (schema.contains("pattern") && schema["pattern"].is_string()) {
    try {
      std::regex re(schema["pattern"].get<std::string>(), std::regex::ECMAScript);
    } catch (const std::regex_error&) {
      errors.push_back(
          {"FieldValueInvalid", path + ".pattern",
           "Invalid value: " + schema["pattern"].dump() + ": must be a valid regular expression"});
    }
  }
  if (schema.contains("properties") && schema["properties"].is_object()) {
    if (schema.value("type", "object") != "object") {
      errors.push_back({"FieldValueForbidden", path + ".properties",
                        "Forbidden: must not be specified when type is not object"});
    }
    for (const auto& [k, child] : schema["properties"].items()) {
      auto sub = CheckStructuralSchema(child, path + ".properties[" + k + "]");
      errors.insert(errors.end(), sub.begin(), sub.end());
    }
  }
  if (schema.contains("items") && schema["items"].is_object()) {
    auto sub = CheckStructuralSchema(schema["items"], path + ".items");
    errors.insert(errors.end(), sub.begin(), sub.end());
  } else if (schema.value("type", "") == "array") {
    errors.push_back({"FieldValueRequired", path + ".items", "Required value: must be specified"});
  }
  if (schema.contains("additionalProperties") && schema["additionalProperties"].is_object()) {
    auto sub =
        CheckStructuralSchema(schema["additionalProperties"], path + ".additionalProperties");
    errors.insert(errors.end(), sub.begin(), sub.end());
  }
  return errors;
}

}  // namespace parallelrun::rt::cluster
