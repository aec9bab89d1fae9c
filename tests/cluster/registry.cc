#include "tests/cluster/registry.h"

#include <algorithm>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

const std::vector<std::string> kAllVerbs = {"create", "delete", "deletecollection", "get",
                                            "list",   "patch",  "update",           "watch"};

ResourceType Builtin(std::string group, std::string version, std::string resource,
                     std::string singular, std::string kind, bool namespaced,
                     std::vector<std::string> short_names = {},
                     std::vector<std::string> subresources = {},
                     std::vector<std::string> categories = {},
                     std::vector<std::string> field_selectors = {}) {
  ResourceType t;
  t.group = std::move(group);
  t.version = std::move(version);
  t.versions = {t.version};
  t.resource = std::move(resource);
  t.singular = std::move(singular);
  t.kind = std::move(kind);
  t.list_kind = t.kind + "List";
  t.namespaced = namespaced;
  t.short_names = std::move(short_names);
  t.subresources = std::move(subresources);
  t.categories = std::move(categories);
  t.field_selectors = std::move(field_selectors);
  t.verbs = kAllVerbs;
  return t;
}

}  // namespace

bool ResourceType::HasStatus() const {
  return std::find(subresources.begin(), subresources.end(), "status") != subresources.end();
}

Registry::Registry() {
  std::vector<ResourceType> b = {
      Builtin("", "v1", "namespaces", "namespace", "Namespace", false, {"ns"}, {"status"}, {},
              {"status.phase"}),
      Builtin("", "v1", "nodes", "node", "Node", false, {"no"}, {"status"}, {},
              {"spec.unschedulable"}),
      Builtin(
          "", "v1", "pods", "pod", "Pod", true, {"po"}, {"status", "log"}, {"all"},
          {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
           "status.phase", "status.podIP", "status.nominatedNodeName"}),
      Builtin("", "v1", "services", "service", "Service", true, {"svc"}, {"status"}, {"all"}),
      Builtin("", "v1", "endpoints", "endpoints", "Endpoints", true, {"ep"}),
      Builtin("", "v1", "secrets", "secret", "Secret", true, {}, {}, {}, {"type"}),
      Builtin("", "v1", "configmaps", "configmap", "ConfigMap", true, {"cm"}),
      Builtin("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, {"sa"},
              {"token"}),
      Builtin("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim",
              true, {"pvc"}, {"status"}),
      Builtin("", "v1", "events", "event", "Event", true, {"ev"}, {}, {},
              {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
      Builtin("events.k8s.io", "v1", "events", "event", "Event", true, {"ev"}, {}, {},
              {"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason",
               "type"}),
      Builtin("coordination.k8s.io", "v1", "leases", "lease", "Lease", true),
      Builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
              "CustomResourceDefinition", false, {"crd", "crds"}, {"status"}, {"api-extensions"}),
      Builtin("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true),
      Builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole",
              false),
      Builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding",
              true),
      Builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
              "ClusterRoleBinding", false),
      Builtin("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
              "validatingwebhookconfiguration", "ValidatingWebhookConfiguration", false),
      Builtin("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true,
              {"netpol"}),
      Builtin("apps", "v1", "deployments", "deployment", "Deployment", true, {"deploy"},
              {"status", "scale"}, {"all"}),
      Builtin("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, {"rs"}, {"status"},
              {"all"}),
  };
  for (ResourceType& t : b) {
    if (t.resource == "events" && t.group == "events.k8s.io") t.short_names.clear();
    types_[t.TypeKey()] = t;
  }
  // Review kinds: create only, never stored.
  for (auto [res, kind, namespaced] : std::vector<std::tuple<std::string, std::string, bool>>{
           {"selfsubjectaccessreviews", "SelfSubjectAccessReview", false},
           {"subjectaccessreviews", "SubjectAccessReview", false},
           {"localsubjectaccessreviews", "LocalSubjectAccessReview", true},
           {"selfsubjectrulesreviews", "SelfSubjectRulesReview", false}}) {
    ResourceType t = Builtin("authorization.k8s.io", "v1", res, ToLower(kind), kind, namespaced);
    t.verbs = {"create"};
    types_[t.TypeKey()] = t;
  }
  {
    ResourceType t = Builtin("authentication.k8s.io", "v1", "selfsubjectreviews",
                             "selfsubjectreview", "SelfSubjectReview", false);
    t.verbs = {"create"};
    types_[t.TypeKey()] = t;
    t = Builtin("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", false);
    t.verbs = {"create"};
    types_[t.TypeKey()] = t;
  }
}

std::optional<ResourceType> Registry::Find(const std::string& group,
                                           const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = types_.find(group + "/" + resource);
  if (it == types_.end()) return std::nullopt;
  return it->second;
}

std::optional<ResourceType> Registry::FindByKind(const std::string& group,
                                                 const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [k, t] : types_) {
    if (t.group == group && t.kind == kind) {
      if (t.group == "events.k8s.io") continue;
      return t;
    }
  }
  return std::nullopt;
}

std::vector<ResourceType> Registry::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ResourceType> out;
  for (const auto& [k, t] : types_) out.push_back(t);
  return out;
}

ResourceType Registry::RegisterCrd(const Json& crd) {
  const Json& spec = crd["spec"];
  const Json& names = spec["names"];
  ResourceType t;
  t.custom = true;
  t.group = spec.value("group", "");
  t.resource = names.value("plural", "");
  t.kind = names.value("kind", "");
  t.singular = names.value("singular", ToLower(t.kind));
  t.list_kind = names.value("listKind", t.kind + "List");
  t.namespaced = spec.value("scope", "Namespaced") == "Namespaced";
  if (names.contains("shortNames"))
    t.short_names = names["shortNames"].get<std::vector<std::string>>();
  if (names.contains("categories"))
    t.categories = names["categories"].get<std::vector<std::string>>();
  t.verbs = kAllVerbs;
  t.crd_name = crd["metadata"].value("name", "");
  const Json* chosen = nullptr;
  const Json versions = spec.value("versions", Json::array());
  for (const Json& v : versions) {
    if (!v.value("served", true)) continue;
    t.versions.push_back(v.value("name", ""));
    if (v.value("storage", false) || chosen == nullptr) {
      if (chosen == nullptr || v.value("storage", false)) chosen = &v;
    }
  }
  if (chosen != nullptr) {
    t.version = chosen->value("name", "");
    // Storage version first: discovery lists the preferred version first.
    t.versions.erase(std::remove(t.versions.begin(), t.versions.end(), t.version),
                     t.versions.end());
    t.versions.insert(t.versions.begin(), t.version);
    if (chosen->contains("schema")) t.schema = (*chosen)["schema"].value("openAPIV3Schema", Json());
    if (chosen->contains("additionalPrinterColumns")) {
      t.printer_columns = (*chosen)["additionalPrinterColumns"];
    }
    if (chosen->contains("subresources")) {
      if ((*chosen)["subresources"].contains("status")) t.subresources.push_back("status");
      if ((*chosen)["subresources"].contains("scale")) t.subresources.push_back("scale");
    }
    for (const Json& f : chosen->value("selectableFields", Json::array())) {
      std::string path = f.value("jsonPath", "");
      if (!path.empty() && path[0] == '.') path = path.substr(1);
      t.field_selectors.push_back(path);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  types_[t.TypeKey()] = t;
  ++generation_;
  return t;
}

void Registry::UnregisterCrd(const std::string& group, const std::string& resource) {
  std::lock_guard<std::mutex> lock(mu_);
  types_.erase(group + "/" + resource);
  ++generation_;
}

int64_t Registry::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

}  // namespace parallelrun::rt::cluster
