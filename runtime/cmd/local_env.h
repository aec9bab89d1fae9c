// `spec.env` in local mode: the manifest's Kubernetes env entries become variables of the local
// agents, so that worker processes see them as they do in a pod (issue 16).
//
// Guarantees: entries are applied in order, a later entry with the same name replacing an earlier
// one, and `$(NAME)` in a value is expanded from the entries before it (`$$` is a literal `$`; an
// unknown reference stays as written), as Kubernetes does. A malformed entry is an error naming
// `spec.env[i]` and what was expected.
// Caveats: `valueFrom` (secrets, config maps, the downward API) cannot be resolved on this
// machine: such entries are left out and named in `skipped`, for a warning.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt::cmd {

struct LocalEnv {
  std::vector<std::string> entries;  // NAME=VALUE, each name once
  std::vector<std::string> skipped;  // names of valueFrom entries
};

// `pod` is JobSpec::pod (the Kubernetes pod fields of the manifest); only its "env" is read.
StatusOr<LocalEnv> LocalEnvFromSpec(const nlohmann::json& pod);

}  // namespace parallelrun::rt::cmd
