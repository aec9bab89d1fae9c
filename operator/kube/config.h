// Where the API server is and how to authenticate to it: kubeconfig files and the in-cluster
// service-account mount, as client-go reads them (the subset the operator needs).
//
// Guarantees: a loaded RestConfig is self-contained (file references are read into PEM data,
// except the bearer token file, which the HTTP client re-reads when it changes, as projected
// service-account tokens rotate). Every error names the file and the field, e.g.
// `kubeconfig /x: users[0].user.client-key: file /y not found`.
// Caveats: exec and auth-provider plugins, basic auth, proxies and kubeconfig merging are not
// supported (KUBECONFIG with several files uses the first).
#pragma once

#include <string>

#include "runtime/base/status.h"

namespace parallelrun::op::kube {

struct RestConfig {
  std::string server;  // https://host:port (IPv6 hosts bracketed)
  // Authentication: a bearer token, or a file holding one (the file wins when both are set),
  // and/or a client certificate.
  std::string bearer_token;
  std::string bearer_token_file;
  std::string client_cert_pem;
  std::string client_key_pem;
  // Server verification: the CA bundle to trust (empty = the system's), or none at all.
  std::string ca_pem;
  bool insecure_skip_tls_verify = false;
  std::string default_namespace = "default";
  // Where it came from, for log lines: "kubeconfig /x (context c)", "in-cluster".
  std::string source;
};

// Reads a kubeconfig file. `context` "" = the file's current-context. Relative file paths in it
// are taken from the kubeconfig's folder.
rt::StatusOr<RestConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// The pod's service account: /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,
// namespace} and KUBERNETES_SERVICE_HOST/PORT.
rt::StatusOr<RestConfig> LoadInClusterConfig();
// The same with the folder and the address given (what LoadInClusterConfig reads; for tests).
rt::StatusOr<RestConfig> LoadInClusterConfigFrom(const std::string& account_dir,
                                                 const std::string& host, const std::string& port);

// The operator's --kubeconfig rule, first that applies: the flag; $KUBECONFIG (first file);
// in-cluster (KUBERNETES_SERVICE_HOST set); ~/.kube/config when it exists.
rt::StatusOr<RestConfig> LoadConfig(const std::string& kubeconfig_flag);

}  // namespace parallelrun::op::kube
