// The operator's command line (SPEC.md §6): --kubeconfig, --namespace, --default-image,
// --metrics-bind-address, --health-probe-bind-address, --leader-elect, --leader-election-namespace,
// --leader-election-id, --max-concurrent-reconciles, --webhook-bind-address, --webhook-cert-dir,
// --operator-pod-labels, --log-format, --log-level. Flags take
// `--name value` or `--name=value`; --leader-elect also `--leader-elect=true|false`.
#pragma once

#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::op::cmd {

struct Options {
  std::string kubeconfig;
  std::string ns;  // "" = all namespaces
  std::string default_image = "parallelrun:0.1.0";
  std::string metrics_bind_address = ":8080";
  std::string health_probe_bind_address = ":8081";
  bool leader_elect = false;
  std::string leader_election_namespace;  // "" = the operator's own namespace
  std::string leader_election_id = "parallelrun-operator";
  int max_concurrent_reconciles = 4;
  std::string webhook_bind_address = "0";  // "0" = no admission webhook
  std::string webhook_cert_dir = "/tmp/k8s-webhook-server/serving-certs";
  std::string operator_pod_labels;  // "k=v,k=v"
  std::string log_format = "json";  // json | text
  std::string log_level = "info";   // trace | debug | info | warn (or warning) | error
  bool help = false;
  bool version = false;
};

// Every problem at once, each naming the flag and what it expects.
rt::StatusOr<Options> ParseOptions(const std::vector<std::string>& args);
std::string Usage();
// "a=1,b=2" -> {"a=1", "b=2"} (empty parts dropped).
std::vector<std::string> SplitLabels(const std::string& labels);

}  // namespace parallelrun::op::cmd
