// A minimal valid ParallelRunJob (team-a/score, one PVC volume, one file input) for the webhook's
// tests; `spec_extra` is merged into its spec.
#pragma once

#include <nlohmann/json.hpp>

namespace parallelrun::op::webhook::testing {

inline nlohmann::json MinimalJob(const nlohmann::json& spec_extra) {
  nlohmann::json job = nlohmann::json::parse(R"({
    "apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
    "metadata": {"name": "score", "namespace": "team-a"},
    "spec": {"entryScript": "score.py", "sourceDirectory": {"volume": "data", "path": "code"},
             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
             "inputs": [{"name": "d", "type": "file", "source": {"volume": "data", "path": "in"}}],
             "output": {"volume": "data", "path": "out"}}})");
  job["spec"].update(spec_extra);
  return job;
}

}  // namespace parallelrun::op::webhook::testing
