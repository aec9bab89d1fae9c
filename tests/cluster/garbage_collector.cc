// ApiServer::Impl: the garbage collector (owner references, orphan/background/foreground
// propagation) and namespace deletion.
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

std::vector<ApiServer::Impl::Dependent> ApiServer::Impl::DependentsOf(const std::string& uid,
                                                                      const std::string& owner_ns) {
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

bool ApiServer::Impl::OwnerAlive(const Json& ref, const std::string& ns) {
  std::string api_version = ref.value("apiVersion", "");
  std::string group = api_version.find('/') == std::string::npos
                          ? ""
                          : api_version.substr(0, api_version.find('/'));
  auto t = registry_.FindByKind(group, ref.value("kind", ""));
  if (!t) return false;
  const Json* o = store_.Find(t->TypeKey(), t->namespaced ? ns : "", ref.value("name", ""));
  return o != nullptr && (*o)["metadata"].value("uid", "") == ref.value("uid", "");
}

void ApiServer::Impl::OrphanDependents(const std::string& uid) {
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
void ApiServer::Impl::CollectGarbage(const Json& owner) {
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
void ApiServer::Impl::ForegroundStep(const ResourceType& t, const Json& owner) {
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

void ApiServer::Impl::NamespaceStep(const Json& ns_obj) {
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

void ApiServer::Impl::ForegroundOrNamespace(const ResourceType& t, const Json& o) {
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

}  // namespace parallelrun::rt::cluster
