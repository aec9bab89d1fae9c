#pragma once
// The scheduler's decision for the one node of the test cluster: does a pod fit the node?
// Checks, in the order the real scheduler reports them: spec.unschedulable (cordon; tolerated by
// a toleration of node.kubernetes.io/unschedulable), nodeSelector and required node affinity,
// and NoSchedule/NoExecute taints. Resources are not counted.

#include <string>

#include "tests/cluster/kubelet/cluster_view.h"

namespace parallelrun::rt::cluster {

inline constexpr char kUnschedulableTaint[] = "node.kubernetes.io/unschedulable";

// "" when `pod` fits `node`; otherwise the message the real scheduler gives with reason
// Unschedulable, e.g. "0/1 nodes are available: 1 node(s) were unschedulable."
std::string UnschedulableMessage(const Json& pod, const Json& node);

// Whether the pod's tolerations tolerate `taint` ({key, value, effect}).
bool Tolerates(const Json& pod, const Json& taint);

}  // namespace parallelrun::rt::cluster
