// Object rules the API server's files share: name formats, error shapes, change detection,
// pod defaulting and validation, pod-template hashes.
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

// ---------------------------------------------------------------------------------------------
}  // namespace parallelrun::rt::cluster
