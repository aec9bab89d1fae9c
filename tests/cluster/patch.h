#pragma once
// The patch formats of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
// and a strategic merge patch for the built-in kinds the test cluster serves.

#include <nlohmann/json.hpp>
#include <string>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// RFC 7386: objects merge, null deletes, everything else (lists included) replaces.
Json ApplyMergePatch(const Json& target, const Json& patch);

// RFC 6902 (add, remove, replace, move, copy, test). False with a message on a failed op or a
// failed test.
bool ApplyJsonPatch(const Json& target, const Json& patch, Json* out, std::string* error);

// Strategic merge patch for built-in kinds: like a merge patch, but lists of objects that have
// a merge key in Kubernetes (containers, volumes, env, volumeMounts, ports, conditions,
// ownerReferences, ...) merge element by element, `metadata.finalizers` merges as a set, and
// the `$patch`, `$setElementOrder/...`, `$retainKeys` and `$deleteFromPrimitiveList/...`
// directives are honoured and never stored.
bool ApplyStrategicMergePatch(const Json& target, const Json& patch, Json* out, std::string* error);

}  // namespace parallelrun::rt::cluster
