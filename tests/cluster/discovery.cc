#include "tests/cluster/discovery.h"

#include <map>
#include <set>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

Json SubresourceKind(const ResourceType& t, const std::string& sub) {
  if (sub == "scale") return {{"group", "autoscaling"}, {"version", "v1"}, {"kind", "Scale"}};
  if (sub == "token") {
    return {{"group", "authentication.k8s.io"}, {"version", "v1"}, {"kind", "TokenRequest"}};
  }
  return {{"group", t.group}, {"version", t.version}, {"kind", t.kind}};
}

std::vector<std::string> SubresourceVerbs(const std::string& sub) {
  if (sub == "log") return {"get"};
  if (sub == "token") return {"create"};
  return {"get", "patch", "update"};
}

// Group -> its types, groups ordered with the built-in ones first.
std::vector<std::pair<std::string, std::vector<ResourceType>>> Groups(const Registry& registry) {
  static const std::vector<std::string> kOrder = {"",
                                                  "apps",
                                                  "events.k8s.io",
                                                  "authentication.k8s.io",
                                                  "authorization.k8s.io",
                                                  "rbac.authorization.k8s.io",
                                                  "apiextensions.k8s.io",
                                                  "coordination.k8s.io"};
  std::map<std::string, std::vector<ResourceType>> by_group;
  for (const ResourceType& t : registry.All()) by_group[t.group].push_back(t);
  std::vector<std::pair<std::string, std::vector<ResourceType>>> out;
  for (const std::string& g : kOrder) {
    if (by_group.count(g)) out.push_back({g, by_group[g]});
  }
  for (auto& [g, types] : by_group) {
    if (std::find(kOrder.begin(), kOrder.end(), g) == kOrder.end()) out.push_back({g, types});
  }
  return out;
}

std::vector<std::string> GroupVersions(const std::vector<ResourceType>& types) {
  std::vector<std::string> versions;
  for (const ResourceType& t : types) {
    for (const std::string& v : t.versions) {
      if (std::find(versions.begin(), versions.end(), v) == versions.end()) versions.push_back(v);
    }
  }
  return versions;
}

bool Serves(const ResourceType& t, const std::string& v) {
  return std::find(t.versions.begin(), t.versions.end(), v) != t.versions.end();
}

std::string Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llX", static_cast<unsigned long long>(h));
  return buf;
}

// Reverse-domain schema id, as the real server names them.
std::string SchemaId(const ResourceType& t, const std::string& version) {
  if (t.group.empty()) return "io.k8s.api.core." + version + "." + t.kind;
  if (t.group == "apiextensions.k8s.io") {
    return "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions." + version + "." + t.kind;
  }
  if (!t.custom) {
    std::string g = t.group;
    size_t dot = g.find('.');
    std::string first = dot == std::string::npos ? g : g.substr(0, dot);
    if (g == "rbac.authorization.k8s.io") first = "rbac";
    return "io.k8s.api." + first + "." + version + "." + t.kind;
  }
  std::vector<std::string> parts = Split(t.group, '.');
  std::string id;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) id += (id.empty() ? "" : ".") + *it;
  return id + "." + version + "." + t.kind;
}

const char* kObjectMetaId = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

Json ObjectMetaSchema() {
  auto str = [](const char* d) { return Json{{"type", "string"}, {"description", d}}; };
  return {
      {"description",
       "ObjectMeta is metadata that all persisted resources must have, which includes all "
       "objects users must create."},
      {"type", "object"},
      {"properties",
       {{"name", str("Name must be unique within a namespace.")},
        {"namespace", str("Namespace defines the space within which each name must be unique.")},
        {"generateName", str("GenerateName is an optional prefix used by the server to generate "
                             "a unique name.")},
        {"uid", str("UID is the unique in time and space value for this object.")},
        {"resourceVersion", str("An opaque value that represents the internal version of this "
                                "object.")},
        {"generation",
         {{"type", "integer"},
          {"format", "int64"},
          {"description",
           "A sequence number representing a specific generation "
           "of the desired state."}}},
        {"creationTimestamp",
         {{"type", "string"},
          {"format", "date-time"},
          {"description",
           "CreationTimestamp is a timestamp representing "
           "the server time when this object was created."}}},
        {"deletionTimestamp",
         {{"type", "string"},
          {"format", "date-time"},
          {"description",
           "DeletionTimestamp is RFC 3339 date and time at "
           "which this resource will be deleted."}}},
        {"labels",
         {{"type", "object"},
          {"additionalProperties", {{"type", "string"}}},
          {"description",
           "Map of string keys and values that can be used to "
           "organize and categorize objects."}}},
        {"annotations",
         {{"type", "object"},
          {"additionalProperties", {{"type", "string"}}},
          {"description", "Annotations is an unstructured key value map."}}},
        {"finalizers",
         {{"type", "array"},
          {"items", {{"type", "string"}}},
          {"description",
           "Must be empty before the object is deleted from the "
           "registry."}}},
        {"ownerReferences",
         {{"type", "array"},
          {"items", {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}},
          {"description", "List of objects depended by this object."}}}}}};
}

Json KindSchema(const ResourceType& t, const std::string& version) {
  Json s;
  if (t.custom && t.schema.is_object()) {
    s = t.schema;
  } else {
    s = {{"type", "object"},
         {"description", t.kind + " (served by the test cluster; fields are not described)."},
         {"properties",
          {{"spec",
            {{"type", "object"},
             {"x-kubernetes-preserve-unknown-fields", true},
             {"description", "Desired state."}}},
           {"status",
            {{"type", "object"},
             {"x-kubernetes-preserve-unknown-fields", true},
             {"description", "Observed state."}}}}}};
  }
  if (!s.contains("properties")) s["properties"] = Json::object();
  s["properties"]["apiVersion"] = {
      {"type", "string"},
      {"description",
       "APIVersion defines the versioned schema of this representation of an object. Servers "
       "should convert recognized schemas to the latest internal value, and may reject "
       "unrecognized values. More info: "
       "https://git.k8s.io/community/contributors/devel/sig-architecture/"
       "api-conventions.md#resources"}};
  s["properties"]["kind"] = {
      {"type", "string"},
      {"description",
       "Kind is a string value representing the REST resource this object represents. Servers "
       "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
       "CamelCase. More info: "
       "https://git.k8s.io/community/contributors/devel/sig-architecture/"
       "api-conventions.md#types-kinds"}};
  s["properties"]["metadata"] = {
      {"allOf", Json::array({{{"$ref", std::string("#/components/schemas/") + kObjectMetaId}}})},
      {"description",
       "Standard object's metadata. More info: "
       "https://git.k8s.io/community/contributors/devel/sig-architecture/"
       "api-conventions.md#metadata"}};
  s["x-kubernetes-group-version-kind"] =
      Json::array({{{"group", t.group}, {"kind", t.kind}, {"version", version}}});
  return s;
}

Json Operation(const std::string& id, const std::string& action, const ResourceType& t,
               const std::string& version, bool write) {
  Json params = Json::array();
  if (write) {
    for (const char* p : {"dryRun", "fieldManager", "fieldValidation"}) {
      params.push_back(
          {{"name", p}, {"in", "query"}, {"schema", {{"type", "string"}}}, {"uniqueItems", true}});
    }
  }
  Json op = {
      {"operationId", id},
      {"x-kubernetes-action", action},
      {"x-kubernetes-group-version-kind",
       {{"group", t.group}, {"version", version}, {"kind", t.kind}}},
      {"parameters", params},
      {"responses",
       {{"200",
         {{"description", "OK"},
          {"content",
           {{"application/json",
             {{"schema", {{"$ref", "#/components/schemas/" + SchemaId(t, version)}}}}}}}}}}}};
  return op;
}

}  // namespace

Json AggregatedDiscovery(const Registry& registry, bool core, const std::string& version) {
  Json items = Json::array();
  for (const auto& [group, types] : Groups(registry)) {
    if (core != group.empty()) continue;
    Json versions = Json::array();
    for (const std::string& v : GroupVersions(types)) {
      Json resources = Json::array();
      for (const ResourceType& t : types) {
        if (!Serves(t, v)) continue;
        Json r = {{"resource", t.resource},
                  {"responseKind", {{"group", t.group}, {"version", v}, {"kind", t.kind}}},
                  {"scope", t.namespaced ? "Namespaced" : "Cluster"},
                  {"singularResource", t.singular},
                  {"verbs", t.verbs}};
        if (!t.short_names.empty()) r["shortNames"] = t.short_names;
        if (!t.categories.empty()) r["categories"] = t.categories;
        if (!t.subresources.empty()) {
          Json subs = Json::array();
          for (const std::string& sub : t.subresources) {
            Json kind = SubresourceKind(t, sub);
            if (sub != "scale" && sub != "token") kind["version"] = v;
            subs.push_back(
                {{"subresource", sub}, {"responseKind", kind}, {"verbs", SubresourceVerbs(sub)}});
          }
          r["subresources"] = subs;
        }
        resources.push_back(r);
      }
      versions.push_back({{"version", v}, {"resources", resources}, {"freshness", "Current"}});
    }
    items.push_back(
        {{"metadata", {{"name", group}, {"creationTimestamp", nullptr}}}, {"versions", versions}});
  }
  return {{"kind", "APIGroupDiscoveryList"},
          {"apiVersion", "apidiscovery.k8s.io/" + version},
          {"metadata", Json::object()},
          {"items", items}};
}

Json LegacyApiVersions(const std::string& server_address) {
  return {{"kind", "APIVersions"},
          {"versions", Json::array({"v1"})},
          {"serverAddressByClientCIDRs",
           Json::array({{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", server_address}}})}};
}

std::optional<Json> LegacyGroup(const Registry& registry, const std::string& group) {
  for (const auto& [g, types] : Groups(registry)) {
    if (g != group || g.empty()) continue;
    Json versions = Json::array();
    for (const std::string& v : GroupVersions(types)) {
      versions.push_back({{"groupVersion", g + "/" + v}, {"version", v}});
    }
    return Json{{"kind", "APIGroup"},
                {"apiVersion", "v1"},
                {"name", g},
                {"versions", versions},
                {"preferredVersion", versions[0]}};
  }
  return std::nullopt;
}

Json LegacyGroupList(const Registry& registry) {
  Json groups = Json::array();
  for (const auto& [g, types] : Groups(registry)) {
    if (g.empty()) continue;
    Json group = *LegacyGroup(registry, g);
    group.erase("kind");
    group.erase("apiVersion");
    groups.push_back(group);
  }
  return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}};
}

std::optional<Json> LegacyResourceList(const Registry& registry, const std::string& group,
                                       const std::string& version) {
  Json resources = Json::array();
  bool found = false;
  for (const ResourceType& t : registry.All()) {
    if (t.group != group || !Serves(t, version)) continue;
    found = true;
    Json r = {{"name", t.resource},
              {"singularName", t.singular},
              {"namespaced", t.namespaced},
              {"kind", t.kind},
              {"verbs", t.verbs}};
    if (!t.short_names.empty()) r["shortNames"] = t.short_names;
    if (!t.categories.empty()) r["categories"] = t.categories;
    resources.push_back(r);
    for (const std::string& sub : t.subresources) {
      Json kind = SubresourceKind(t, sub);
      Json s = {{"name", t.resource + "/" + sub},
                {"singularName", ""},
                {"namespaced", t.namespaced},
                {"kind", kind["kind"]},
                {"verbs", SubresourceVerbs(sub)}};
      if (sub == "scale" || sub == "token") {
        s["group"] = kind["group"];
        s["version"] = kind["version"];
      }
      resources.push_back(s);
    }
  }
  if (!found) return std::nullopt;
  return Json{{"kind", "APIResourceList"},
              {"apiVersion", "v1"},
              {"groupVersion", group.empty() ? version : group + "/" + version},
              {"resources", resources}};
}

std::optional<Json> OpenApiV3Document(const Registry& registry, const std::string& gv_path) {
  std::string group, version;
  if (gv_path.rfind("api/", 0) == 0) {
    version = gv_path.substr(4);
  } else if (gv_path.rfind("apis/", 0) == 0) {
    std::vector<std::string> parts = Split(gv_path.substr(5), '/');
    if (parts.size() != 2) return std::nullopt;
    group = parts[0];
    version = parts[1];
  } else {
    return std::nullopt;
  }
  Json paths = Json::object();
  Json schemas = Json::object();
  bool found = false;
  const std::string prefix = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  for (const ResourceType& t : registry.All()) {
    if (t.group != group || !Serves(t, version)) continue;
    found = true;
    std::string id = SchemaId(t, version);
    schemas[id] = KindSchema(t, version);
    std::string base = prefix + (t.namespaced ? "/namespaces/{namespace}/" : "/") + t.resource;
    Json patch_types = {
        {"application/json-patch+json",
         {{"schema",
           {{"$ref", "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}}}},
        {"application/merge-patch+json",
         {{"schema",
           {{"$ref", "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}}}},
        {"application/apply-patch+yaml",
         {{"schema",
           {{"$ref", "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}}}}};
    std::string name_suffix = (t.namespaced ? "Namespaced" : "") + t.kind;
    bool writable = std::find(t.verbs.begin(), t.verbs.end(), "patch") != t.verbs.end();
    if (writable) {
      Json item;
      item["get"] = Operation("read" + name_suffix, "get", t, version, false);
      item["put"] = Operation("replace" + name_suffix, "put", t, version, true);
      item["delete"] = Operation("delete" + name_suffix, "delete", t, version, false);
      Json patch = Operation("patch" + name_suffix, "patch", t, version, true);
      patch["parameters"].push_back({{"name", "force"},
                                     {"in", "query"},
                                     {"schema", {{"type", "boolean"}}},
                                     {"uniqueItems", true}});
      patch["requestBody"] = {{"content", patch_types}, {"required", true}};
      item["patch"] = patch;
      item["parameters"] = Json::array({{{"name", "name"},
                                         {"in", "path"},
                                         {"required", true},
                                         {"schema", {{"type", "string"}, {"uniqueItems", true}}}}});
      if (t.namespaced) {
        item["parameters"].push_back({{"name", "namespace"},
                                      {"in", "path"},
                                      {"required", true},
                                      {"schema", {{"type", "string"}, {"uniqueItems", true}}}});
      }
      paths[base + "/{name}"] = item;
    }
    Json coll;
    coll["get"] = Operation("list" + name_suffix, "list", t, version, false);
    coll["post"] = Operation("create" + name_suffix, "post", t, version, true);
    coll["post"]["requestBody"] = {
        {"content", {{"*/*", {{"schema", {{"$ref", "#/components/schemas/" + id}}}}}}},
        {"required", true}};
    paths[base] = coll;
  }
  if (!found) return std::nullopt;
  schemas[kObjectMetaId] = ObjectMetaSchema();
  schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = {
      {"type", "object"},
      {"description",
       "Patch is provided to give a concrete name and type to the Kubernetes "
       "PATCH request body."}};
  return Json{{"openapi", "3.0.0"},
              {"info", {{"title", "Kubernetes"}, {"version", "v1.32.4"}}},
              {"paths", paths},
              {"components", {{"schemas", schemas}}}};
}

Json OpenApiV3Root(const Registry& registry) {
  Json paths = Json::object();
  for (const auto& [group, types] : Groups(registry)) {
    for (const std::string& v : GroupVersions(types)) {
      std::string key = group.empty() ? "api/" + v : "apis/" + group + "/" + v;
      auto doc = OpenApiV3Document(registry, key);
      if (!doc) continue;
      paths[key] = {{"serverRelativeURL", "/openapi/v3/" + key + "?hash=" + Fnv(doc->dump())}};
    }
  }
  return {{"paths", paths}};
}

}  // namespace parallelrun::rt::cluster
