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

namespace {

// kube-apiserver's ValidateEnv (pkg/apis/core/validation): the name, one of value/valueFrom,
// exactly one valueFrom source. Env names' character rules are not emulated.
void ValidateEnv(const Json& env, const std::string& path, std::vector<FieldError>* errors) {
  if (!env.is_array()) return;
  for (size_t i = 0; i < env.size(); ++i) {
    const Json& var = env[i];
    const std::string p = path + "[" + std::to_string(i) + "]";
    if (!var.is_object() || var.value("name", "").empty()) {
      errors->push_back({"FieldValueRequired", p + ".name", "Required value"});
    }
    if (!var.is_object() || !var.contains("valueFrom") || var["valueFrom"].is_null()) continue;
    int sources = 0;
    for (const char* src : {"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"}) {
      if (var["valueFrom"].is_object() && var["valueFrom"].contains(src)) ++sources;
    }
    const std::string vp = p + ".valueFrom";
    if (sources == 0) {
      errors->push_back({"FieldValueInvalid", vp,
                         "Invalid value: \"\": must specify one of: `fieldRef`, "
                         "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"});
    } else if (!var.value("value", "").empty()) {
      errors->push_back({"FieldValueInvalid", vp,
                         "Invalid value: \"\": may not be specified when `value` is not empty"});
    } else if (sources > 1) {
      errors->push_back({"FieldValueInvalid", vp,
                         "Invalid value: \"\": may not have more than one field specified at a "
                         "time"});
    }
  }
}

// The volume sources in the order kube-apiserver's validateVolumeSource looks at them: the second
// one found is the one it names.
const char* const kVolumeSources[] = {"emptyDir",
                                      "hostPath",
                                      "gitRepo",
                                      "gcePersistentDisk",
                                      "awsElasticBlockStore",
                                      "secret",
                                      "nfs",
                                      "iscsi",
                                      "glusterfs",
                                      "flocker",
                                      "persistentVolumeClaim",
                                      "rbd",
                                      "quobyte",
                                      "cinder",
                                      "cephfs",
                                      "downwardAPI",
                                      "fc",
                                      "flexVolume",
                                      "configMap",
                                      "azureFile",
                                      "vsphereVolume",
                                      "photonPersistentDisk",
                                      "portworxVolume",
                                      "azureDisk",
                                      "storageos",
                                      "projected",
                                      "scaleIO",
                                      "csi",
                                      "ephemeral",
                                      "image"};

// kube-apiserver's ValidateVolumes: exactly one source, a DNS-label name used once.
void ValidateVolumes(const Json& volumes, const std::string& path,
                     std::vector<FieldError>* errors) {
  if (!volumes.is_array()) return;
  std::set<std::string> names;
  for (size_t i = 0; i < volumes.size(); ++i) {
    const Json& v = volumes[i].is_object() ? volumes[i] : Json::object();
    const std::string p = path + "[" + std::to_string(i) + "]";
    std::vector<FieldError> el;
    int sources = 0;
    for (const char* src : kVolumeSources) {
      if (!v.contains(src) || v[src].is_null()) continue;
      if (sources++ > 0) {
        el.push_back({"FieldValueForbidden", p + "." + src,
                      "Forbidden: may not specify more than 1 volume type"});
      }
    }
    if (sources == 0) {
      el.push_back({"FieldValueRequired", p, "Required value: must specify a volume type"});
    }
    const std::string name = v.value("name", "");
    if (name.empty()) {
      el.push_back({"FieldValueRequired", p + ".name", "Required value"});
    } else if (!IsDns1123Label(name)) {
      el.push_back({"FieldValueInvalid", p + ".name",
                    "Invalid value: \"" + name +
                        "\": a lowercase RFC 1123 label must consist of lower case alphanumeric "
                        "characters or '-', and must start and end with an alphanumeric "
                        "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"});
    }
    if (!name.empty() && names.count(name)) {
      el.push_back({"FieldValueDuplicate", p + ".name", "Duplicate value: \"" + name + "\""});
    }
    if (el.empty()) names.insert(name);
    errors->insert(errors->end(), el.begin(), el.end());
  }
}

// Go's %#v of a core.Toleration, as field.Invalid prints a struct value.
std::string GoToleration(const Json& t) {
  std::string seconds = "(*int64)(nil)";
  if (t.contains("tolerationSeconds") && t["tolerationSeconds"].is_number_integer()) {
    seconds = "(*int64)(0xc000000000)";  // kube-apiserver prints the pointer's address here
  }
  return "core.Toleration{Key:\"" + t.value("key", "") + "\", Operator:\"" +
         t.value("operator", "") + "\", Value:\"" + t.value("value", "") + "\", Effect:\"" +
         t.value("effect", "") + "\", TolerationSeconds:" + seconds + "}";
}

// kube-apiserver's validateTolerations: operator and effect values, Exists without a value,
// an empty key only with Exists, tolerationSeconds only with NoExecute.
void ValidateTolerations(const Json& tolerations, const std::string& path,
                         std::vector<FieldError>* errors) {
  if (!tolerations.is_array()) return;
  for (size_t i = 0; i < tolerations.size(); ++i) {
    const Json& t = tolerations[i].is_object() ? tolerations[i] : Json::object();
    const std::string p = path + "[" + std::to_string(i) + "]";
    const std::string op = t.value("operator", "");
    const std::string effect = t.value("effect", "");
    if (t.value("key", "").empty() && op != "Exists") {
      errors->push_back({"FieldValueInvalid", p + ".operator",
                         "Invalid value: \"" + op +
                             "\": operator must be Exists when `key` is empty, which means "
                             "\"match all values and all keys\""});
    }
    if (t.contains("tolerationSeconds") && !t["tolerationSeconds"].is_null() &&
        effect != "NoExecute") {
      errors->push_back({"FieldValueInvalid", p + ".effect",
                         "Invalid value: \"" + effect +
                             "\": effect must be 'NoExecute' when `tolerationSeconds` is set"});
    }
    if (op == "Exists" && !t.value("value", "").empty()) {
      errors->push_back({"FieldValueInvalid", p + ".operator",
                         "Invalid value: " + GoToleration(t) +
                             ": value must be empty when `operator` is 'Exists'"});
    } else if (op != "Exists" && op != "Equal" && !op.empty()) {
      errors->push_back(
          {"FieldValueNotSupported", p + ".operator",
           "Unsupported value: \"" + op + "\": supported values: \"Equal\", \"Exists\""});
    }
    if (!effect.empty() && effect != "NoSchedule" && effect != "PreferNoSchedule" &&
        effect != "NoExecute") {
      errors->push_back({"FieldValueNotSupported", p + ".effect",
                         "Unsupported value: \"" + effect +
                             "\": supported values: \"NoSchedule\", \"PreferNoSchedule\", "
                             "\"NoExecute\""});
    }
  }
}

}  // namespace

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
    if (c.contains("env")) ValidateEnv(c["env"], p + ".env", &errors);
  }
  std::string rp = spec.value("restartPolicy", "Always");
  if (rp != "Always" && rp != "OnFailure" && rp != "Never") {
    errors.push_back({"FieldValueNotSupported", path + ".restartPolicy",
                      "Unsupported value: \"" + rp +
                          "\": supported values: \"Always\", \"OnFailure\", \"Never\""});
  }
  if (spec.contains("volumes")) ValidateVolumes(spec["volumes"], path + ".volumes", &errors);
  if (spec.contains("tolerations")) {
    ValidateTolerations(spec["tolerations"], path + ".tolerations", &errors);
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
