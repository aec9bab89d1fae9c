#pragma once
// The /etc/hosts a pod sees: the stand-in for cluster DNS, since pods only reach loopback and
// have no resolver of their own. Service names resolve to the IPs of the pods behind them (there
// is no proxy for cluster IPs), for every Service with a selector and for selector-less Services
// through their Endpoints; `hostname.subdomain` pods get their own names.
//
// Names written, for a Service `svc` in namespace `ns` (the short name only for the pod's own
// namespace): `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`; for a pod with
// spec.hostname `h` and spec.subdomain `sub` selected by a Service `sub`:
// `h.sub.ns.svc.cluster.local` (and the shorter forms); `kubernetes[.default[.svc...]]` for the
// API server; `localhost`; the pod's own hostname.

#include <string>
#include <vector>

#include "tests/cluster/kubelet/cluster_view.h"

namespace parallelrun::rt::cluster {

struct HostsInputs {
  std::vector<Json> services;   // all Services of the cluster
  std::vector<Json> endpoints;  // all Endpoints (used for Services without selector)
  std::vector<Json> pods;       // all pods (their status.podIP and readiness)
  std::string api_host;         // the API server's IP (for `kubernetes`)
};

// A pod's endpoints are published when it has an IP, is not being deleted, is Running and
// Ready (or the Service sets publishNotReadyAddresses).
std::string BuildHostsFile(const Json& pod, const std::string& pod_ip, const HostsInputs& inputs);

// Rewrites `path` in place (same inode, so a bind mount of it sees the change) when its content
// differs; returns true when it wrote.
bool WriteInPlace(const std::string& path, const std::string& content);

}  // namespace parallelrun::rt::cluster
