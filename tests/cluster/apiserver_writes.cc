// ApiServer::Impl: lookups and the four writes (create, update, patch, delete) under the store's
// lock, with finalizers, deletion timestamps and resourceVersion conflicts.
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

std::variant<ResourceType, ApiError> ApiServer::Impl::Resolve(const ResourceRef& ref) {
  auto t = registry_.Find(ref.group, ref.resource);
  if (!t) {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  return *t;
}

Json ApiServer::Impl::Stamp(const ResourceType& t, Json o) {
  o["apiVersion"] = t.ApiVersion();
  o["kind"] = t.kind;
  return o;
}

std::string ApiServer::Impl::AllocateClusterIp() {
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
Json ApiServer::Impl::Commit(const ResourceType& t, Json o) {
  int64_t rv = store_.Put(t.TypeKey(), o);
  o["metadata"]["resourceVersion"] = std::to_string(rv);
  AfterWrite(t, o);
  return o;
}

void ApiServer::Impl::AfterWrite(const ResourceType& t, const Json& o) {
  if (t.resource == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
    registry_.RegisterCrd(o);
  } else if (t.resource == "namespaces" && t.group.empty()) {
    EnsureNamespaceDefaults(o["metadata"].value("name", ""));
  } else if (t.resource == "serviceaccounts" && t.group.empty()) {
    TokenLocked(o["metadata"].value("namespace", ""), o["metadata"].value("name", ""));
  }
}

void ApiServer::Impl::EnsureNamespaceDefaults(const std::string& ns) {
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

ApiResult ApiServer::Impl::CreateLocked(const ResourceType& t, const std::string& ns, Json o,
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

ApiResult ApiServer::Impl::UpdateLocked(const ResourceType& t, const std::string& ns,
                                        const std::string& name, Json o, const std::string& sub,
                                        const WriteOptions& opts, bool require_rv) {
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

ApiResult ApiServer::Impl::PatchLocked(const ResourceType& t, const std::string& ns,
                                       const std::string& name, const std::string& content_type,
                                       const std::string& body, const std::string& sub,
                                       const WriteOptions& opts) {
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

// Removes the object for good (DELETED event) and runs side effects; returns its last state.
Json ApiServer::Impl::RemoveLocked(const ResourceType& t, const Json& o) {
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

ApiResult ApiServer::Impl::DeleteLocked(const ResourceType& t, const std::string& ns,
                                        const std::string& name, const DeleteOptions& opts) {
  const Json* cur = store_.Find(t.TypeKey(), NsFor(t, ns), name);
  if (cur == nullptr) return NotFoundError(t, name);
  Json o = *cur;
  Json& md = o["metadata"];
  if (!opts.precondition_uid.empty() && opts.precondition_uid != md.value("uid", "")) {
    return MakeError(409, "Conflict",
                     "Operation cannot be fulfilled on " + t.QualifiedResource() + " \"" + name +
                         "\": Precondition failed: UID in precondition: " + opts.precondition_uid +
                         ", UID in object meta: " + md.value("uid", ""));
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

}  // namespace parallelrun::rt::cluster
