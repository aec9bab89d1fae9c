// ApiServer::Impl: the Deployment, ReplicaSet and Endpoints controllers and the controller loop
// that feeds them and the garbage collector from the store's events.
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

bool ApiServer::Impl::ControlledBy(const Json& o, const std::string& uid) {
  for (const Json& ref : o["metadata"].value("ownerReferences", Json::array())) {
    if (ref.value("uid", "") == uid && ref.value("controller", false)) return true;
  }
  return false;
}

Json ApiServer::Impl::ControllerRef(const std::string& api_version, const std::string& kind,
                                    const Json& owner) {
  return Json::array({{{"apiVersion", api_version},
                       {"kind", kind},
                       {"name", owner["metadata"].value("name", "")},
                       {"uid", owner["metadata"].value("uid", "")},
                       {"controller", true},
                       {"blockOwnerDeletion", true}}});
}

// The ReplicaSet of a Deployment's current template, created when missing.
std::optional<Json> ApiServer::Impl::NewReplicaSet(const ResourceType& rst, const Json& d,
                                                   const std::string& hash, int64_t replicas) {
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

void ApiServer::Impl::ReconcileDeployment(const std::string& ns, const std::string& name) {
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

void ApiServer::Impl::WriteDeploymentStatus(const ResourceType& dt, Json d,
                                            const std::string& rs_name, int64_t replicas,
                                            int64_t total, int64_t updated, int64_t ready) {
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

void ApiServer::Impl::ReconcileReplicaSet(const std::string& ns, const std::string& name) {
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

void ApiServer::Impl::ReconcileEndpoints(const std::string& ns, const std::string& name) {
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

void ApiServer::Impl::HandleEvent(const Store::Event& e) {
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

// `seen`: the resourceVersion the controllers start after (taken before the server serves, so
// no early write is missed).
void ApiServer::Impl::ControllerLoop(int64_t seen) {
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
                     e.type_key.c_str(), e.object["metadata"].value("name", "").c_str(), ex.what());
      }
      seen = e.rv;
    }
  }
}

}  // namespace parallelrun::rt::cluster
