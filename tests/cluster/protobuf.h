#pragma once
// Decoding of the Kubernetes protobuf wire format ("k8s\0" + runtime.Unknown) for the few kinds
// that kubectl's typed clients send as protobuf bodies: `kubectl create namespace / serviceaccount
// / configmap / secret / role / clusterrole / rolebinding / clusterrolebinding / token` and
// `kubectl auth can-i` (SelfSubjectAccessReview), and Helm's release storage (Secrets, and the
// DeleteOptions body of `helm uninstall`'s DELETE). kubectl 1.32 and Helm do not fall back to JSON
// on 415, so without this those commands cannot work against the test cluster. Strings are always
// on the wire, so an unset metadata.namespace arrives as "" (the API server treats it as unset).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// Converts a protobuf-encoded object into its JSON form; nullopt with a message when the bytes
// are malformed or the kind is not one of those listed above.
std::optional<Json> DecodeKubernetesProtobuf(const std::string& bytes, std::string* error);

}  // namespace parallelrun::rt::cluster
