#include "tests/cluster/apiserver.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <variant>

#include "tests/cluster/patch.h"
#include "tests/cluster/schema.h"
#include "tests/cluster/selector.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Errors and bodies

Json ApiError::ToStatus() const {
  Json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = details;
  return s;
}

ApiError MakeError(int code, const std::string& reason, const std::string& message) {
  return ApiError{code, reason, message, Json()};
}

ApiError BadRequest(const std::string& message) { return MakeError(400, "BadRequest", message); }

ApiError NotFoundError(const ResourceType& type, const std::string& name) {
  ApiError e = MakeError(404, "NotFound", type.QualifiedResource() + " \"" + name + "\" not found");
  e.details = {{"name", name}, {"kind", type.resource}};
  if (!type.group.empty()) e.details["group"] = type.group;
  return e;
}

namespace {

Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json();
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      for (const auto& n : node) arr.push_back(YamlToJson(n));
      return arr;
    }
    case YAML::NodeType::Map: {
      Json obj = Json::object();
      for (const auto& kv : node) obj[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return obj;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = node.Scalar();
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") return s;
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
      if (s == "null" || s == "~" || s == "Null" || s == "NULL" || s.empty()) return Json();
      static const std::regex kInt("^[-+]?[0-9]+$");
      static const std::regex kFloat("^[-+]?([0-9]*\\.[0-9]+|[0-9]+\\.?[0-9]*)([eE][-+]?[0-9]+)?$");
      if (std::regex_match(s, kInt)) {
        try {
          return std::stoll(s);
        } catch (...) {
          return s;
        }
      }
      if (std::regex_match(s, kFloat)) return std::stod(s);
      return s;
    }
  }
  return Json();
}

}  // namespace

bool ParseBody(const std::string& body, Json* out, std::string* error) {
  std::string trimmed = Trim(body);
  if (!trimmed.empty() && (trimmed[0] == '{' || trimmed[0] == '[')) {
    *out = Json::parse(trimmed, nullptr, false);
    if (!out->is_discarded()) return true;
  }
  try {
    *out = YamlToJson(YAML::Load(body));
    return true;
  } catch (const std::exception& e) {
    *error = std::string("the request body is neither JSON nor YAML: ") + e.what();
    return false;
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

bool IsDns1123Subdomain(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

bool IsDns1123Label(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  return !s.empty() && s.size() <= 63 && std::regex_match(s, re);
}

ApiError InvalidError(const ResourceType& type, const std::string& name,
                      const std::vector<FieldError>& errors) {
  std::string msg =
      type.kind + (type.group.empty() ? "" : "." + type.group) + " \"" + name + "\" is invalid: ";
  if (errors.size() == 1) {
    msg += errors[0].ToString();
  } else {
    msg += "[";
    for (size_t i = 0; i < errors.size(); ++i) {
      if (i > 0) msg += ", ";
      msg += errors[i].ToString();
    }
    msg += "]";
  }
  ApiError e = MakeError(422, "Invalid", msg);
  Json causes = Json::array();
  for (const FieldError& fe : errors) {
    causes.push_back({{"reason", fe.reason}, {"message", fe.message}, {"field", fe.field}});
  }
  e.details = {{"name", name}, {"kind", type.kind}, {"causes", causes}};
  if (!type.group.empty()) e.details["group"] = type.group;
  return e;
}

ApiError ConflictError(const ResourceType& type, const std::string& name) {
  ApiError e =
      MakeError(409, "Conflict",
                "Operation cannot be fulfilled on " + type.QualifiedResource() + " \"" + name +
                    "\": the object has been modified; please apply your changes to the "
                    "latest version and try again");
  e.details = {{"name", name}, {"kind", type.resource}};
  if (!type.group.empty()) e.details["group"] = type.group;
  return e;
}

ApiError AlreadyExists(const ResourceType& type, const std::string& name) {
  ApiError e = MakeError(409, "AlreadyExists",
                         type.QualifiedResource() + " \"" + name + "\" already exists");
  e.details = {{"name", name}, {"kind", type.resource}};
  if (!type.group.empty()) e.details["group"] = type.group;
  return e;
}

// The object without the fields that never count as a change.
Json Comparable(Json o) {
  if (o.contains("metadata")) {
    o["metadata"].erase("resourceVersion");
    o["metadata"].erase("managedFields");
    o["metadata"].erase("generation");
  }
  return o;
}

// Whether a change touches more than metadata (and status, with a status subresource).
bool SpecChanged(const Json& a, const Json& b) {
  Json x = a, y = b;
  for (Json* o : {&x, &y}) {
    o->erase("metadata");
    o->erase("status");
    o->erase("apiVersion");
    o->erase("kind");
  }
  return x != y;
}

std::string PodPhase(const Json& pod) {
  return pod.contains("status") ? pod["status"].value("phase", "") : "";
}

bool IsPodReady(const Json& pod) {
  for (const Json& c : pod.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

std::string ImagePullPolicyFor(const std::string& image) {
  std::string last = image.substr(image.rfind('/') == std::string::npos ? 0 : image.rfind('/'));
  if (last.find('@') != std::string::npos) return "IfNotPresent";
  size_t colon = last.find(':');
  if (colon == std::string::npos || last.substr(colon + 1) == "latest") return "Always";
  return "IfNotPresent";
}

void DefaultContainer(Json& c) {
  if (!c.contains("terminationMessagePath")) c["terminationMessagePath"] = "/dev/termination-log";
  if (!c.contains("terminationMessagePolicy")) c["terminationMessagePolicy"] = "File";
  if (!c.contains("imagePullPolicy") && c.contains("image") && c["image"].is_string()) {
    c["imagePullPolicy"] = ImagePullPolicyFor(c["image"]);
  }
  if (!c.contains("resources")) c["resources"] = Json::object();
  if (c.contains("ports") && c["ports"].is_array()) {
    for (Json& p : c["ports"]) {
      if (p.is_object() && !p.contains("protocol")) p["protocol"] = "TCP";
    }
  }
}

// pod: a Pod's own spec (not a template): also what kube-apiserver's admission adds to pods only
// (the `default` ServiceAccount, priority, the not-ready/unreachable tolerations).
void DefaultPodSpec(Json& spec, bool pod) {
  if (!spec.is_object()) return;
  if (!spec.contains("restartPolicy")) spec["restartPolicy"] = "Always";
  if (!spec.contains("terminationGracePeriodSeconds")) spec["terminationGracePeriodSeconds"] = 30;
  if (!spec.contains("dnsPolicy")) spec["dnsPolicy"] = "ClusterFirst";
  if (!spec.contains("schedulerName")) spec["schedulerName"] = "default-scheduler";
  if (!spec.contains("securityContext")) spec["securityContext"] = Json::object();
  if (!spec.contains("serviceAccountName") && (pod || spec.contains("serviceAccount"))) {
    spec["serviceAccountName"] = spec.value("serviceAccount", "default");
  }
  if (!spec.contains("serviceAccount") && spec.contains("serviceAccountName")) {
    spec["serviceAccount"] = spec["serviceAccountName"];
  }
  if (!spec.contains("enableServiceLinks")) spec["enableServiceLinks"] = true;
  if (pod && !spec.contains("priority")) spec["priority"] = 0;
  if (pod && !spec.contains("tolerations")) {
    spec["tolerations"] = Json::array({{{"key", "node.kubernetes.io/not-ready"},
                                        {"operator", "Exists"},
                                        {"effect", "NoExecute"},
                                        {"tolerationSeconds", 300}},
                                       {{"key", "node.kubernetes.io/unreachable"},
                                        {"operator", "Exists"},
                                        {"effect", "NoExecute"},
                                        {"tolerationSeconds", 300}}});
  }
  for (const char* list : {"containers", "initContainers"}) {
    if (spec.contains(list) && spec[list].is_array()) {
      for (Json& c : spec[list]) {
        if (c.is_object()) DefaultContainer(c);
      }
    }
  }
  if (spec.contains("volumes") && spec["volumes"].is_array()) {
    for (Json& v : spec["volumes"]) {
      for (const char* src : {"configMap", "secret"}) {
        if (v.contains(src) && v[src].is_object() && !v[src].contains("defaultMode")) {
          v[src]["defaultMode"] = 420;
        }
      }
    }
  }
}

std::vector<FieldError> ValidatePodSpec(const Json& spec, const std::string& path) {
  std::vector<FieldError> errors;
  if (!spec.is_object()) {
    errors.push_back({"FieldValueRequired", path, "Required value"});
    return errors;
  }
  if (!spec.contains("containers") || !spec["containers"].is_array() ||
      spec["containers"].empty()) {
    errors.push_back({"FieldValueRequired", path + ".containers", "Required value"});
    return errors;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < spec["containers"].size(); ++i) {
    const Json& c = spec["containers"][i];
    std::string p = path + ".containers[" + std::to_string(i) + "]";
    std::string name = c.value("name", "");
    if (name.empty()) {
      errors.push_back({"FieldValueRequired", p + ".name", "Required value"});
    } else if (!IsDns1123Label(name)) {
      errors.push_back({"FieldValueInvalid", p + ".name",
                        "Invalid value: \"" + name +
                            "\": a lowercase RFC 1123 label must consist of lower case "
                            "alphanumeric characters or '-', and must start and end with an "
                            "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
                            "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"});
    } else if (!names.insert(name).second) {
      errors.push_back({"FieldValueDuplicate", p + ".name", "Duplicate value: \"" + name + "\""});
    }
    if (c.value("image", "").empty()) {
      errors.push_back({"FieldValueRequired", p + ".image", "Required value"});
    }
  }
  std::string rp = spec.value("restartPolicy", "Always");
  if (rp != "Always" && rp != "OnFailure" && rp != "Never") {
    errors.push_back({"FieldValueNotSupported", path + ".restartPolicy",
                      "Unsupported value: \"" + rp +
                          "\": supported values: \"Always\", \"OnFailure\", \"Never\""});
  }
  return errors;
}

std::string TemplateHash(const Json& tmpl) {
  uint32_t h = 2166136261u;
  for (unsigned char c : tmpl.dump()) h = (h ^ c) * 16777619u;
  static const char* kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string out;
  for (int i = 0; i < 10; ++i) {
    out.push_back(kAlphabet[h % 27]);
    h = h / 27 + (h % 7) * 613;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class ApiServer::Impl {
 public:
  explicit Impl(ApiServer* s) : s_(s), store_(s->store_), registry_(s->registry_) {}

  ApiServer* s_;
  Store& store_;
  Registry& registry_;
  std::thread controller_;
  std::atomic<bool> stopping_{false};
  std::string serving_host_ = "127.0.0.1";
  int serving_port_ = 0;
  std::mutex token_mu_;
  std::map<std::string, std::string> sa_tokens_;  // token -> system:serviceaccount:ns:name

  // ------------------------------------------------------------------- lookups

  std::variant<ResourceType, ApiError> Resolve(const ResourceRef& ref) {
    auto t = registry_.Find(ref.group, ref.resource);
    if (!t) {
      return MakeError(404, "NotFound", "the server could not find the requested resource");
    }
    return *t;
  }

  std::string NsFor(const ResourceType& t, const std::string& ns) { return t.namespaced ? ns : ""; }

  Json Stamp(const ResourceType& t, Json o) {
    o["apiVersion"] = t.ApiVersion();
    o["kind"] = t.kind;
    return o;
  }

  // ------------------------------------------------------------------- create

  // Fills in the metadata and kind-specific defaults of a new object and validates it.
  std::optional<ApiError> PrepareCreate(const ResourceType& t, const std::string& ns, Json& o,
                                        const WriteOptions& opts) {
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
  std::optional<ApiError> AdmitKind(const ResourceType& t, const Json* old, Json& o,
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
          errors.push_back({"FieldValueInvalid", "spec.template.metadata.labels",
                            "Invalid value: " + labels.dump() +
                                ": `selector` does not match template `labels`"});
        }
      }
      auto pod_errors = ValidatePodSpec(
          spec.value("template", Json::object()).value("spec", Json()), "spec.template.spec");
      errors.insert(errors.end(), pod_errors.begin(), pod_errors.end());
      if (!errors.empty()) return InvalidError(t, name, errors);
      if (old != nullptr && (*old)["spec"].contains("selector") &&
          (*old)["spec"]["selector"] != spec["selector"]) {
        return InvalidError(
            t, name,
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
        return InvalidError(
            t, name,
            {{"FieldValueInvalid", "roleRef",
              "Invalid value: " + o["roleRef"].dump() + ": cannot change roleRef"}});
      }
    }
    return std::nullopt;
  }

  std::optional<ApiError> AdmitCustom(const ResourceType& t, Json& o, const WriteOptions& opts) {
    if (t.schema.is_null()) return std::nullopt;
    const std::string name = o["metadata"].value("name", "");
    std::vector<std::string> unknown;
    PruneUnknownFields(t.schema, &o, &unknown);
    if (!unknown.empty() && opts.field_validation == "Strict") {
      std::string msg = t.kind + " in version \"" + t.version + "\" cannot be handled as a " +
                        t.kind + ": strict decoding error: ";
      for (size_t i = 0; i < unknown.size(); ++i) {
        if (i > 0) msg += ", ";
        msg += "unknown field \"" + unknown[i] + "\"";
      }
      return BadRequest(msg);
    }
    ApplySchemaDefaults(t.schema, &o);
    auto errors = ValidateAgainstSchema(t.schema, o);
    if (!errors.empty()) return InvalidError(t, name, errors);
    return std::nullopt;
  }

  std::optional<ApiError> AdmitCrd(const ResourceType& t, const Json* old, Json& o) {
    const std::string name = o["metadata"].value("name", "");
    Json& spec = o["spec"];
    std::vector<FieldError> errors;
    const Json names = spec.value("names", Json::object());
    std::string group = spec.value("group", "");
    std::string plural = names.value("plural", "");
    if (group.empty()) errors.push_back({"FieldValueRequired", "spec.group", "Required value"});
    if (plural.empty()) {
      errors.push_back({"FieldValueRequired", "spec.names.plural", "Required value"});
    }
    if (names.value("kind", "").empty()) {
      errors.push_back({"FieldValueRequired", "spec.names.kind", "Required value"});
    }
    if (!plural.empty() && !group.empty() && name != plural + "." + group) {
      errors.push_back(
          {"FieldValueInvalid", "metadata.name",
           "Invalid value: \"" + name + "\": must be spec.names.plural+\".\"+spec.group"});
    }
    std::string scope = spec.value("scope", "");
    if (scope != "Namespaced" && scope != "Cluster") {
      errors.push_back(
          {"FieldValueNotSupported", "spec.scope",
           "Unsupported value: \"" + scope + "\": supported values: \"Cluster\", \"Namespaced\""});
    }
    if (!spec.contains("versions") || !spec["versions"].is_array() || spec["versions"].empty()) {
      errors.push_back({"FieldValueInvalid", "spec.versions",
                        "Invalid value: null: must have exactly one version marked as storage "
                        "version"});
    } else {
      int storage = 0;
      for (size_t i = 0; i < spec["versions"].size(); ++i) {
        Json& v = spec["versions"][i];
        if (v.value("storage", false)) ++storage;
        std::string p = "spec.versions[" + std::to_string(i) + "]";
        if (v.contains("schema") && v["schema"].contains("openAPIV3Schema")) {
          auto e =
              CheckStructuralSchema(v["schema"]["openAPIV3Schema"], p + ".schema.openAPIV3Schema");
          errors.insert(errors.end(), e.begin(), e.end());
        } else {
          errors.push_back({"FieldValueRequired", p + ".schema.openAPIV3Schema",
                            "Required value: schemas are required"});
        }
        if (v.contains("additionalPrinterColumns")) {
          for (Json& c : v["additionalPrinterColumns"]) {
            if (!c.contains("priority")) c["priority"] = 0;
          }
        }
      }
      if (storage != 1) {
        errors.push_back({"FieldValueInvalid", "spec.versions",
                          "Invalid value: " + spec["versions"].dump() +
                              ": must have exactly one version marked as storage version"});
      }
    }
    if (!errors.empty()) return InvalidError(t, name, errors);
    if (old != nullptr && ((*old)["spec"].value("group", "") != group ||
                           (*old)["spec"]["names"].value("plural", "") != plural)) {
      return InvalidError(t, name,
                          {{"FieldValueInvalid", "spec.group",
                            "Invalid value: \"" + group + "\": field is immutable"}});
    }
    if (!spec.contains("conversion")) spec["conversion"] = {{"strategy", "None"}};
    Json accepted = names;
    if (!accepted.contains("singular")) accepted["singular"] = ToLower(names.value("kind", ""));
    if (!accepted.contains("listKind")) accepted["listKind"] = names.value("kind", "") + "List";
    spec["names"] = accepted;
    std::string now = NowRfc3339();
    Json stored_versions = Json::array();
    for (const Json& v : spec["versions"]) {
      if (v.value("storage", false)) stored_versions.push_back(v["name"]);
    }
    o["status"] = {{"acceptedNames", accepted},
                   {"storedVersions", stored_versions},
                   {"conditions", Json::array({{{"type", "NamesAccepted"},
                                                {"status", "True"},
                                                {"reason", "NoConflicts"},
                                                {"message", "no conflicts found"},
                                                {"lastTransitionTime", now}},
                                               {{"type", "Established"},
                                                {"status", "True"},
                                                {"reason", "InitialNamesAccepted"},
                                                {"message", "the initial names have been accepted"},
                                                {"lastTransitionTime", now}}})}};
    return std::nullopt;
  }

  std::string AllocateClusterIp() {
    std::set<std::string> used;
    for (const Json* svc : store_.Objects("/services", "")) {
      used.insert((*svc)["spec"].value("clusterIP", ""));
    }
    for (int i = 10; i < 65000; ++i) {
      std::string ip = "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
      if (!used.count(ip)) return ip;
    }
    return "10.96.255.254";
  }

  // Writes an object (already prepared) and runs the synchronous side effects.
  Json Commit(const ResourceType& t, Json o) {
    int64_t rv = store_.Put(t.TypeKey(), o);
    o["metadata"]["resourceVersion"] = std::to_string(rv);
    AfterWrite(t, o);
    return o;
  }

  void AfterWrite(const ResourceType& t, const Json& o) {
    if (t.resource == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
      registry_.RegisterCrd(o);
    } else if (t.resource == "namespaces" && t.group.empty()) {
      EnsureNamespaceDefaults(o["metadata"].value("name", ""));
    } else if (t.resource == "serviceaccounts" && t.group.empty()) {
      TokenLocked(o["metadata"].value("namespace", ""), o["metadata"].value("name", ""));
    }
  }

  void EnsureNamespaceDefaults(const std::string& ns) {
    if (ns.empty()) return;
    const Json* nsobj = store_.Find("/namespaces", "", ns);
    if (nsobj == nullptr || (*nsobj)["metadata"].contains("deletionTimestamp")) return;
    if (store_.Find("/serviceaccounts", ns, "default") == nullptr) {
      auto t = registry_.Find("", "serviceaccounts");
      Json sa = {{"metadata", {{"name", "default"}}}};
      if (!PrepareCreate(*t, ns, sa, {})) Commit(*t, sa);
    }
    if (store_.Find("/configmaps", ns, "kube-root-ca.crt") == nullptr && !s_->state_dir_.empty()) {
      auto ca = ReadFileText(s_->state_dir_ + "/ca.crt");
      auto t = registry_.Find("", "configmaps");
      Json cm = {{"metadata",
                  {{"name", "kube-root-ca.crt"},
                   {"annotations",
                    {{"kubernetes.io/description",
                      "Contains a CA bundle that can be used to verify the kube-apiserver when "
                      "using internal endpoints such as the internal service IP or "
                      "kubernetes.default.svc. No other usage is guaranteed across "
                      "distributions of Kubernetes clusters."}}}}},
                 {"data", {{"ca.crt", ca.value_or("")}}}};
      if (!PrepareCreate(*t, ns, cm, {})) Commit(*t, cm);
    }
  }

  ApiResult CreateLocked(const ResourceType& t, const std::string& ns, Json o,
                         const WriteOptions& opts) {
    if (std::find(t.verbs.begin(), t.verbs.end(), "create") == t.verbs.end()) {
      return MakeError(405, "MethodNotAllowed",
                       "the server does not allow this method on the "
                       "requested resource");
    }
    if (auto e = PrepareCreate(t, ns, o, opts)) return *e;
    const std::string name = o["metadata"]["name"];
    if (store_.Find(t.TypeKey(), NsFor(t, ns), name) != nullptr) return AlreadyExists(t, name);
    if (opts.dry_run) return ApiResult(o, 201);
    return ApiResult(Commit(t, o), 201);
  }

  // ------------------------------------------------------------------- update

  ApiResult UpdateLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                         Json o, const std::string& sub, const WriteOptions& opts,
                         bool require_rv) {
    if (!o.is_object()) return BadRequest("the object must be a JSON object");
    const Json* cur = store_.Find(t.TypeKey(), NsFor(t, ns), name);
    if (cur == nullptr) return NotFoundError(t, name);
    const Json old = *cur;
    if (!o.contains("metadata") || !o["metadata"].is_object()) o["metadata"] = Json::object();
    if (o["metadata"].contains("name") && o["metadata"]["name"] != name) {
      return BadRequest("the name of the object (" + o["metadata"].value("name", "") +
                        ") does not match the name on the URL (" + name + ")");
    }
    if (t.namespaced && o["metadata"].contains("namespace") &&
        o["metadata"]["namespace"].is_string() && o["metadata"]["namespace"] != "" &&
        o["metadata"]["namespace"] != ns) {
      return BadRequest(
          "the namespace of the provided object does not match the namespace sent on the "
          "request");
    }
    std::string rv = o["metadata"].value("resourceVersion", "");
    if (rv.empty() && require_rv && t.custom) {
      return InvalidError(t, name,
                          {{"FieldValueInvalid", "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update"}});
    }
    if (!rv.empty() && rv != old["metadata"].value("resourceVersion", "")) {
      return ConflictError(t, name);
    }
    o = Stamp(t, o);
    Json next;
    if (sub == "status") {
      next = old;
      if (o.contains("status")) {
        next["status"] = o["status"];
      } else {
        next.erase("status");
      }
      if (t.custom && !t.schema.is_null()) {
        std::vector<std::string> unknown;
        PruneUnknownFields(t.schema, &next, &unknown);
        ApplySchemaDefaults(t.schema, &next);
        auto errors = ValidateAgainstSchema(t.schema, next);
        std::vector<FieldError> status_errors;
        for (const FieldError& fe : errors) {
          if (fe.field.rfind("status", 0) == 0) status_errors.push_back(fe);
        }
        if (!status_errors.empty()) return InvalidError(t, name, status_errors);
      }
    } else {
      next = o;
      Json& md = next["metadata"];
      const Json& omd = old["metadata"];
      for (const char* k : {"uid", "creationTimestamp", "deletionTimestamp",
                            "deletionGracePeriodSeconds", "generation"}) {
        if (omd.contains(k)) {
          md[k] = omd[k];
        } else {
          md.erase(k);
        }
      }
      md["name"] = name;
      if (t.namespaced) {
        md["namespace"] = ns;
      } else {
        md.erase("namespace");
      }
      md.erase("managedFields");
      if (t.HasStatus()) {
        if (old.contains("status")) {
          next["status"] = old["status"];
        } else {
          next.erase("status");
        }
      }
      if (old["metadata"].contains("deletionTimestamp")) {
        std::set<std::string> had;
        for (const Json& f : omd.value("finalizers", Json::array())) had.insert(f.dump());
        Json added = Json::array();
        for (const Json& f : md.value("finalizers", Json::array())) {
          if (!had.count(f.dump())) added.push_back(f);
        }
        if (!added.empty()) {
          std::string list;
          for (const Json& f : added) list += (list.empty() ? "" : " ") + f.get<std::string>();
          return InvalidError(t, name,
                              {{"FieldValueForbidden", "metadata.finalizers",
                                "Forbidden: no new finalizers can be added if the object is being "
                                "deleted, found new finalizers []string{\"" +
                                    list + "\"}"}});
        }
      }
      if (auto e = AdmitKind(t, &old, next, opts)) return *e;
    }
    if (SpecChanged(old, next) ||
        (!t.HasStatus() && old.value("status", Json()) != next.value("status", Json()))) {
      next["metadata"]["generation"] = old["metadata"].value("generation", 1) + 1;
    }
    // A no-op write keeps the resourceVersion and sends no event, as on a real server.
    if (Comparable(next) == Comparable(old)) return ApiResult(old, 200);
    if (opts.dry_run) return ApiResult(next, 200);
    const Json& nmd = next["metadata"];
    if (nmd.contains("deletionTimestamp") && nmd.value("finalizers", Json::array()).empty() &&
        nmd.value("deletionGracePeriodSeconds", 0) == 0) {
      store_.Put(t.TypeKey(), next);
      return ApiResult(RemoveLocked(t, next), 200);
    }
    return ApiResult(Commit(t, next), 200);
  }

  // ------------------------------------------------------------------- patch

  ApiResult PatchLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                        const std::string& content_type, const std::string& body,
                        const std::string& sub, const WriteOptions& opts) {
    std::string ct = ToLower(Trim(Split(content_type, ';')[0]));
    Json patch;
    std::string err;
    if (!ParseBody(body, &patch, &err)) return BadRequest(err);
    const Json* cur = store_.Find(t.TypeKey(), NsFor(t, ns), name);
    if (ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json") {
      if (opts.field_manager.empty()) {
        return BadRequest(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
            "value: is required for apply patch");
      }
      if (!patch.is_object()) return BadRequest("the apply configuration must be an object");
      if (cur == nullptr) {
        if (!patch.contains("metadata")) patch["metadata"] = Json::object();
        patch["metadata"]["name"] = name;
        ApiResult r = CreateLocked(t, ns, patch, opts);
        if (r.ok() && sub == "status" && patch.contains("status")) {
          return UpdateLocked(t, ns, name, patch, "status", opts, false);
        }
        return r;
      }
      Json merged;
      if (t.custom) {
        merged = ApplyMergePatch(*cur, patch);
      } else if (!ApplyStrategicMergePatch(*cur, patch, &merged, &err)) {
        return BadRequest(err);
      }
      return UpdateLocked(t, ns, name, merged, sub, opts, false);
    }
    if (cur == nullptr) return NotFoundError(t, name);
    Json target = *cur;
    Json result;
    if (ct == "application/merge-patch+json") {
      if (!patch.is_object()) return BadRequest("a merge patch must be a JSON object");
      result = ApplyMergePatch(target, patch);
    } else if (ct == "application/json-patch+json") {
      if (!ApplyJsonPatch(target, patch, &result, &err)) {
        return MakeError(422, "Invalid", err);
      }
    } else if (ct == "application/strategic-merge-patch+json") {
      if (t.custom) {
        return MakeError(415, "UnsupportedMediaType",
                         "the body of the request was in an unknown format - accepted media types "
                         "include: application/json-patch+json, application/merge-patch+json, "
                         "application/apply-patch+yaml");
      }
      if (!ApplyStrategicMergePatch(target, patch, &result, &err)) return BadRequest(err);
    } else {
      return MakeError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types "
                       "include: application/json-patch+json, application/merge-patch+json, "
                       "application/apply-patch+yaml" +
                           std::string(t.custom ? "" : ", application/strategic-merge-patch+json"));
    }
    // A resourceVersion in the patch is a precondition; otherwise the patch applies to the
    // current state.
    std::string patch_rv;
    if (patch.is_object() && patch.contains("metadata") && patch["metadata"].is_object()) {
      patch_rv = patch["metadata"].value("resourceVersion", "");
    }
    if (patch_rv.empty() && result.is_object() && result.contains("metadata")) {
      result["metadata"]["resourceVersion"] = (*cur)["metadata"].value("resourceVersion", "");
    }
    return UpdateLocked(t, ns, name, result, sub, opts, false);
  }

  // ------------------------------------------------------------------- delete

  // Removes the object for good (DELETED event) and runs side effects; returns its last state.
  Json RemoveLocked(const ResourceType& t, const Json& o) {
    const Json& md = o["metadata"];
    std::string ns = md.value("namespace", "");
    std::string name = md.value("name", "");
    int64_t rv = store_.Remove(t.TypeKey(), ns, name);
    Json last = o;
    last["metadata"]["resourceVersion"] = std::to_string(rv);
    if (t.resource == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
      std::string group = o["spec"].value("group", "");
      std::string plural = o["spec"]["names"].value("plural", "");
      auto ct = registry_.Find(group, plural);
      if (ct) {
        for (const Json* cr : store_.Objects(ct->TypeKey(), "")) {
          Json copy = *cr;
          store_.Remove(ct->TypeKey(), copy["metadata"].value("namespace", ""),
                        copy["metadata"].value("name", ""));
        }
      }
      registry_.UnregisterCrd(group, plural);
    }
    if (t.resource == "serviceaccounts" && t.group.empty()) {
      std::lock_guard<std::mutex> lock(token_mu_);
      std::string id = "system:serviceaccount:" + ns + ":" + name;
      for (auto it = sa_tokens_.begin(); it != sa_tokens_.end();) {
        it = it->second == id ? sa_tokens_.erase(it) : std::next(it);
      }
      std::error_code ec;
      fs::remove(s_->state_dir_ + "/tokens/" + ns + "/" + name, ec);
    }
    return last;
  }

  ApiResult DeleteLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                         const DeleteOptions& opts) {
    const Json* cur = store_.Find(t.TypeKey(), NsFor(t, ns), name);
    if (cur == nullptr) return NotFoundError(t, name);
    Json o = *cur;
    Json& md = o["metadata"];
    if (!opts.precondition_uid.empty() && opts.precondition_uid != md.value("uid", "")) {
      return MakeError(409, "Conflict",
                       "Operation cannot be fulfilled on " + t.QualifiedResource() + " \"" + name +
                           "\": Precondition failed: UID in precondition: " +
                           opts.precondition_uid + ", UID in object meta: " + md.value("uid", ""));
    }
    if (!opts.precondition_resource_version.empty() &&
        opts.precondition_resource_version != md.value("resourceVersion", "")) {
      return MakeError(409, "Conflict",
                       "Operation cannot be fulfilled on " + t.QualifiedResource() + " \"" + name +
                           "\": Precondition failed: ResourceVersion in precondition: " +
                           opts.precondition_resource_version +
                           ", ResourceVersion in object meta: " + md.value("resourceVersion", ""));
    }
    if (t.resource == "namespaces" && t.group.empty()) {
      if (name == "default" || name == "kube-system" || name == "kube-public") {
        return MakeError(403, "Forbidden",
                         "namespaces \"" + name +
                             "\" is forbidden: this namespace may not be "
                             "deleted");
      }
      if (opts.dry_run) return ApiResult(o, 200);
      if (!md.contains("deletionTimestamp")) {
        md["deletionTimestamp"] = NowRfc3339();
        md["deletionGracePeriodSeconds"] = 0;
        o["status"]["phase"] = "Terminating";
        o = Commit(t, o);
      }
      return ApiResult(o, 200);
    }
    if (opts.dry_run) return ApiResult(o, 200);
    std::string policy = opts.propagation_policy;
    if (policy == "Orphan") OrphanDependents(md.value("uid", ""));
    bool is_pod = t.resource == "pods" && t.group.empty();
    if (md.contains("deletionTimestamp")) {
      // Already being deleted: only a pod's grace period can be cut short.
      bool force = is_pod && opts.grace_period_seconds && *opts.grace_period_seconds == 0;
      if (force && md.value("finalizers", Json::array()).empty()) {
        return ApiResult(RemoveLocked(t, o), 200);
      }
      return ApiResult(o, 200);
    }
    if (policy == "Foreground") {
      Json fin = md.value("finalizers", Json::array());
      if (std::find(fin.begin(), fin.end(), "foregroundDeletion") == fin.end()) {
        fin.push_back("foregroundDeletion");
      }
      md["finalizers"] = fin;
    }
    if (is_pod && s_->kubelet_attached_.load()) {
      std::string phase = PodPhase(o);
      bool bound = !o["spec"].value("nodeName", "").empty();
      int64_t grace = opts.grace_period_seconds
                          ? *opts.grace_period_seconds
                          : o["spec"].value("terminationGracePeriodSeconds", int64_t{30});
      if (bound && phase != "Succeeded" && phase != "Failed" && grace > 0) {
        md["deletionTimestamp"] =
            FormatRfc3339(std::chrono::system_clock::now() + std::chrono::seconds(grace));
        md["deletionGracePeriodSeconds"] = grace;
        return ApiResult(Commit(t, o), 200);
      }
    }
    if (!md.value("finalizers", Json::array()).empty()) {
      md["deletionTimestamp"] = NowRfc3339();
      md["deletionGracePeriodSeconds"] = 0;
      md["generation"] = md.value("generation", 1) + 1;
      return ApiResult(Commit(t, o), 200);
    }
    return ApiResult(RemoveLocked(t, o), 200);
  }

  // ------------------------------------------------------------------- garbage collection

  struct Dependent {
    ResourceType type;
    Json object;
  };

  std::vector<Dependent> DependentsOf(const std::string& uid, const std::string& owner_ns) {
    std::vector<Dependent> out;
    if (uid.empty()) return out;
    for (const ResourceType& t : registry_.All()) {
      for (const Json* o : store_.Objects(t.TypeKey(), "")) {
        const Json& md = (*o)["metadata"];
        if (!md.contains("ownerReferences")) continue;
        // Namespaced owners only own objects of their namespace.
        if (!owner_ns.empty() && md.value("namespace", "") != owner_ns) continue;
        for (const Json& ref : md["ownerReferences"]) {
          if (ref.value("uid", "") == uid) {
            out.push_back({t, *o});
            break;
          }
        }
      }
    }
    return out;
  }

  bool OwnerAlive(const Json& ref, const std::string& ns) {
    std::string api_version = ref.value("apiVersion", "");
    std::string group = api_version.find('/') == std::string::npos
                            ? ""
                            : api_version.substr(0, api_version.find('/'));
    auto t = registry_.FindByKind(group, ref.value("kind", ""));
    if (!t) return false;
    const Json* o = store_.Find(t->TypeKey(), t->namespaced ? ns : "", ref.value("name", ""));
    return o != nullptr && (*o)["metadata"].value("uid", "") == ref.value("uid", "");
  }

  void OrphanDependents(const std::string& uid) {
    for (Dependent& d : DependentsOf(uid, "")) {
      Json o = d.object;
      Json refs = Json::array();
      for (const Json& ref : o["metadata"]["ownerReferences"]) {
        if (ref.value("uid", "") != uid) refs.push_back(ref);
      }
      if (refs.empty()) {
        o["metadata"].erase("ownerReferences");
      } else {
        o["metadata"]["ownerReferences"] = refs;
      }
      Commit(d.type, o);
    }
  }

  // Collects dependents of a deleted owner: deletes those without another live owner.
  void CollectGarbage(const Json& owner) {
    const Json& md = owner["metadata"];
    std::string uid = md.value("uid", "");
    for (Dependent& d : DependentsOf(uid, md.value("namespace", ""))) {
      const Json& dmd = d.object["metadata"];
      std::string ns = dmd.value("namespace", "");
      bool other_owner = false;
      Json refs = Json::array();
      for (const Json& ref : dmd["ownerReferences"]) {
        if (ref.value("uid", "") == uid) continue;
        refs.push_back(ref);
        if (OwnerAlive(ref, ns)) other_owner = true;
      }
      if (other_owner) {
        Json o = d.object;
        o["metadata"]["ownerReferences"] = refs;
        Commit(d.type, o);
      } else if (!dmd.contains("deletionTimestamp")) {
        DeleteLocked(d.type, ns, dmd.value("name", ""), {});
      }
    }
  }

  // Owner in foreground deletion: deletes dependents, then drops the finalizer.
  void ForegroundStep(const ResourceType& t, const Json& owner) {
    const Json& md = owner["metadata"];
    auto deps = DependentsOf(md.value("uid", ""), md.value("namespace", ""));
    for (Dependent& d : deps) {
      if (!d.object["metadata"].contains("deletionTimestamp")) {
        DeleteLocked(d.type, d.object["metadata"].value("namespace", ""),
                     d.object["metadata"].value("name", ""), {});
      }
    }
    if (DependentsOf(md.value("uid", ""), md.value("namespace", "")).empty()) {
      Json o = owner;
      Json fin = Json::array();
      for (const Json& f : md.value("finalizers", Json::array())) {
        if (f != "foregroundDeletion") fin.push_back(f);
      }
      o["metadata"]["finalizers"] = fin;
      UpdateLocked(t, md.value("namespace", ""), md.value("name", ""), o, "", {}, false);
    }
  }

  void NamespaceStep(const Json& ns_obj) {
    std::string ns = ns_obj["metadata"].value("name", "");
    for (const ResourceType& t : registry_.All()) {
      if (!t.namespaced) continue;
      std::vector<Json> objects;
      for (const Json* o : store_.Objects(t.TypeKey(), ns)) objects.push_back(*o);
      for (const Json& o : objects) {
        if (!o["metadata"].contains("deletionTimestamp")) {
          DeleteLocked(t, ns, o["metadata"].value("name", ""), {});
        }
      }
    }
    for (const ResourceType& t : registry_.All()) {
      if (t.namespaced && !store_.Objects(t.TypeKey(), ns).empty()) return;
    }
    auto t = registry_.Find("", "namespaces");
    const Json* cur = store_.Find("/namespaces", "", ns);
    if (cur != nullptr) {
      Json copy = *cur;
      RemoveLocked(*t, copy);
    }
  }

  // ------------------------------------------------------------------- deployments

  // As the real controllers: a Deployment owns one ReplicaSet per pod template (named
  // <deployment>-<pod-template-hash>), each ReplicaSet owns its pods. Helm's --wait and `kubectl
  // rollout status` look for the Deployment's new ReplicaSet. Rollouts use the Recreate strategy
  // (old ReplicaSets are scaled to 0 at once), which is enough for tests.

  static bool ControlledBy(const Json& o, const std::string& uid) {
    for (const Json& ref : o["metadata"].value("ownerReferences", Json::array())) {
      if (ref.value("uid", "") == uid && ref.value("controller", false)) return true;
    }
    return false;
  }

  static Json ControllerRef(const std::string& api_version, const std::string& kind,
                            const Json& owner) {
    return Json::array({{{"apiVersion", api_version},
                         {"kind", kind},
                         {"name", owner["metadata"].value("name", "")},
                         {"uid", owner["metadata"].value("uid", "")},
                         {"controller", true},
                         {"blockOwnerDeletion", true}}});
  }

  // The ReplicaSet of a Deployment's current template, created when missing.
  std::optional<Json> NewReplicaSet(const ResourceType& rst, const Json& d, const std::string& hash,
                                    int64_t replicas) {
    const std::string ns = d["metadata"].value("namespace", "");
    const std::string rs_name = d["metadata"].value("name", "") + "-" + hash;
    if (const Json* cur = store_.Find(rst.TypeKey(), ns, rs_name)) {
      if (!ControlledBy(*cur, d["metadata"].value("uid", ""))) return std::nullopt;
      Json rs = *cur;
      if (rs["spec"].value("replicas", int64_t{1}) == replicas) return rs;
      rs["spec"]["replicas"] = replicas;
      ApiResult r = UpdateLocked(rst, ns, rs_name, rs, "", {}, false);
      return r.ok() ? std::optional<Json>(r.value()) : std::nullopt;
    }
    Json tmpl = d["spec"].value("template", Json::object());
    tmpl["metadata"]["labels"]["pod-template-hash"] = hash;
    Json selector = d["spec"].value("selector", Json::object());
    selector["matchLabels"]["pod-template-hash"] = hash;
    Json rs = {{"metadata",
                {{"name", rs_name},
                 {"labels", tmpl["metadata"]["labels"]},
                 {"ownerReferences", ControllerRef("apps/v1", "Deployment", d)}}},
               {"spec", {{"replicas", replicas}, {"selector", selector}, {"template", tmpl}}}};
    ApiResult r = CreateLocked(rst, ns, rs, {});
    return r.ok() ? std::optional<Json>(r.value()) : std::nullopt;
  }

  void ReconcileDeployment(const std::string& ns, const std::string& name) {
    auto dt = registry_.Find("apps", "deployments");
    auto rst = registry_.Find("apps", "replicasets");
    const Json* cur = store_.Find(dt->TypeKey(), ns, name);
    if (cur == nullptr) return;
    Json d = *cur;
    if (d["metadata"].contains("deletionTimestamp")) return;
    const int64_t replicas = d["spec"].value("replicas", int64_t{1});
    const std::string hash = TemplateHash(d["spec"].value("template", Json::object()));
    const std::string uid = d["metadata"].value("uid", "");
    std::vector<Json> old_sets;
    for (const Json* rs : store_.Objects(rst->TypeKey(), ns)) {
      if (ControlledBy(*rs, uid) && (*rs)["metadata"].value("name", "") != name + "-" + hash) {
        old_sets.push_back(*rs);
      }
    }
    for (Json& rs : old_sets) {
      if (rs["spec"].value("replicas", int64_t{1}) == 0) continue;
      rs["spec"]["replicas"] = 0;
      UpdateLocked(*rst, ns, rs["metadata"].value("name", ""), rs, "", {}, false);
    }
    std::optional<Json> fresh = NewReplicaSet(*rst, d, hash, replicas);
    Json nst = fresh ? fresh->value("status", Json::object()) : Json::object();
    int64_t total = nst.value("replicas", int64_t{0});
    int64_t ready = nst.value("readyReplicas", int64_t{0});
    for (const Json& rs : old_sets) {
      total += rs.value("status", Json::object()).value("replicas", int64_t{0});
    }
    WriteDeploymentStatus(*dt, d, name + "-" + hash, replicas, total,
                          nst.value("replicas", int64_t{0}), ready);
  }

  void WriteDeploymentStatus(const ResourceType& dt, Json d, const std::string& rs_name,
                             int64_t replicas, int64_t total, int64_t updated, int64_t ready) {
    std::string now = NowRfc3339();
    Json old_status = d.value("status", Json::object());
    auto condition = [&](const std::string& type, bool ok, const std::string& reason,
                         const std::string& message) {
      std::string since = now;
      for (const Json& c : old_status.value("conditions", Json::array())) {
        if (c.value("type", "") == type && c.value("status", "") == (ok ? "True" : "False")) {
          since = c.value("lastTransitionTime", now);
        }
      }
      return Json{
          {"type", type},       {"status", ok ? "True" : "False"}, {"reason", reason},
          {"message", message}, {"lastUpdateTime", since},         {"lastTransitionTime", since}};
    };
    bool available = ready >= replicas;
    bool complete = available && updated == replicas && total == replicas;
    Json status = {
        {"observedGeneration", d["metadata"].value("generation", 1)},
        {"replicas", total},
        {"updatedReplicas", updated},
        {"conditions",
         Json::array(
             {condition("Available", available,
                        available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                        available ? "Deployment has minimum availability."
                                  : "Deployment does not have minimum availability."),
              condition("Progressing", true,
                        complete ? "NewReplicaSetAvailable" : "ReplicaSetUpdated",
                        "ReplicaSet \"" + rs_name + "\" " +
                            (complete ? "has successfully progressed." : "is progressing."))})}};
    if (ready > 0) {
      status["readyReplicas"] = ready;
      status["availableReplicas"] = ready;
    }
    if (replicas - ready > 0) status["unavailableReplicas"] = replicas - ready;
    // Keep timestamps stable when nothing else changed.
    if (old_status != status) {
      d["status"] = status;
      UpdateLocked(dt, d["metadata"].value("namespace", ""), d["metadata"].value("name", ""), d,
                   "status", {}, false);
    }
  }

  void ReconcileReplicaSet(const std::string& ns, const std::string& name) {
    auto rst = registry_.Find("apps", "replicasets");
    auto pt = registry_.Find("", "pods");
    const Json* cur = store_.Find(rst->TypeKey(), ns, name);
    if (cur == nullptr) return;
    Json rs = *cur;
    if (rs["metadata"].contains("deletionTimestamp")) return;
    const int64_t replicas = rs["spec"].value("replicas", int64_t{1});
    const std::string uid = rs["metadata"].value("uid", "");
    std::vector<Json> pods;
    for (const Json* p : store_.Objects(pt->TypeKey(), ns)) {
      if (!ControlledBy(*p, uid) || (*p)["metadata"].contains("deletionTimestamp")) continue;
      std::string phase = PodPhase(*p);
      if (phase == "Failed" || phase == "Succeeded") {
        DeleteLocked(*pt, ns, (*p)["metadata"].value("name", ""), {});
        continue;
      }
      pods.push_back(*p);
    }
    while (static_cast<int64_t>(pods.size()) > replicas) {
      DeleteLocked(*pt, ns, pods.back()["metadata"].value("name", ""), {});
      pods.pop_back();
    }
    const Json tmpl = rs["spec"].value("template", Json::object());
    while (static_cast<int64_t>(pods.size()) < replicas) {
      Json pod = {{"metadata", tmpl.value("metadata", Json::object())},
                  {"spec", tmpl.value("spec", Json::object())}};
      pod["metadata"].erase("name");
      pod["metadata"]["generateName"] = name + "-";
      pod["metadata"]["ownerReferences"] = ControllerRef("apps/v1", "ReplicaSet", rs);
      ApiResult r = CreateLocked(*pt, ns, pod, {});
      if (!r.ok()) break;
      pods.push_back(r.value());
    }
    int64_t ready = 0;
    for (const Json& p : pods) ready += IsPodReady(p) ? 1 : 0;
    const int64_t total = static_cast<int64_t>(pods.size());
    Json status = {{"replicas", total},
                   {"fullyLabeledReplicas", total},
                   {"observedGeneration", rs["metadata"].value("generation", 1)}};
    if (ready > 0) {
      status["readyReplicas"] = ready;
      status["availableReplicas"] = ready;
    }
    if (rs.value("status", Json::object()) != status) {
      rs["status"] = status;
      UpdateLocked(*rst, ns, name, rs, "status", {}, false);
    }
  }

  // ------------------------------------------------------------------- endpoints

  void ReconcileEndpoints(const std::string& ns, const std::string& name) {
    auto et = registry_.Find("", "endpoints");
    const Json* svc = store_.Find("/services", ns, name);
    if (svc == nullptr || name == "kubernetes") return;
    const Json& spec = (*svc)["spec"];
    if (!spec.contains("selector") || !spec["selector"].is_object() || spec["selector"].empty()) {
      return;
    }
    std::string err;
    auto sel = LabelSelector::FromJson({{"matchLabels", spec["selector"]}}, &err);
    Json ready = Json::array(), not_ready = Json::array();
    for (const Json* p : store_.Objects("/pods", ns)) {
      if (!sel->Matches((*p)["metadata"].value("labels", Json::object()))) continue;
      std::string ip = (*p).value("status", Json::object()).value("podIP", "");
      if (ip.empty() || (*p)["metadata"].contains("deletionTimestamp")) continue;
      Json addr = {{"ip", ip},
                   {"targetRef",
                    {{"kind", "Pod"},
                     {"namespace", ns},
                     {"name", (*p)["metadata"].value("name", "")},
                     {"uid", (*p)["metadata"].value("uid", "")}}}};
      if (!(*p)["spec"].value("hostname", "").empty()) addr["hostname"] = (*p)["spec"]["hostname"];
      if (!(*p)["spec"].value("nodeName", "").empty()) addr["nodeName"] = (*p)["spec"]["nodeName"];
      (IsPodReady(*p) || spec.value("publishNotReadyAddresses", false) ? ready : not_ready)
          .push_back(addr);
    }
    Json ports = Json::array();
    for (const Json& p : spec.value("ports", Json::array())) {
      Json port = {{"port", p.contains("targetPort") && p["targetPort"].is_number()
                                ? p["targetPort"]
                                : p.value("port", Json(0))},
                   {"protocol", p.value("protocol", "TCP")}};
      if (p.contains("name")) port["name"] = p["name"];
      ports.push_back(port);
    }
    Json subsets = Json::array();
    if (!ready.empty() || !not_ready.empty()) {
      Json subset = {{"ports", ports}};
      if (!ready.empty()) subset["addresses"] = ready;
      if (!not_ready.empty()) subset["notReadyAddresses"] = not_ready;
      subsets.push_back(subset);
    }
    const Json* cur = store_.Find("/endpoints", ns, name);
    if (cur == nullptr) {
      Json ep = {{"metadata",
                  {{"name", name}, {"labels", (*svc)["metadata"].value("labels", Json::object())}}},
                 {"subsets", subsets}};
      if (ep["metadata"]["labels"].empty()) ep["metadata"].erase("labels");
      CreateLocked(*et, ns, ep, {});
    } else if ((*cur).value("subsets", Json::array()) != subsets) {
      Json ep = *cur;
      ep["subsets"] = subsets;
      UpdateLocked(*et, ns, name, ep, "", {}, false);
    }
  }

  // ------------------------------------------------------------------- controller loop

  void HandleEvent(const Store::Event& e) {
    const Json& o = e.object;
    const Json& md = o["metadata"];
    size_t slash = e.type_key.find('/');
    auto t = registry_.Find(e.type_key.substr(0, slash), e.type_key.substr(slash + 1));
    if (e.type == "DELETED") {
      CollectGarbage(o);
      if (e.type_key == "/services") {
        // As the endpoints controller: a Service's Endpoints go with it.
        auto et = registry_.Find("", "endpoints");
        if (store_.Find("/endpoints", e.ns, md.value("name", "")) != nullptr) {
          DeleteLocked(*et, e.ns, md.value("name", ""), {});
        }
      }
      for (const Json& ref : md.value("ownerReferences", Json::array())) {
        // An owner in foreground deletion may be waiting for this dependent.
        std::string api_version = ref.value("apiVersion", "");
        std::string group = api_version.find('/') == std::string::npos
                                ? ""
                                : api_version.substr(0, api_version.find('/'));
        auto ot = registry_.FindByKind(group, ref.value("kind", ""));
        if (!ot) continue;
        const Json* owner =
            store_.Find(ot->TypeKey(), ot->namespaced ? e.ns : "", ref.value("name", ""));
        if (owner != nullptr && (*owner)["metadata"].contains("deletionTimestamp")) {
          Json copy = *owner;
          ForegroundOrNamespace(*ot, copy);
        }
        if (ot->resource == "deployments" && owner != nullptr) {
          ReconcileDeployment(e.ns, ref.value("name", ""));
        }
        if (ot->resource == "replicasets" && owner != nullptr) {
          ReconcileReplicaSet(e.ns, ref.value("name", ""));
        }
      }
      if (!e.ns.empty()) {
        const Json* nsobj = store_.Find("/namespaces", "", e.ns);
        if (nsobj != nullptr && (*nsobj)["metadata"].contains("deletionTimestamp")) {
          Json copy = *nsobj;
          NamespaceStep(copy);
        }
      }
    } else if (t && md.contains("deletionTimestamp")) {
      Json copy = o;
      ForegroundOrNamespace(*t, copy);
    }
    if (!t) return;
    if (t->group == "apps" && t->resource == "deployments" && e.type != "DELETED") {
      ReconcileDeployment(e.ns, md.value("name", ""));
    }
    if (t->group == "apps" && t->resource == "replicasets" && e.type != "DELETED") {
      ReconcileReplicaSet(e.ns, md.value("name", ""));
      for (const Json& ref : md.value("ownerReferences", Json::array())) {
        if (ref.value("kind", "") == "Deployment") ReconcileDeployment(e.ns, ref.value("name", ""));
      }
    }
    if (t->group.empty() && t->resource == "pods") {
      for (const Json& ref : md.value("ownerReferences", Json::array())) {
        if (ref.value("kind", "") == "ReplicaSet" && e.type != "DELETED") {
          ReconcileReplicaSet(e.ns, ref.value("name", ""));
        }
      }
      for (const Json* svc : store_.Objects("/services", e.ns)) {
        ReconcileEndpoints(e.ns, (*svc)["metadata"].value("name", ""));
      }
    }
    if (t->group.empty() && t->resource == "services" && e.type != "DELETED") {
      ReconcileEndpoints(e.ns, md.value("name", ""));
    }
  }

  void ForegroundOrNamespace(const ResourceType& t, const Json& o) {
    if (t.group.empty() && t.resource == "namespaces") {
      NamespaceStep(o);
      return;
    }
    for (const Json& f : o["metadata"].value("finalizers", Json::array())) {
      if (f == "foregroundDeletion") {
        ForegroundStep(t, o);
        return;
      }
    }
  }

  // `seen`: the resourceVersion the controllers start after (taken before the server serves, so
  // no early write is missed).
  void ControllerLoop(int64_t seen) {
    std::unique_lock<std::mutex> lock(store_.mutex());
    // Catch up on work left from before a restart.
    for (const ResourceType& t : registry_.All()) {
      for (const Json* o : store_.Objects(t.TypeKey(), "")) {
        if ((*o)["metadata"].contains("deletionTimestamp")) {
          Json copy = *o;
          ForegroundOrNamespace(t, copy);
        }
      }
    }
    while (!stopping_.load()) {
      std::vector<const Store::Event*> events;
      if (!store_.EventsAfter(seen, &events)) {
        seen = store_.current_rv();
        continue;
      }
      if (events.empty()) {
        store_.WaitForEventAfter(lock, seen,
                                 std::chrono::steady_clock::now() + std::chrono::seconds(1));
        continue;
      }
      // Copy first: handling writes new events and may drop old ones from the history.
      std::vector<Store::Event> batch;
      for (const Store::Event* e : events) batch.push_back(*e);
      for (const Store::Event& e : batch) {
        try {
          HandleEvent(e);
        } catch (const std::exception& ex) {
          std::fprintf(stderr, "testcluster: controller error on %s %s/%s: %s\n", e.type.c_str(),
                       e.type_key.c_str(), e.object["metadata"].value("name", "").c_str(),
                       ex.what());
        }
        seen = e.rv;
      }
    }
  }

  // ------------------------------------------------------------------- tokens

  std::string TokenLocked(const std::string& ns, const std::string& name) {
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

  // ------------------------------------------------------------------- bootstrap

  void Bootstrap() {
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
                                     {"create", "delete", "deletecollection", "get", "list",
                                      "patch", "update", "watch"}}}})}});
    create("rbac.authorization.k8s.io", "clusterroles", "",
           {{"metadata", {{"name", "view"}}},
            {"rules", Json::array({{{"apiGroups", {"*"}},
                                    {"resources", {"*"}},
                                    {"verbs", {"get", "list", "watch"}}}})}});
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

  void PublishKubernetesService() {
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
};

// ---------------------------------------------------------------------------------------------
// Watch

namespace {

class StoreWatch : public WatchStream {
 public:
  StoreWatch(Store* store, ResourceType type, std::string ns, LabelSelector labels,
             FieldSelector fields, int64_t from_rv, const ListOptions& opts)
      : store_(store),
        type_(std::move(type)),
        ns_(std::move(ns)),
        labels_(std::move(labels)),
        fields_(std::move(fields)),
        scan_rv_(from_rv),
        bookmarks_(opts.allow_watch_bookmarks) {
    if (opts.timeout_seconds > 0) {
      deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(opts.timeout_seconds);
    }
    next_bookmark_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  }

  void AddInitial(std::vector<Json> objects, bool end_bookmark) {
    for (Json& o : objects) pending_.push_back({"ADDED", std::move(o)});
    if (end_bookmark) {
      pending_.push_back({"BOOKMARK", Bookmark(true)});
    }
  }

  std::optional<WatchEvent> Next(std::chrono::milliseconds timeout) override {
    if (!pending_.empty()) return Pop();
    if (closed_) return std::nullopt;
    auto until = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(store_->mutex());
    while (true) {
      std::vector<const Store::Event*> events;
      if (!store_->EventsAfter(scan_rv_, &events)) {
        pending_.push_back(
            {"ERROR", ApiError{410, "Expired",
                               "too old resource version: " + std::to_string(scan_rv_) + " (" +
                                   std::to_string(store_->oldest_watchable_rv()) + ")",
                               Json()}
                          .ToStatus()});
        closed_ = true;
        return Pop();
      }
      for (const Store::Event* e : events) {
        scan_rv_ = e->rv;
        if (e->type_key != type_.TypeKey()) continue;
        if (!ns_.empty() && e->ns != ns_) continue;
        bool now = Matches(e->object);
        bool before = !e->previous.is_null() && Matches(e->previous);
        if (e->type == "ADDED" && now) {
          pending_.push_back({"ADDED", e->object});
        } else if (e->type == "MODIFIED") {
          if (now && before) pending_.push_back({"MODIFIED", e->object});
          if (now && !before) pending_.push_back({"ADDED", e->object});
          if (!now && before) pending_.push_back({"DELETED", e->object});
        } else if (e->type == "DELETED" && (now || before)) {
          pending_.push_back({"DELETED", e->object});
        }
      }
      if (!pending_.empty()) return Pop();
      auto clock = std::chrono::steady_clock::now();
      if (deadline_ && clock >= *deadline_) {
        closed_ = true;
        return std::nullopt;
      }
      if (bookmarks_ && clock >= next_bookmark_) {
        next_bookmark_ = clock + std::chrono::seconds(5);
        return WatchEvent{"BOOKMARK", Bookmark(false)};
      }
      if (clock >= until) return std::nullopt;
      auto wake = until;
      if (deadline_) wake = std::min(wake, *deadline_);
      if (bookmarks_) wake = std::min(wake, next_bookmark_);
      store_->WaitForEventAfter(lock, scan_rv_, wake);
    }
  }

  bool Closed() const override { return closed_ && pending_.empty(); }

 private:
  Json Bookmark(bool initial_end) const {
    Json md = {{"resourceVersion", std::to_string(scan_rv_)}};
    if (initial_end) md["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    return {{"kind", type_.kind}, {"apiVersion", type_.ApiVersion()}, {"metadata", md}};
  }

  bool Matches(const Json& o) const {
    return labels_.Matches(o["metadata"].value("labels", Json::object())) && fields_.Matches(o);
  }

  WatchEvent Pop() {
    WatchEvent e = std::move(pending_.front());
    pending_.pop_front();
    return e;
  }

  Store* store_;
  ResourceType type_;
  std::string ns_;
  LabelSelector labels_;
  FieldSelector fields_;
  int64_t scan_rv_;
  bool bookmarks_;
  bool closed_ = false;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::chrono::steady_clock::time_point next_bookmark_;
  std::deque<WatchEvent> pending_;
};

struct Selectors {
  LabelSelector labels;
  FieldSelector fields;
};

std::variant<Selectors, ApiError> ParseSelectors(const ResourceType& t, const ListOptions& o) {
  std::string err;
  auto labels = LabelSelector::Parse(o.label_selector, &err);
  if (!labels) return BadRequest(err);
  auto fields = FieldSelector::Parse(o.field_selector, &err);
  if (!fields) return BadRequest(err);
  for (const std::string& f : fields->Fields()) {
    if (f == "metadata.name" || f == "metadata.namespace") continue;
    if (std::find(t.field_selectors.begin(), t.field_selectors.end(), f) !=
        t.field_selectors.end()) {
      continue;
    }
    return BadRequest("field label not supported: " + f);
  }
  return Selectors{*labels, *fields};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ApiServer

ApiServer::ApiServer(std::string state_dir)
    : state_dir_(std::move(state_dir)),
      store_(state_dir_.empty() ? "" : state_dir_ + "/store"),
      impl_(std::make_unique<Impl>(this)) {}

ApiServer::~ApiServer() { Stop(); }

bool ApiServer::Start(std::string* error) {
  if (!store_.Load(error)) return false;
  int64_t start_rv = 0;
  {
    std::lock_guard<std::mutex> lock(store_.mutex());
    for (const Json* crd : store_.Objects("apiextensions.k8s.io/customresourcedefinitions", "")) {
      registry_.RegisterCrd(*crd);
    }
    impl_->Bootstrap();
    // Tokens of existing service accounts.
    for (const Json* sa : store_.Objects("/serviceaccounts", "")) {
      impl_->TokenLocked((*sa)["metadata"].value("namespace", ""),
                         (*sa)["metadata"].value("name", ""));
    }
    start_rv = store_.current_rv();
  }
  impl_->controller_ = std::thread([this, start_rv] { impl_->ControllerLoop(start_rv); });
  return true;
}

void ApiServer::Stop() {
  if (impl_->stopping_.exchange(true)) return;
  store_.Shutdown();
  if (impl_->controller_.joinable()) impl_->controller_.join();
}

void ApiServer::SetServingAddress(const std::string& host, int port) {
  std::lock_guard<std::mutex> lock(store_.mutex());
  impl_->serving_host_ = host;
  impl_->serving_port_ = port;
  impl_->PublishKubernetesService();
}

std::string ApiServer::ServiceAccountToken(const std::string& ns, const std::string& name) {
  return impl_->TokenLocked(ns, name);
}

std::string ApiServer::ServiceAccountForToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(impl_->token_mu_);
  auto it = impl_->sa_tokens_.find(token);
  return it == impl_->sa_tokens_.end() ? "" : it->second;
}

ApiResult ApiServer::Get(const ResourceRef& ref, const std::string& ns, const std::string& name,
                         const std::string& subresource) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && subresource != "status") {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  const Json* o = store_.Find(type.TypeKey(), impl_->NsFor(type, ns), name);
  if (o == nullptr) return NotFoundError(type, name);
  return ApiResult(*o);
}

ApiResult ApiServer::List(const ResourceRef& ref, const std::string& ns,
                          const ListOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  auto sel = ParseSelectors(type, options);
  if (auto* e = std::get_if<ApiError>(&sel)) return *e;
  const Selectors& s = std::get<Selectors>(sel);
  std::string start_after;
  int64_t list_rv = 0;
  if (!options.continue_token.empty()) {
    auto decoded = Base64Decode(options.continue_token);
    Json tok = decoded ? Json::parse(*decoded, nullptr, false) : Json();
    if (!tok.is_object()) {
      return BadRequest("continue key is not valid: illegal base64 data");
    }
    start_after = tok.value("start", "");
    list_rv = tok.value("rv", int64_t{0});
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  if (options.resource_version_match == "Exact" && !options.resource_version.empty() &&
      std::atoll(options.resource_version.c_str()) != store_.current_rv()) {
    return MakeError(410, "Expired",
                     "too old resource version: " + options.resource_version + " (" +
                         std::to_string(store_.current_rv()) + ")");
  }
  if (list_rv == 0) list_rv = store_.current_rv();
  Json items = Json::array();
  std::string last_key;
  bool more = false;
  int64_t remaining = 0;
  for (const Json* o : store_.Objects(type.TypeKey(), impl_->NsFor(type, ns))) {
    const Json& md = (*o)["metadata"];
    std::string key = md.value("namespace", "") + "/" + md.value("name", "");
    if (!start_after.empty() && key <= start_after) continue;
    if (!s.labels.Matches(md.value("labels", Json::object())) || !s.fields.Matches(*o)) continue;
    if (options.limit > 0 && static_cast<int64_t>(items.size()) >= options.limit) {
      more = true;
      ++remaining;
      continue;
    }
    items.push_back(*o);
    last_key = key;
  }
  Json md = {{"resourceVersion", std::to_string(list_rv)}};
  if (more) {
    md["continue"] = Base64Encode(Json{{"rv", list_rv}, {"start", last_key}}.dump());
    if (s.labels.empty() && s.fields.empty()) md["remainingItemCount"] = remaining;
  }
  return ApiResult(Json{{"kind", type.list_kind},
                        {"apiVersion", type.ApiVersion()},
                        {"metadata", md},
                        {"items", items}});
}

ApiResult ApiServer::Create(const ResourceRef& ref, const std::string& ns, Json object,
                            const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->CreateLocked(std::get<ResourceType>(t), ns, std::move(object), options);
}

ApiResult ApiServer::Update(const ResourceRef& ref, const std::string& ns, const std::string& name,
                            Json object, const std::string& subresource,
                            const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && (subresource != "status" || !type.HasStatus())) {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->UpdateLocked(type, ns, name, std::move(object), subresource, options, true);
}

ApiResult ApiServer::Patch(const ResourceRef& ref, const std::string& ns, const std::string& name,
                           const std::string& content_type, const std::string& body,
                           const std::string& subresource, const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && (subresource != "status" || !type.HasStatus())) {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->PatchLocked(type, ns, name, content_type, body, subresource, options);
}

ApiResult ApiServer::Delete(const ResourceRef& ref, const std::string& ns, const std::string& name,
                            const DeleteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->DeleteLocked(std::get<ResourceType>(t), ns, name, options);
}

std::unique_ptr<WatchStream> ApiServer::Watch(const ResourceRef& ref, const std::string& ns,
                                              const ListOptions& options, ApiError* error) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) {
    *error = *e;
    return nullptr;
  }
  const ResourceType& type = std::get<ResourceType>(t);
  auto sel = ParseSelectors(type, options);
  if (auto* e = std::get_if<ApiError>(&sel)) {
    *error = *e;
    return nullptr;
  }
  Selectors& s = std::get<Selectors>(sel);
  std::lock_guard<std::mutex> lock(store_.mutex());
  const std::string& rv = options.resource_version;
  bool initial = rv.empty() || rv == "0" || options.send_initial_events;
  int64_t from = store_.current_rv();
  if (!rv.empty() && rv != "0") {
    char* end = nullptr;
    long long v = std::strtoll(rv.c_str(), &end, 10);
    if (end == nullptr || *end != '\0') {
      *error = BadRequest("resourceVersion: Invalid value: \"" + rv +
                          "\": must be an integer resource version");
      return nullptr;
    }
    if (!options.send_initial_events) {
      if (v < store_.oldest_watchable_rv()) {
        *error = MakeError(410, "Expired",
                           "too old resource version: " + rv + " (" +
                               std::to_string(store_.oldest_watchable_rv()) + ")");
        return nullptr;
      }
      from = std::min<int64_t>(v, store_.current_rv());
    }
  }
  auto w = std::make_unique<StoreWatch>(&store_, type, impl_->NsFor(type, ns), s.labels, s.fields,
                                        from, options);
  if (initial) {
    std::vector<Json> objs;
    for (const Json* o : store_.Objects(type.TypeKey(), impl_->NsFor(type, ns))) {
      if (s.labels.Matches((*o)["metadata"].value("labels", Json::object())) &&
          s.fields.Matches(*o)) {
        objs.push_back(*o);
      }
    }
    w->AddInitial(std::move(objs), options.send_initial_events && options.allow_watch_bookmarks);
  }
  return w;
}

}  // namespace parallelrun::rt::cluster
