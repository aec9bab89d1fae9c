#pragma once
// Discovery documents (aggregated v2/v2beta1 and legacy) and OpenAPI v3 documents built from
// the registry, as kubectl 1.32 needs them (reference/k8s-wire.md §2, §3).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/cluster/registry.h"

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// APIGroupDiscoveryList for /api (core = true) or /apis; `version` is "v2" or "v2beta1".
Json AggregatedDiscovery(const Registry& registry, bool core, const std::string& version);
// Legacy documents: APIVersions (/api), APIGroupList (/apis), APIGroup (/apis/<g>),
// APIResourceList (/api/v1, /apis/<g>/<v>; nullopt for an unknown group-version).
Json LegacyApiVersions(const std::string& server_address);
Json LegacyGroupList(const Registry& registry);
std::optional<Json> LegacyGroup(const Registry& registry, const std::string& group);
std::optional<Json> LegacyResourceList(const Registry& registry, const std::string& group,
                                       const std::string& version);

// /openapi/v3: {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}
Json OpenApiV3Root(const Registry& registry);
// /openapi/v3/<gv_path> where gv_path is "api/v1" or "apis/<g>/<v>".
std::optional<Json> OpenApiV3Document(const Registry& registry, const std::string& gv_path);

}  // namespace parallelrun::rt::cluster
