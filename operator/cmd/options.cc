#include "operator/cmd/options.h"

#include <map>

namespace parallelrun::op::cmd {

namespace {

bool ParseBool(const std::string& v, bool* out) {
  if (v == "true" || v == "1") {
    *out = true;
    return true;
  }
  if (v == "false" || v == "0") {
    *out = false;
    return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> SplitLabels(const std::string& labels) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < labels.size()) {
    size_t end = labels.find(',', start);
    if (end == std::string::npos) end = labels.size();
    if (end > start) out.push_back(labels.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string Usage() {
  return R"(usage: parallelrun-operator [flags]

Runs ParallelRunJobs (parallelrun.io/v1alpha1) on this cluster and keeps their status.

  --kubeconfig PATH                 kubeconfig to use (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --namespace NS                    watch one namespace (default: all)
  --default-image IMAGE             image of job pods whose spec has none (default parallelrun:0.1.0)
  --metrics-bind-address ADDR       /metrics address, "0" disables (default :8080)
  --health-probe-bind-address ADDR  /healthz and /readyz address, "0" disables (default :8081)
  --leader-elect[=true|false]       elect a leader with a coordination.k8s.io Lease (default false)
  --leader-election-namespace NS    namespace of the Lease (default: the operator's namespace)
  --leader-election-id NAME         name of the Lease (default parallelrun-operator)
  --max-concurrent-reconciles N     jobs reconciled at once (default 4)
  --webhook-bind-address ADDR       HTTPS address of the ParallelRunJob admission webhook, "0"
                                    disables it (default 0; the chart serves it on :9443)
  --webhook-cert-dir DIR            tls.crt and tls.key of the webhook (default
                                    /tmp/k8s-webhook-server/serving-certs)
  --operator-pod-labels K=V,...     labels of the operator's own pods: each job's NetworkPolicy
                                    lets pods with them (in the operator's namespace) reach the
                                    coordinator (default: none, only the job's own pods)
  --log-format json|text            (default json)
  --log-level trace|debug|info|warn|error (default info)
  --version, --help
)";
}

namespace {

// The flags that take a string value, by name (without "--").
std::map<std::string, std::string*> StringFlags(Options& o, std::string* reconciles) {
  return {
      {"kubeconfig", &o.kubeconfig},
      {"namespace", &o.ns},
      {"default-image", &o.default_image},
      {"metrics-bind-address", &o.metrics_bind_address},
      {"health-probe-bind-address", &o.health_probe_bind_address},
      {"leader-election-namespace", &o.leader_election_namespace},
      {"leader-election-id", &o.leader_election_id},
      {"log-format", &o.log_format},
      {"log-level", &o.log_level},
      {"webhook-bind-address", &o.webhook_bind_address},
      {"webhook-cert-dir", &o.webhook_cert_dir},
      {"operator-pod-labels", &o.operator_pod_labels},
      {"max-concurrent-reconciles", reconciles},  // checked after the loop
  };
}

// Reads args[i] (and its value, advancing i); appends what is wrong to `problems`.
void ParseFlag(const std::vector<std::string>& args, size_t& i,
               const std::map<std::string, std::string*>& strings, Options& o,
               std::vector<std::string>& problems) {
  const std::string& arg = args[i];
  if (arg.rfind("--", 0) != 0) {
    problems.push_back(arg + ": unexpected argument (flags start with --)");
    return;
  }
  std::string name = arg.substr(2);
  std::string value;
  const size_t eq = name.find('=');
  const bool has_value = eq != std::string::npos;
  if (has_value) {
    value = name.substr(eq + 1);
    name = name.substr(0, eq);
  }
  if (name == "help" || name == "version") {
    (name == "help" ? o.help : o.version) = true;
  } else if (name == "leader-elect") {
    if (!has_value) {
      o.leader_elect = true;
    } else if (!ParseBool(value, &o.leader_elect)) {
      problems.push_back("--leader-elect: got " + value + ", expected true or false");
    }
  } else if (auto it = strings.find(name); it == strings.end()) {
    problems.push_back("--" + name + ": unknown flag");
  } else if (!has_value && i + 1 >= args.size()) {
    problems.push_back("--" + name + ": expected a value");
  } else {
    *it->second = has_value ? value : args[++i];
  }
}

// Checks the values read; appends what is wrong to `problems`.
void Validate(const std::string& reconciles, Options& o, std::vector<std::string>& problems) {
  if (!reconciles.empty()) {
    try {
      size_t used = 0;
      o.max_concurrent_reconciles = std::stoi(reconciles, &used);
      if (used != reconciles.size() || o.max_concurrent_reconciles < 1) throw 0;
    } catch (...) {
      problems.push_back("--max-concurrent-reconciles: got " + reconciles +
                         ", expected an integer >= 1");
    }
  }
  if (o.log_format != "json" && o.log_format != "text") {
    problems.push_back("--log-format: got " + o.log_format + ", expected json or text");
  }
  if (o.log_level == "warning") o.log_level = "warn";
  if (o.log_level != "trace" && o.log_level != "debug" && o.log_level != "info" &&
      o.log_level != "warn" && o.log_level != "error") {
    problems.push_back("--log-level: got " + o.log_level +
                       ", expected trace, debug, info, warn or error");
  }
  for (const std::string& pair : SplitLabels(o.operator_pod_labels)) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      problems.push_back("--operator-pod-labels: got \"" + pair + "\", expected key=value");
    }
  }
}

}  // namespace

rt::StatusOr<Options> ParseOptions(const std::vector<std::string>& args) {
  Options o;
  std::string reconciles;
  const std::map<std::string, std::string*> strings = StringFlags(o, &reconciles);
  std::vector<std::string> problems;
  for (size_t i = 0; i < args.size(); ++i) ParseFlag(args, i, strings, o, problems);
  Validate(reconciles, o, problems);
  if (!problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "\n") + p;
    return rt::InvalidArgumentError(message);
  }
  return o;
}

}  // namespace parallelrun::op::cmd
