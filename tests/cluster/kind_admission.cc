// ApiServer::Impl: admission of built-in kinds: name checks, defaulting (pods, services,
// deployments, ...) and the per-kind validation kube-apiserver does.
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

// Fills in the metadata and kind-specific defaults of a new object and validates it.
std::optional<ApiError> ApiServer::Impl::PrepareCreate(const ResourceType& t, const std::string& ns,
                                                       Json& o, const WriteOptions& opts) {
  if (!o.is_object()) return BadRequest("the object must be a JSON object");
  if (o.contains("kind") && o["kind"].is_string() && o["kind"] != t.kind) {
    return BadRequest("the API version in the data (" + o.value("apiVersion", "") +
                      ") does not match the expected API version (" + t.ApiVersion() +
                      ") or kind " + o["kind"].get<std::string>() + " is not " + t.kind);
  }
  o = Stamp(t, o);
  if (!o.contains("metadata") || !o["metadata"].is_object()) o["metadata"] = Json::object();
  Json& md = o["metadata"];
  if (t.namespaced) {
    // As kube-apiserver: an empty metadata.namespace (protobuf bodies always carry one) takes
    // the request's namespace; a different one is refused.
    const std::string own = md.contains("namespace") && md["namespace"].is_string()
                                ? md["namespace"].get<std::string>()
                                : "";
    if (!own.empty() && own != ns && !ns.empty()) {
      return BadRequest(
          "the namespace of the provided object does not match the namespace "
          "sent on the request");
    }
    md["namespace"] = ns;
  } else {
    md.erase("namespace");
  }
  std::string name = md.value("name", "");
  if (name.empty() && md.contains("generateName") && md["generateName"].is_string()) {
    for (int i = 0; i < 20; ++i) {
      name = md["generateName"].get<std::string>() + RandomSuffix(5);
      if (store_.Find(t.TypeKey(), NsFor(t, ns), name) == nullptr) break;
    }
    md["name"] = name;
  }
  if (name.empty()) {
    return InvalidError(t, "",
                        {{"FieldValueRequired", "metadata.name",
                          "Required value: name or generateName is required"}});
  }
  bool label_name = t.resource == "namespaces" || t.resource == "services";
  if (t.group != "rbac.authorization.k8s.io" &&
      !(label_name ? IsDns1123Label(name) : IsDns1123Subdomain(name))) {
    return InvalidError(
        t, name,
        {{"FieldValueInvalid", "metadata.name",
          "Invalid value: \"" + name + "\": a lowercase RFC 1123 " +
              std::string(label_name ? "label" : "subdomain") +
              " must consist of lower case alphanumeric characters, '-' or '.', and must "
              "start and end with an alphanumeric character (e.g. 'example.com', regex used "
              "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-"
              "z0-9])?)*')"}});
  }
  if (t.namespaced) {
    const Json* nsobj = store_.Find("/namespaces", "", ns);
    if (nsobj == nullptr) {
      ApiError e = MakeError(404, "NotFound", "namespaces \"" + ns + "\" not found");
      e.details = {{"name", ns}, {"kind", "namespaces"}};
      return e;
    }
    if ((*nsobj)["metadata"].contains("deletionTimestamp") && t.resource != "events") {
      ApiError e = MakeError(403, "Forbidden",
                             t.QualifiedResource() + " \"" + name +
                                 "\" is forbidden: unable to create new content in namespace " +
                                 ns + " because it is being terminated");
      return e;
    }
  }
  md["uid"] = NewUid();
  md["creationTimestamp"] = NowRfc3339();
  md.erase("resourceVersion");
  md.erase("deletionTimestamp");
  md.erase("deletionGracePeriodSeconds");
  md.erase("managedFields");
  md["generation"] = 1;
  if (t.HasStatus() && t.resource != "nodes" && t.resource != "namespaces" &&
      t.resource != "persistentvolumeclaims" && t.resource != "services") {
    o.erase("status");
  }
  if (auto e = AdmitKind(t, nullptr, o, opts)) return e;
  return std::nullopt;
}

// Kind-specific defaulting and validation on create (old == nullptr) and update.
std::optional<ApiError> ApiServer::Impl::AdmitKind(const ResourceType& t, const Json* old, Json& o,
                                                   const WriteOptions& opts) {
  const std::string name = o["metadata"].value("name", "");
  if (t.custom) return AdmitCustom(t, o, opts);
  const std::string& r = t.resource;
  if (r == "pods") {
    if (old == nullptr) {
      DefaultPodSpec(o["spec"], true);
      auto errors = ValidatePodSpec(o["spec"], "spec");
      if (!errors.empty()) return InvalidError(t, name, errors);
      o["status"] = {{"phase", "Pending"}, {"qosClass", "BestEffort"}};
    } else if (o.contains("spec") && (*old).contains("spec")) {
      // Pod specs are immutable except images and a new nodeName binding.
      Json a = o["spec"], b = (*old)["spec"];
      if (b.value("nodeName", "").empty()) a.erase("nodeName"), b.erase("nodeName");
      for (Json* s : {&a, &b}) {
        if (s->contains("containers")) {
          for (Json& c : (*s)["containers"]) c.erase("image");
        }
        s->erase("activeDeadlineSeconds");
        s->erase("tolerations");
      }
      if (a != b) {
        return InvalidError(t, name,
                            {{"FieldValueForbidden", "spec",
                              "Forbidden: pod updates may not change fields other than "
                              "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec."
                              "activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                              "existing tolerations),`spec.terminationGracePeriodSeconds` "
                              "(allow it to be set to 1 if it was previously negative)"}});
      }
    }
  } else if (r == "services") {
    Json& spec = o["spec"];
    if (!spec.is_object()) spec = Json::object();
    if (!spec.contains("type")) spec["type"] = "ClusterIP";
    if (!spec.contains("sessionAffinity")) spec["sessionAffinity"] = "None";
    if (spec.contains("ports") && spec["ports"].is_array()) {
      for (Json& p : spec["ports"]) {
        if (!p.contains("protocol")) p["protocol"] = "TCP";
        if (!p.contains("targetPort") && p.contains("port")) p["targetPort"] = p["port"];
      }
    }
    if (old != nullptr && (*old)["spec"].contains("clusterIP")) {
      spec["clusterIP"] = (*old)["spec"]["clusterIP"];
      spec["clusterIPs"] = (*old)["spec"].value("clusterIPs", Json::array());
    } else if (!spec.contains("clusterIP") || spec["clusterIP"] == "") {
      std::string ip = AllocateClusterIp();
      spec["clusterIP"] = ip;
      spec["clusterIPs"] = Json::array({ip});
    } else {
      spec["clusterIPs"] = Json::array({spec["clusterIP"]});
    }
    if (!spec.contains("ipFamilies")) spec["ipFamilies"] = Json::array({"IPv4"});
    if (!spec.contains("ipFamilyPolicy")) spec["ipFamilyPolicy"] = "SingleStack";
    if (!spec.contains("internalTrafficPolicy")) spec["internalTrafficPolicy"] = "Cluster";
    if (!o.contains("status")) o["status"] = {{"loadBalancer", Json::object()}};
  } else if (r == "secrets") {
    if (o.value("type", "").empty()) o["type"] = "Opaque";
    if (o.contains("stringData") && o["stringData"].is_object()) {
      for (const auto& [k, v] : o["stringData"].items()) {
        o["data"][k] = Base64Encode(v.is_string() ? v.get<std::string>() : v.dump());
      }
      o.erase("stringData");
    }
    if (o.contains("data") && o["data"].is_object()) {
      for (const auto& [k, v] : o["data"].items()) {
        if (!v.is_string() || !Base64Decode(v.get<std::string>())) {
          return BadRequest(
              "Secret in version \"v1\" cannot be handled as a Secret: illegal "
              "base64 data in data." +
              k);
        }
      }
    }
  } else if (r == "namespaces") {
    if (!IsDns1123Label(name)) {
      return InvalidError(t, name,
                          {{"FieldValueInvalid", "metadata.name",
                            "Invalid value: \"" + name +
                                "\": a lowercase RFC 1123 label must consist of lower "
                                "case alphanumeric characters or '-'"}});
    }
    o["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if (!o.contains("spec")) o["spec"] = {{"finalizers", Json::array({"kubernetes"})}};
    if (old == nullptr) o["status"] = {{"phase", "Active"}};
  } else if (r == "persistentvolumeclaims") {
    Json& spec = o["spec"];
    if (!spec.contains("volumeMode")) spec["volumeMode"] = "Filesystem";
    if (old == nullptr) {
      std::string volume = "pvc-" + o["metadata"].value("uid", "");
      spec["volumeName"] = volume;
      spec["storageClassName"] = spec.value("storageClassName", "standard");
      o["status"] = {{"phase", "Bound"},
                     {"accessModes", spec.value("accessModes", Json::array({"ReadWriteOnce"}))},
                     {"capacity", spec.value("resources", Json::object())
                                      .value("requests", Json::object({{"storage", "1Gi"}}))}};
    }
  } else if (r == "deployments" || r == "replicasets") {
    Json& spec = o["spec"];
    if (!spec.is_object()) spec = Json::object();
    if (!spec.contains("replicas")) spec["replicas"] = 1;
    if (!spec.contains("revisionHistoryLimit")) spec["revisionHistoryLimit"] = 10;
    if (r == "deployments") {
      if (!spec.contains("progressDeadlineSeconds")) spec["progressDeadlineSeconds"] = 600;
      if (!spec.contains("strategy")) {
        spec["strategy"] = {{"type", "RollingUpdate"},
                            {"rollingUpdate", {{"maxSurge", "25%"}, {"maxUnavailable", "25%"}}}};
      }
    }
    if (spec.contains("template") && spec["template"].contains("spec")) {
      DefaultPodSpec(spec["template"]["spec"], false);
    }
    std::vector<FieldError> errors;
    if (!spec.contains("selector")) {
      errors.push_back({"FieldValueRequired", "spec.selector", "Required value"});
    } else {
      std::string err;
      auto sel = LabelSelector::FromJson(spec["selector"], &err);
      Json labels = spec.value("template", Json::object())
                        .value("metadata", Json::object())
                        .value("labels", Json::object());
      if (!sel || !sel->Matches(labels)) {
        errors.push_back(
            {"FieldValueInvalid", "spec.template.metadata.labels",
             "Invalid value: " + labels.dump() + ": `selector` does not match template `labels`"});
      }
    }
    auto pod_errors = ValidatePodSpec(spec.value("template", Json::object()).value("spec", Json()),
                                      "spec.template.spec");
    errors.insert(errors.end(), pod_errors.begin(), pod_errors.end());
    if (!errors.empty()) return InvalidError(t, name, errors);
    if (old != nullptr && (*old)["spec"].contains("selector") &&
        (*old)["spec"]["selector"] != spec["selector"]) {
      return InvalidError(t, name,
                          {{"FieldValueInvalid", "spec.selector",
                            "Invalid value: " + spec["selector"].dump() + ": field is immutable"}});
    }
  } else if (r == "customresourcedefinitions") {
    return AdmitCrd(t, old, o);
  } else if (r == "events") {
    if (t.group.empty() && !o.contains("involvedObject")) {
      return InvalidError(t, name, {{"FieldValueRequired", "involvedObject", "Required value"}});
    }
    if (t.group.empty() && !o.contains("firstTimestamp") && !o.contains("eventTime")) {
      o["firstTimestamp"] = o["metadata"]["creationTimestamp"];
    }
    if (t.group.empty() && !o.contains("lastTimestamp") && o.contains("firstTimestamp")) {
      o["lastTimestamp"] = o["firstTimestamp"];
    }
    if (t.group.empty() && !o.contains("count")) o["count"] = 1;
    if (t.group.empty() && !o.contains("type")) o["type"] = "Normal";
  } else if (r == "rolebindings" || r == "clusterrolebindings") {
    if (!o.contains("roleRef")) {
      return InvalidError(t, name, {{"FieldValueRequired", "roleRef", "Required value"}});
    }
    if (old != nullptr && (*old)["roleRef"] != o["roleRef"]) {
      return InvalidError(t, name,
                          {{"FieldValueInvalid", "roleRef",
                            "Invalid value: " + o["roleRef"].dump() + ": cannot change roleRef"}});
    }
  }
  return std::nullopt;
}

}  // namespace parallelrun::rt::cluster
