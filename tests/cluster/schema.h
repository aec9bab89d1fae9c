#pragma once
// OpenAPI v3 structural schemas of CustomResourceDefinitions: defaulting, pruning of unknown
// fields and validation, with the field paths and messages of the real API server.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// One validation failure, as a Status cause: reason (FieldValueInvalid, FieldValueRequired,
// FieldValueNotSupported, FieldValueTypeInvalid), field path (spec.size) and message without
// the field path ("Invalid value: 0: spec.size in body should be greater than or equal to 1").
struct FieldError {
  std::string reason;
  std::string field;
  std::string message;
  // "<field>: <message>", as in the Status message.
  std::string ToString() const { return field + ": " + message; }
};

// Sets `default` values of absent fields, recursively (objects, array items, maps).
void ApplySchemaDefaults(const Json& schema, Json* value);

// Removes fields that the schema does not declare (unless x-kubernetes-preserve-unknown-fields)
// and appends their paths ("spec.nodeCont", "spec.inputs[0].nme") to *unknown. The root's
// apiVersion, kind and metadata are always kept.
void PruneUnknownFields(const Json& schema, Json* value, std::vector<std::string>* unknown);

// Validates type, enum, pattern, minimum/maximum (exclusive too), minLength/maxLength,
// minItems/maxItems, required, nullable and x-kubernetes-int-or-string. The root's metadata is
// not validated here.
std::vector<FieldError> ValidateAgainstSchema(const Json& schema, const Json& value);

// Checks that a CRD's openAPIV3Schema is structural (every field has a type unless it is
// int-or-string or preserves unknown fields). `path` prefixes the field paths of the errors.
std::vector<FieldError> CheckStructuralSchema(const Json& schema, const std::string& path);

}  // namespace parallelrun::rt::cluster
