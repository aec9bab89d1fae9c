#pragma once
// meta.k8s.io/v1 Table rendering (kubectl's human-readable `get`): a CRD's
// additionalPrinterColumns, and columns like the real server's for the built-in kinds.

#include <chrono>
#include <nlohmann/json.hpp>
#include <vector>

#include "tests/cluster/registry.h"

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// A Table of `objects`; `list_metadata` (resourceVersion, continue) becomes the Table's
// metadata. Rows carry the object as PartialObjectMetadata.
Json RenderTable(const ResourceType& type, const std::vector<Json>& objects,
                 const Json& list_metadata,
                 std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace parallelrun::rt::cluster
