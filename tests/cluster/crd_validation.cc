// ApiServer::Impl: custom resources checked against their CRD's structural schema, and the
// CustomResourceDefinitions themselves.
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

std::optional<ApiError> ApiServer::Impl::AdmitCustom(const ResourceType& t, Json& o,
                                                     const WriteOptions& opts) {
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

std::optional<ApiError> ApiServer::Impl::AdmitCrd(const ResourceType& t, const Json* old, Json& o) {
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

}  // namespace parallelrun::rt::cluster
