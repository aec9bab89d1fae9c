#include "operator/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <utility>

#include "runtime/base/encoding.h"
#include "runtime/base/files.h"

namespace parallelrun::op::kube {
namespace {

using rt::Status;
using rt::StatusOr;

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

std::string Trim(const std::string& s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string CurrentDir() {
  std::error_code ec;
  std::string cwd = std::filesystem::current_path(ec).string();
  return ec ? "/" : cwd;
}

// Reads one kubeconfig; every error is prefixed with the file and the field path.
class KubeconfigReader {
 public:
  explicit KubeconfigReader(std::string path)
      : path_(std::move(path)), dir_(rt::Dirname(rt::AbsolutePath(path_, CurrentDir()))) {}

  StatusOr<RestConfig> Load(const std::string& wanted_context) {
    if (!rt::PathExists(path_)) return rt::NotFoundError("kubeconfig " + path_ + ": not found");
    YAML::Node root;
    try {
      root = YAML::LoadFile(path_);
    } catch (const YAML::Exception& e) {
      return rt::InvalidArgumentError("kubeconfig " + path_ + ": not valid YAML: " + e.what());
    }
    if (!root.IsMap()) return Error("", "expected a mapping (apiVersion: v1, kind: Config)");
    try {
      return FromRoot(root, wanted_context);
    } catch (const YAML::Exception& e) {
      // Fields are type-checked before use; this is a last line of defence.
      return Error("", e.what());
    }
  }

 private:
  Status Error(const std::string& field, const std::string& message) const {
    return rt::InvalidArgumentError("kubeconfig " + path_ + ": " +
                                    (field.empty() ? "" : field + ": ") + message);
  }

  StatusOr<RestConfig> FromRoot(const YAML::Node& root, const std::string& wanted_context) {
    PR_ASSIGN_OR_RETURN(std::string context_name, Str(root, "current-context", ""));
    if (!wanted_context.empty()) context_name = wanted_context;
    if (context_name.empty()) {
      return Error("current-context", "not set (pass a context or set current-context)");
    }
    PR_ASSIGN_OR_RETURN(auto context, Named(root, "contexts", "context", context_name));
    const auto& [ctx_field, ctx] = context;

    RestConfig config;
    config.source = "kubeconfig " + path_ + " (context " + context_name + ")";
    PR_ASSIGN_OR_RETURN(std::string cluster_name, Str(ctx, "cluster", ctx_field));
    PR_ASSIGN_OR_RETURN(std::string user_name, Str(ctx, "user", ctx_field));
    PR_ASSIGN_OR_RETURN(std::string ns, Str(ctx, "namespace", ctx_field));
    if (!ns.empty()) config.default_namespace = ns;
    if (cluster_name.empty()) return Error(ctx_field + ".cluster", "missing");

    PR_ASSIGN_OR_RETURN(auto cluster, Named(root, "clusters", "cluster", cluster_name));
    PR_RETURN_IF_ERROR(ReadCluster(cluster.first, cluster.second, &config));
    // A context without a user is valid (an anonymous client).
    if (!user_name.empty()) {
      PR_ASSIGN_OR_RETURN(auto user, Named(root, "users", "user", user_name));
      PR_RETURN_IF_ERROR(ReadUser(user.first, user.second, &config));
    }
    return config;
  }

  Status ReadCluster(const std::string& field, const YAML::Node& cluster, RestConfig* config) {
    auto url = Str(cluster, "server", field);
    if (!url.ok()) return url.status();
    std::string server = *url;
    if (server.empty()) return Error(field + ".server", "missing");
    if (!server.starts_with("https://") && !server.starts_with("http://")) {
      return Error(field + ".server", "\"" + server + "\" is not an http(s):// URL");
    }
    while (server.size() > 8 && server.back() == '/') server.pop_back();
    config->server = server;
    PR_ASSIGN_OR_RETURN(config->ca_pem, FileOrData(cluster, "certificate-authority",
                                                   "certificate-authority-data", field));
    PR_ASSIGN_OR_RETURN(config->insecure_skip_tls_verify,
                        Bool(cluster, "insecure-skip-tls-verify", field));
    return Status::Ok();
  }

  Status ReadUser(const std::string& field, const YAML::Node& user, RestConfig* config) {
    PR_ASSIGN_OR_RETURN(config->bearer_token, Str(user, "token", field));
    PR_ASSIGN_OR_RETURN(std::string token_file, Str(user, "tokenFile", field));
    if (!token_file.empty()) {
      token_file = rt::AbsolutePath(token_file, dir_);
      if (!rt::PathExists(token_file)) {
        return Error(field + ".tokenFile", "file " + token_file + " not found");
      }
      config->bearer_token_file = token_file;
    }
    PR_ASSIGN_OR_RETURN(config->client_cert_pem,
                        FileOrData(user, "client-certificate", "client-certificate-data", field));
    PR_ASSIGN_OR_RETURN(config->client_key_pem,
                        FileOrData(user, "client-key", "client-key-data", field));
    if (config->client_cert_pem.empty() != config->client_key_pem.empty()) {
      return Error(field, config->client_cert_pem.empty()
                              ? "client-key without client-certificate"
                              : "client-certificate without client-key");
    }
    const bool has_credentials = !config->bearer_token.empty() ||
                                 !config->bearer_token_file.empty() ||
                                 !config->client_cert_pem.empty();
    for (const char* plugin : {"exec", "auth-provider"}) {
      if (user[plugin].IsDefined() && !has_credentials) {
        return Error(field + "." + plugin,
                     "credential plugins are not supported; use a token, "
                     "tokenFile or client certificate");
      }
    }
    return Status::Ok();
  }

  // The entry of `list` (clusters, contexts, users) whose name is `name`: its field path
  // ("clusters[2].cluster") and the inner mapping.
  StatusOr<std::pair<std::string, YAML::Node>> Named(const YAML::Node& root,
                                                     const std::string& list,
                                                     const std::string& inner,
                                                     const std::string& name) {
    const YAML::Node entries = root[list];
    if (entries.IsDefined() && !entries.IsNull() && !entries.IsSequence()) {
      return Error(list, "expected a list");
    }
    std::string known;
    for (size_t i = 0; entries.IsSequence() && i < entries.size(); ++i) {
      const std::string entry_field = list + "[" + std::to_string(i) + "]";
      PR_ASSIGN_OR_RETURN(std::string entry_name, Str(entries[i], "name", entry_field));
      if (entry_name != name) {
        known += (known.empty() ? "" : ", ") + entry_name;
        continue;
      }
      const YAML::Node body = entries[i][inner];
      if (!body.IsMap()) return Error(entry_field + "." + inner, "missing or not a mapping");
      return std::make_pair(entry_field + "." + inner, body);
    }
    return Error(list, inner + " \"" + name + "\" not found" +
                           (known.empty() ? "" : " (have: " + known + ")"));
  }

  StatusOr<std::string> Str(const YAML::Node& map, const std::string& key,
                            const std::string& field) {
    if (!map.IsMap()) return Error(field, "expected a mapping");
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return std::string();
    if (!v.IsScalar()) return Error(Join(field, key), "expected a string");
    return v.Scalar();
  }

  StatusOr<bool> Bool(const YAML::Node& map, const std::string& key, const std::string& field) {
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return false;
    bool b = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b)) {
      return Error(Join(field, key), "expected true or false");
    }
    return b;
  }

  // `<name>-data` (base64) wins over `<name>` (a file path, relative to the kubeconfig's folder).
  StatusOr<std::string> FileOrData(const YAML::Node& map, const std::string& file_key,
                                   const std::string& data_key, const std::string& field) {
    PR_ASSIGN_OR_RETURN(std::string data, Str(map, data_key, field));
    if (!data.empty()) {
      auto decoded = rt::Base64Decode(data);
      if (!decoded.ok()) return Error(Join(field, data_key), "not valid base64");
      return *decoded;
    }
    PR_ASSIGN_OR_RETURN(std::string file, Str(map, file_key, field));
    if (file.empty()) return std::string();
    file = rt::AbsolutePath(file, dir_);
    if (!rt::PathExists(file)) return Error(Join(field, file_key), "file " + file + " not found");
    auto text = rt::ReadFile(file);
    if (!text.ok()) return Error(Join(field, file_key), text.status().message());
    return std::move(text).value();
  }

  static std::string Join(const std::string& field, const std::string& key) {
    return field.empty() ? key : field + "." + key;
  }

  const std::string path_;
  const std::string dir_;
};

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

StatusOr<RestConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  return KubeconfigReader(path).Load(context);
}

StatusOr<RestConfig> LoadInClusterConfigFrom(const std::string& account_dir,
                                             const std::string& host, const std::string& port) {
  if (host.empty() || port.empty()) {
    return rt::FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
        "(not running in a pod?)");
  }
  RestConfig config;
  config.source = "in-cluster";
  // An IPv6 literal needs brackets in a URL.
  const bool ipv6 = host.find(':') != std::string::npos && host[0] != '[';
  config.server = "https://" + (ipv6 ? "[" + host + "]" : host) + ":" + port;

  const std::string token_file = rt::JoinPath(account_dir, "token");
  if (!rt::PathExists(token_file)) {
    return rt::NotFoundError("in-cluster config: token file " + token_file + " not found");
  }
  config.bearer_token_file = token_file;

  const std::string ca_file = rt::JoinPath(account_dir, "ca.crt");
  if (!rt::PathExists(ca_file)) {
    return rt::NotFoundError("in-cluster config: CA file " + ca_file + " not found");
  }
  auto ca = rt::ReadFile(ca_file);
  if (!ca.ok()) return ca.status().WithContext("in-cluster config");
  config.ca_pem = std::move(ca).value();

  const std::string ns_file = rt::JoinPath(account_dir, "namespace");
  if (rt::PathExists(ns_file)) {
    auto ns = rt::ReadFile(ns_file);
    if (!ns.ok()) return ns.status().WithContext("in-cluster config");
    if (!Trim(*ns).empty()) config.default_namespace = Trim(*ns);
  }
  return config;
}

StatusOr<RestConfig> LoadInClusterConfig() {
  return LoadInClusterConfigFrom(kServiceAccountDir, GetEnv("KUBERNETES_SERVICE_HOST"),
                                 GetEnv("KUBERNETES_SERVICE_PORT"));
}

StatusOr<RestConfig> LoadConfig(const std::string& kubeconfig_flag) {
  if (!kubeconfig_flag.empty()) return LoadKubeconfig(kubeconfig_flag);
  const std::string list = GetEnv("KUBECONFIG");
  for (size_t start = 0; start <= list.size();) {
    size_t colon = list.find(':', start);
    if (colon == std::string::npos) colon = list.size();
    std::string first = list.substr(start, colon - start);
    if (!first.empty()) return LoadKubeconfig(first);
    start = colon + 1;
  }
  // In a pod (as client-go decides: the service address is set and the token is mounted).
  if (!GetEnv("KUBERNETES_SERVICE_HOST").empty() &&
      rt::PathExists(rt::JoinPath(kServiceAccountDir, "token"))) {
    return LoadInClusterConfig();
  }
  const std::string home = GetEnv("HOME");
  if (!home.empty()) {
    const std::string path = rt::JoinPath(home, ".kube/config");
    if (rt::PathExists(path)) return LoadKubeconfig(path);
  }
  return rt::NotFoundError(
      "no Kubernetes configuration: pass --kubeconfig, set KUBECONFIG, run in a pod, or create "
      "~/.kube/config");
}

}  // namespace parallelrun::op::kube
