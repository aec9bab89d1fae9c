#pragma once
// Private to the API server's files: ApiServer::Impl (the writes, admission of built-in kinds,
// CRD schema checks, garbage collection and the Deployment/ReplicaSet/Endpoints controllers, each
// in its own file) and the object rules they share (object_rules.cc).

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "tests/cluster/apiserver.h"
#include "tests/cluster/schema.h"
#include "tests/cluster/store.h"

namespace parallelrun::rt::cluster {

// Object rules shared by the files below (object_rules.cc).
bool IsDns1123Subdomain(const std::string& s);
bool IsDns1123Label(const std::string& s);
ApiError InvalidError(const ResourceType& type, const std::string& name,
                      const std::vector<FieldError>& errors);
ApiError ConflictError(const ResourceType& type, const std::string& name);
ApiError AlreadyExists(const ResourceType& type, const std::string& name);
// The object without the fields that never count as a change.
Json Comparable(Json o);
// Whether a change touches more than metadata (and status, with a status subresource).
bool SpecChanged(const Json& a, const Json& b);
std::string PodPhase(const Json& pod);
bool IsPodReady(const Json& pod);
std::string ImagePullPolicyFor(const std::string& image);
void DefaultContainer(Json& c);
// pod: a Pod's own spec (not a template): also what kube-apiserver's admission adds to pods only
// (the `default` ServiceAccount, priority, the not-ready/unreachable tolerations).
void DefaultPodSpec(Json& spec, bool pod);
std::vector<FieldError> ValidatePodSpec(const Json& spec, const std::string& path);
std::string TemplateHash(const Json& tmpl);

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

  // Lookups and the writes (apiserver_writes.cc).
  std::variant<ResourceType, ApiError> Resolve(const ResourceRef& ref);

  std::string NsFor(const ResourceType& t, const std::string& ns) { return t.namespaced ? ns : ""; }

  Json Stamp(const ResourceType& t, Json o);

  // Admission of built-in kinds (kind_admission.cc).
  // Fills in the metadata and kind-specific defaults of a new object and validates it.
  std::optional<ApiError> PrepareCreate(const ResourceType& t, const std::string& ns, Json& o,
                                        const WriteOptions& opts);

  // Kind-specific defaulting and validation on create (old == nullptr) and update.
  std::optional<ApiError> AdmitKind(const ResourceType& t, const Json* old, Json& o,
                                    const WriteOptions& opts);

  // CRD schema checks (crd_validation.cc).
  std::optional<ApiError> AdmitCustom(const ResourceType& t, Json& o, const WriteOptions& opts);

  std::optional<ApiError> AdmitCrd(const ResourceType& t, const Json* old, Json& o);

  // Writes, continued (apiserver_writes.cc).
  std::string AllocateClusterIp();

  // Writes an object (already prepared) and runs the synchronous side effects.
  Json Commit(const ResourceType& t, Json o);

  void AfterWrite(const ResourceType& t, const Json& o);

  void EnsureNamespaceDefaults(const std::string& ns);

  ApiResult CreateLocked(const ResourceType& t, const std::string& ns, Json o,
                         const WriteOptions& opts);

  ApiResult UpdateLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                         Json o, const std::string& sub, const WriteOptions& opts, bool require_rv);

  ApiResult PatchLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                        const std::string& content_type, const std::string& body,
                        const std::string& sub, const WriteOptions& opts);

  // Removes the object for good (DELETED event) and runs side effects; returns its last state.
  Json RemoveLocked(const ResourceType& t, const Json& o);

  ApiResult DeleteLocked(const ResourceType& t, const std::string& ns, const std::string& name,
                         const DeleteOptions& opts);

  // Garbage collection and namespace deletion (garbage_collector.cc).
  struct Dependent {
    ResourceType type;
    Json object;
  };

  std::vector<Dependent> DependentsOf(const std::string& uid, const std::string& owner_ns);

  bool OwnerAlive(const Json& ref, const std::string& ns);

  void OrphanDependents(const std::string& uid);

  // Collects dependents of a deleted owner: deletes those without another live owner.
  void CollectGarbage(const Json& owner);

  // Owner in foreground deletion: deletes dependents, then drops the finalizer.
  void ForegroundStep(const ResourceType& t, const Json& owner);

  void NamespaceStep(const Json& ns_obj);

  // Deployment, ReplicaSet and Endpoints controllers and their loop (controllers.cc).
  // As the real controllers: a Deployment owns one ReplicaSet per pod template (named
  // <deployment>-<pod-template-hash>), each ReplicaSet owns its pods. Helm's --wait and `kubectl
  // rollout status` look for the Deployment's new ReplicaSet. Rollouts use the Recreate strategy
  // (old ReplicaSets are scaled to 0 at once), which is enough for tests.

  static bool ControlledBy(const Json& o, const std::string& uid);

  static Json ControllerRef(const std::string& api_version, const std::string& kind,
                            const Json& owner);

  // The ReplicaSet of a Deployment's current template, created when missing.
  std::optional<Json> NewReplicaSet(const ResourceType& rst, const Json& d, const std::string& hash,
                                    int64_t replicas);

  void ReconcileDeployment(const std::string& ns, const std::string& name);

  void WriteDeploymentStatus(const ResourceType& dt, Json d, const std::string& rs_name,
                             int64_t replicas, int64_t total, int64_t updated, int64_t ready);

  void ReconcileReplicaSet(const std::string& ns, const std::string& name);

  void ReconcileEndpoints(const std::string& ns, const std::string& name);

  void HandleEvent(const Store::Event& e);

  // garbage_collector.cc
  void ForegroundOrNamespace(const ResourceType& t, const Json& o);

  // `seen`: the resourceVersion the controllers start after (taken before the server serves, so
  // no early write is missed).
  void ControllerLoop(int64_t seen);

  // Tokens and bootstrap objects (bootstrap.cc).
  std::string TokenLocked(const std::string& ns, const std::string& name);

  void Bootstrap();

  void PublishKubernetesService();
};

}  // namespace parallelrun::rt::cluster
