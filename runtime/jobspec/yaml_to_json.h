// YAML (or JSON, which is YAML) text → nlohmann::json, the way the Kubernetes tooling reads
// manifests: one document, mapping keys are strings, no duplicate keys.
//
// Scalars follow the YAML 1.2 core schema: a plain (unquoted) scalar is typed (null/~, true/false,
// integers in decimal, 0x hex or 0o octal, floats), a quoted one stays a string, and the core tags
// (!!str, !!int, !!float, !!bool, !!null) force a type. Anchors and aliases are expanded and `<<`
// merge keys are applied (keys written in the mapping itself win).
//
// Guarantees: never throws, hangs or crashes on any input (fuzzed by fuzz_job_spec). Errors are
// InvalidArgument with a message "SOURCE:LINE:COLUMN: what" (1-based), covering syntax errors,
// duplicate keys, non-string keys, unsupported tags, numbers JSON cannot hold (.inf, .nan, 1e999),
// strings that are not valid UTF-8, nesting deeper than kMaxYamlDepth, an alias used inside its
// own anchor, and documents whose aliases expand beyond 64 times the text (at least 1 MiB, at
// most kMaxYamlExpansion, counted in nodes plus scalar bytes). Every string in the result is valid
// UTF-8, so json::dump() cannot throw on it.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace parallelrun::rt {

inline constexpr int kMaxYamlDepth = 200;
inline constexpr size_t kMaxYamlExpansion = size_t{16} << 20;

// An empty document (or only comments) yields null. More than one non-empty document is an error.
StatusOr<nlohmann::json> YamlToJson(std::string_view text, const std::string& source_name);

}  // namespace parallelrun::rt
