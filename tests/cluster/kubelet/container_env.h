#pragma once
// A container's environment and command line as a real kubelet builds them: the host
// variables the kubelet passes through (PATH and a few others), HOSTNAME and HOME,
// KUBERNETES_SERVICE_HOST/PORT, envFrom (ConfigMaps and Secrets, with prefix), then env (value
// with $(VAR) expansion, fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef); later
// definitions win. command and args get the same $(VAR) expansion.

#include <string>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"

namespace parallelrun::rt::cluster {

// The value of a downward-API field path (metadata.name, metadata.namespace, metadata.uid,
// metadata.labels['x'], metadata.annotations['x'], spec.nodeName, spec.serviceAccountName,
// status.podIP, status.hostIP, ...); false for an unsupported path.
bool FieldPathValue(const Json& pod, const std::string& field_path, std::string* value);

// Expands $(NAME) from `env` (KEY=VALUE; unknown names stay as written) and $$ to $.
std::string ExpandVars(const std::string& in, const std::vector<std::string>& env);

// Builds the environment of `container`. `base_env` (KEY=VALUE) comes first. On a missing
// ConfigMap/Secret or key that is not optional, returns false with `error` set to the message
// of a CreateContainerConfigError (`secret "x" not found`, `couldn't find key k in Secret ns/x`).
bool BuildContainerEnv(const Json& pod, const Json& container, const ClusterView& view,
                       const std::vector<std::string>& base_env, std::vector<std::string>* env,
                       std::string* error);

// The container's argv: command + args, $(VAR)-expanded. Without a command, the image's
// ENTRYPOINT is unknown, so: args alone run as the command when args[0] is a path or found in
// `search_path` (images without ENTRYPOINT, e.g. `kubectl run --image=busybox -- true`);
// otherwise the image's base name (e.g. "tool" for "registry:5000/team/tool:1.0") found on PATH
// stands in for the ENTRYPOINT, with args after it.
std::vector<std::string> ContainerArgv(const Json& container, const std::vector<std::string>& env,
                                       const std::string& search_path);

}  // namespace parallelrun::rt::cluster
