#pragma once
// The resource types the test cluster serves: the built-in kinds of SPEC.md §8 and the kinds
// that CustomResourceDefinitions register at run time.

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

struct ResourceType {
  std::string group;                  // "" for core
  std::string version;                // served (and storage) version
  std::vector<std::string> versions;  // every served version, preferred first
  std::string resource;               // plural
  std::string singular;
  std::string kind;
  std::string list_kind;
  bool namespaced = true;
  std::vector<std::string> short_names;
  std::vector<std::string> categories;
  std::vector<std::string> verbs;
  std::vector<std::string> subresources;     // "status", "log", "token", "scale"
  bool custom = false;                       // from a CRD
  Json schema;                               // CRD openAPIV3Schema (null for built-ins)
  Json printer_columns;                      // CRD additionalPrinterColumns (array or null)
  std::vector<std::string> field_selectors;  // besides metadata.name / metadata.namespace
  std::string crd_name;                      // "<plural>.<group>" for custom types

  std::string TypeKey() const { return group + "/" + resource; }
  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "pods" or "widgets.example.com": how messages name the resource.
  std::string QualifiedResource() const {
    return group.empty() ? resource : resource + "." + group;
  }
  bool HasStatus() const;
};

// Thread-safe table of resource types.
class Registry {
 public:
  Registry();

  std::optional<ResourceType> Find(const std::string& group, const std::string& resource) const;
  // Looks a type up by apiVersion and kind (for ownerReferences, involvedObject, SAR).
  std::optional<ResourceType> FindByKind(const std::string& group, const std::string& kind) const;
  std::vector<ResourceType> All() const;
  // Adds or replaces the custom type described by a CRD object; returns its type.
  ResourceType RegisterCrd(const Json& crd);
  void UnregisterCrd(const std::string& group, const std::string& resource);
  // Bumped on every change (for discovery / OpenAPI hashes).
  int64_t generation() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, ResourceType> types_;  // by TypeKey
  int64_t generation_ = 1;
};

}  // namespace parallelrun::rt::cluster
