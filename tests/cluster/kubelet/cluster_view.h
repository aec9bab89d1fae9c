#pragma once
// What a pod needs to know about the cluster it runs in, as plain functions and values, so the
// pod runner can be tested without an API server: objects it references (ConfigMaps, Secrets,
// PVCs, ServiceAccounts), service-account tokens, the API server address and the node.
// Also small helpers shared by the kubelet's files (timestamps, base64, quantities).

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

struct ClusterView {
  // Reads an object by resource plural ("configmaps", "secrets", "persistentvolumeclaims",
  // "serviceaccounts"), namespace and name; nullopt when it does not exist.
  std::function<std::optional<Json>(const std::string& resource, const std::string& ns,
                                    const std::string& name)>
      get;
  // The bearer token of service account <ns>/<name>.
  std::function<std::string(const std::string& ns, const std::string& name)> service_account_token;
  std::string ca_file;  // PEM file: the service account's ca.crt
  std::string api_host;
  int api_port = 0;
  std::string node_name;
  std::string host_ip = "127.0.0.1";
};

// "2024-05-01T12:00:00Z" (RFC 3339, seconds, UTC) as the API writes timestamps.
std::string FormatTimestamp(std::chrono::system_clock::time_point t);

// Standard base64 (padding optional, whitespace ignored); nullopt on a bad character.
std::optional<std::string> Base64Decode(const std::string& in);

// A Kubernetes quantity ("500m", "2", "128Mi", "1G") in base units, rounded up when `milli`
// is false (as the downward API's resourceFieldRef with divisor 1 reports it).
std::optional<long double> ParseQuantity(const std::string& q);

// True when every key=value of `selector` (a JSON object) is among `labels`. An empty or null
// selector matches nothing, like a Service without selector.
bool SelectorMatches(const Json& selector, const Json& labels);

// The value of `obj` at a dotted path ("metadata.name"), or null.
const Json* JsonAt(const Json& obj, const std::string& dotted_path);

// A string field or `fallback` when absent or not a string.
std::string StringAt(const Json& obj, const std::string& dotted_path,
                     const std::string& fallback = "");

}  // namespace parallelrun::rt::cluster
