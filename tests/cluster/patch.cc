#include "tests/cluster/patch.h"

#include <algorithm>

namespace parallelrun::rt::cluster {
namespace {

// The merge key of a list field of built-in kinds, by field name; "" = replace the list.
std::string MergeKeyFor(const std::string& field, const Json& list) {
  if (field == "containers" || field == "initContainers" || field == "ephemeralContainers" ||
      field == "volumes" || field == "env" || field == "imagePullSecrets" ||
      field == "containerStatuses" || field == "initContainerStatuses" || field == "secrets") {
    return "name";
  }
  if (field == "volumeMounts") return "mountPath";
  if (field == "volumeDevices") return "devicePath";
  if (field == "conditions") return "type";
  if (field == "ownerReferences") return "uid";
  if (field == "hostAliases") return "ip";
  if (field == "ports") {
    // Container ports merge by containerPort, Service ports by port.
    for (const Json& e : list) {
      if (e.is_object() && e.contains("containerPort")) return "containerPort";
    }
    return "port";
  }
  return "";
}

bool IsSetList(const std::string& field) { return field == "finalizers"; }

Json Merge(const Json& target, const Json& patch, std::string* error);

Json MergeList(const std::string& field, const Json& target, const Json& patch,
               std::string* error) {
  Json base = target.is_array() ? target : Json::array();
  if (IsSetList(field)) {
    for (const Json& v : patch) {
      if (std::find(base.begin(), base.end(), v) == base.end()) base.push_back(v);
    }
    return base;
  }
  std::string key = MergeKeyFor(field, patch.is_array() && !patch.empty() ? patch : base);
  if (key.empty()) {
    // Replace, but honour a list-level `$patch: replace` marker element.
    Json out = Json::array();
    for (const Json& e : patch) {
      if (e.is_object() && e.contains("$patch")) continue;
      out.push_back(e);
    }
    return out;
  }
  for (const Json& e : patch) {
    if (e.is_object() && e.value("$patch", "") == "replace") {
      Json out = Json::array();
      for (const Json& x : patch) {
        if (!(x.is_object() && x.contains("$patch"))) out.push_back(x);
      }
      return out;
    }
  }
  for (const Json& e : patch) {
    if (!e.is_object() || !e.contains(key)) {
      base.push_back(e);
      continue;
    }
    auto it = std::find_if(base.begin(), base.end(), [&](const Json& b) {
      return b.is_object() && b.contains(key) && b[key] == e[key];
    });
    if (e.value("$patch", "") == "delete") {
      if (it != base.end()) base.erase(it);
      continue;
    }
    if (it == base.end()) {
      base.push_back(Merge(Json::object(), e, error));
    } else {
      *it = Merge(*it, e, error);
    }
  }
  return base;
}

Json Merge(const Json& target, const Json& patch, std::string* error) {
  if (!patch.is_object()) return patch;
  Json out = target.is_object() ? target : Json::object();
  if (patch.value("$patch", "") == "replace") {
    Json copy = patch;
    copy.erase("$patch");
    return copy;
  }
  if (patch.value("$patch", "") == "delete") return Json();
  std::vector<std::string> retain;
  if (patch.contains("$retainKeys") && patch["$retainKeys"].is_array()) {
    for (const Json& k : patch["$retainKeys"]) retain.push_back(k.get<std::string>());
  }
  for (const auto& [k, v] : patch.items()) {
    if (k.rfind("$setElementOrder/", 0) == 0 || k == "$retainKeys" || k == "$patch") continue;
    if (k.rfind("$deleteFromPrimitiveList/", 0) == 0) {
      std::string field = k.substr(std::string("$deleteFromPrimitiveList/").size());
      if (out.contains(field) && out[field].is_array() && v.is_array()) {
        Json kept = Json::array();
        for (const Json& x : out[field]) {
          if (std::find(v.begin(), v.end(), x) == v.end()) kept.push_back(x);
        }
        out[field] = kept;
      }
      continue;
    }
    if (v.is_null()) {
      out.erase(k);
    } else if (v.is_object()) {
      Json merged = Merge(out.contains(k) ? out[k] : Json::object(), v, error);
      if (merged.is_null()) {
        out.erase(k);
      } else {
        out[k] = merged;
      }
    } else if (v.is_array()) {
      out[k] = MergeList(k, out.contains(k) ? out[k] : Json::array(), v, error);
    } else {
      out[k] = v;
    }
  }
  if (!retain.empty()) {
    for (auto it = out.begin(); it != out.end();) {
      if (std::find(retain.begin(), retain.end(), it.key()) == retain.end()) {
        it = out.erase(it);
      } else {
        ++it;
      }
    }
  }
  return out;
}

}  // namespace

Json ApplyMergePatch(const Json& target, const Json& patch) {
  Json out = target;
  out.merge_patch(patch);
  return out;
}

bool ApplyJsonPatch(const Json& target, const Json& patch, Json* out, std::string* error) {
  if (!patch.is_array()) {
    *error = "a JSON patch must be a list of operations";
    return false;
  }
  try {
    *out = target.patch(patch);
    return true;
  } catch (const std::exception& e) {
    *error = std::string("the JSON patch cannot be applied: ") + e.what();
    return false;
  }
}

bool ApplyStrategicMergePatch(const Json& target, const Json& patch, Json* out,
                              std::string* error) {
  if (!patch.is_object()) {
    *error = "a strategic merge patch must be a JSON object";
    return false;
  }
  std::string err;
  *out = Merge(target, patch, &err);
  if (!err.empty()) {
    *error = err;
    return false;
  }
  return true;
}

}  // namespace parallelrun::rt::cluster
