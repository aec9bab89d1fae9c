#include "operator/kube/client.h"

namespace parallelrun::op::kube {

std::string Resource::CollectionPath(const std::string& ns) const {
  std::string path = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (namespaced && !ns.empty()) path += "/namespaces/" + ns;
  return path + "/" + resource;
}

std::string Resource::ObjectPath(const std::string& ns, const std::string& name,
                                 const std::string& subresource) const {
  std::string path = CollectionPath(ns) + "/" + name;
  if (!subresource.empty()) path += "/" + subresource;
  return path;
}

namespace resources {
const Resource kPods{"", "v1", "pods", "Pod"};
const Resource kSecrets{"", "v1", "secrets", "Secret"};
const Resource kConfigMaps{"", "v1", "configmaps", "ConfigMap"};
const Resource kServices{"", "v1", "services", "Service"};
const Resource kEvents{"", "v1", "events", "Event"};
const Resource kNetworkPolicies{"networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"};
const Resource kLeases{"coordination.k8s.io", "v1", "leases", "Lease"};
const Resource kParallelRunJobs{"parallelrun.io", "v1alpha1", "parallelrunjobs", "ParallelRunJob"};
}  // namespace resources

StatusOr<nlohmann::json> Client::CreateDryRun(const Resource& r, const std::string& ns,
                                              const nlohmann::json&) {
  return rt::FailedPreconditionError("POST " + r.CollectionPath(ns) +
                                     "?dryRun=All: this client cannot dry-run");
}

bool IsGone(const Status& s) { return s.code() == StatusCode::kGone; }

}  // namespace parallelrun::op::kube
