// ApiServer::Impl: service-account tokens and the objects a new cluster starts with.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <variant>

#include "tests/cluster/apiserver_impl.h"
#include "tests/cluster/patch.h"
#include "tests/cluster/schema.h"
#include "tests/cluster/selector.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace fs = std::filesystem;

std::string ApiServer::Impl::TokenLocked(const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> lock(token_mu_);
  std::string id = "system:serviceaccount:" + ns + ":" + name;
  for (const auto& [tok, who] : sa_tokens_) {
    if (who == id) return tok;
  }
  std::string path = s_->state_dir_ + "/tokens/" + ns + "/" + name;
  std::string token;
  if (!s_->state_dir_.empty()) {
    if (auto text = ReadFileText(path)) token = Trim(*text);
  }
  if (token.empty()) {
    token = "sa." + RandomHex(24);
    if (!s_->state_dir_.empty()) {
      MakeDirs(s_->state_dir_ + "/tokens/" + ns);
      WriteFileAtomic(path, token, 0600);
    }
  }
  sa_tokens_[token] = id;
  return token;
}

void ApiServer::Impl::Bootstrap() {
  auto create = [&](const std::string& group, const std::string& resource, const std::string& ns,
                    Json o) {
    auto t = registry_.Find(group, resource);
    std::string name = o["metadata"].value("name", "");
    if (store_.Find(t->TypeKey(), ns, name) != nullptr) return;
    ApiResult r = CreateLocked(*t, ns, o, {});
    (void)r;
  };
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    create("", "namespaces", "", {{"metadata", {{"name", ns}}}});
  }
  create("", "nodes", "",
         {{"metadata",
           {{"name", kNodeName},
            {"labels",
             {{"kubernetes.io/hostname", kNodeName},
              {"kubernetes.io/os", "linux"},
              {"kubernetes.io/arch", "amd64"},
              {"node-role.kubernetes.io/control-plane", ""}}}}},
          {"spec", Json::object()},
          {"status",
           {{"conditions", Json::array({{{"type", "Ready"},
                                         {"status", "True"},
                                         {"reason", "KubeletReady"},
                                         {"message", "kubelet is posting ready status"},
                                         {"lastHeartbeatTime", NowRfc3339()},
                                         {"lastTransitionTime", NowRfc3339()}}})},
            {"addresses", Json::array({{{"type", "InternalIP"}, {"address", "127.0.0.1"}},
                                       {{"type", "Hostname"}, {"address", kNodeName}}})},
            {"capacity", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
            {"allocatable", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
            {"nodeInfo",
             {{"kubeletVersion", "v1.32.4"},
              {"operatingSystem", "linux"},
              {"architecture", "amd64"},
              {"containerRuntimeVersion", "process://1.0"},
              {"kernelVersion", ""},
              {"osImage", "testcluster"}}}}}});
  Json all_rule = Json::array({{{"apiGroups", {"*"}}, {"resources", {"*"}}, {"verbs", {"*"}}},
                               {{"nonResourceURLs", {"*"}}, {"verbs", {"*"}}}});
  create("rbac.authorization.k8s.io", "clusterroles", "",
         {{"metadata", {{"name", "cluster-admin"}}}, {"rules", all_rule}});
  create(
      "rbac.authorization.k8s.io", "clusterroles", "",
      {{"metadata", {{"name", "admin"}}},
       {"rules", Json::array({{{"apiGroups", {"*"}}, {"resources", {"*"}}, {"verbs", {"*"}}}})}});
  create("rbac.authorization.k8s.io", "clusterroles", "",
         {{"metadata", {{"name", "edit"}}},
          {"rules", Json::array({{{"apiGroups", {"*"}},
                                  {"resources", {"*"}},
                                  {"verbs",
                                   {"create", "delete", "deletecollection", "get", "list", "patch",
                                    "update", "watch"}}}})}});
  create(
      "rbac.authorization.k8s.io", "clusterroles", "",
      {{"metadata", {{"name", "view"}}},
       {"rules",
        Json::array(
            {{{"apiGroups", {"*"}}, {"resources", {"*"}}, {"verbs", {"get", "list", "watch"}}}})}});
  create("rbac.authorization.k8s.io", "clusterrolebindings", "",
         {{"metadata", {{"name", "cluster-admin"}}},
          {"roleRef",
           {{"apiGroup", "rbac.authorization.k8s.io"},
            {"kind", "ClusterRole"},
            {"name", "cluster-admin"}}},
          {"subjects", Json::array({{{"apiGroup", "rbac.authorization.k8s.io"},
                                     {"kind", "Group"},
                                     {"name", "system:masters"}}})}});
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    EnsureNamespaceDefaults(ns);
  }
}

void ApiServer::Impl::PublishKubernetesService() {
  auto st = registry_.Find("", "services");
  auto et = registry_.Find("", "endpoints");
  Json svc = {{"metadata",
               {{"name", "kubernetes"},
                {"labels", {{"component", "apiserver"}, {"provider", "kubernetes"}}}}},
              {"spec",
               {{"clusterIP", "10.96.0.1"},
                {"ports", Json::array({{{"name", "https"},
                                        {"port", 443},
                                        {"targetPort", serving_port_},
                                        {"protocol", "TCP"}}})}}}};
  const Json* cur = store_.Find("/services", "default", "kubernetes");
  if (cur == nullptr) {
    CreateLocked(*st, "default", svc, {});
  } else {
    Json s = *cur;
    s["spec"]["ports"] = svc["spec"]["ports"];
    UpdateLocked(*st, "default", "kubernetes", s, "", {}, false);
  }
  Json subsets = Json::array(
      {{{"addresses", Json::array({{{"ip", serving_host_}}})},
        {"ports",
         Json::array({{{"name", "https"}, {"port", serving_port_}, {"protocol", "TCP"}}})}}});
  const Json* ep = store_.Find("/endpoints", "default", "kubernetes");
  if (ep == nullptr) {
    CreateLocked(*et, "default", {{"metadata", {{"name", "kubernetes"}}}, {"subsets", subsets}},
                 {});
  } else {
    Json e = *ep;
    e["subsets"] = subsets;
    UpdateLocked(*et, "default", "kubernetes", e, "", {}, false);
  }
}

}  // namespace parallelrun::rt::cluster
