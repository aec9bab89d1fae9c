// The Kubernetes API as the operator sees it: typeless JSON objects addressed by resource.
// Knows no CRDs and no ParallelRunJob. A seam: HTTPS in production (http_client.h), an
// in-process test cluster API server in tests (fake_client.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::op::kube {

using rt::Status;
using rt::StatusCode;
using rt::StatusOr;

// A resource type: where its objects live in the REST tree.
//   core:  /api/v1/namespaces/<ns>/<resource>/<name>[/<subresource>]
//   group: /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>[/<subresource>]
// Cluster-scoped resources (namespaced = false) have no /namespaces/<ns> segment.
struct Resource {
  std::string group;     // "" for core
  std::string version;   // "v1", "v1alpha1"
  std::string resource;  // plural, lower case: "pods", "parallelrunjobs"
  std::string kind;      // "Pod"
  bool namespaced = true;

  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
  // Path of the collection; ns empty = all namespaces (list/watch only).
  std::string CollectionPath(const std::string& ns) const;
  // Path of one object, with an optional subresource ("status", "log").
  std::string ObjectPath(const std::string& ns, const std::string& name,
                         const std::string& subresource = "") const;
};

// The resources the operator uses (one definition, so RBAC can be checked against it).
namespace resources {
extern const Resource kPods;
extern const Resource kSecrets;
extern const Resource kConfigMaps;
extern const Resource kServices;
extern const Resource kEvents;           // core/v1 events
extern const Resource kNetworkPolicies;  // networking.k8s.io/v1
extern const Resource kLeases;           // coordination.k8s.io/v1
extern const Resource kParallelRunJobs;  // parallelrun.io/v1alpha1
}  // namespace resources

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;  // "" = most recent (quorum read)
  int64_t limit = 0;             // 0 = no paging
  std::string continue_token;
  // Watch only.
  bool allow_watch_bookmarks = true;
  int timeout_seconds = 0;  // server-side watch timeout; 0 = server default
};

enum class PatchType { kMerge, kJson, kStrategicMerge, kApply };

struct DeleteOptions {
  std::optional<int64_t> grace_period_seconds;
  std::string propagation_policy;  // "", "Background", "Foreground", "Orphan"
  std::string precondition_uid;
  std::string precondition_resource_version;
};

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  nlohmann::json object;
};

// One open watch. Next() blocks until an event arrives, the stream ends (nullopt: the server
// closed it or its timeout passed; the caller re-watches from its last resourceVersion), or
// Cancel() is called from another thread (nullopt). A broken connection is an Unavailable error.
// An ERROR event is returned as an event (its object is a metav1.Status; code 410 = Gone).
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  virtual StatusOr<std::optional<WatchEvent>> Next() = 0;
  virtual void Cancel() = 0;
};

// Errors: the HTTP status is mapped as
//   404 NotFound → kNotFound, 409 AlreadyExists (reason) → kAlreadyExists, 409 Conflict → kAborted,
//   410 Gone → kGone (IsGone), 400/422 → kInvalidArgument,
//   401 → kUnauthenticated, 403 → kPermissionDenied, 429/5xx/connection errors → kUnavailable,
//   timeouts → kDeadlineExceeded.
// The message is "<VERB> <path>: <code> <reason>: <metav1.Status message>".
// Thread-safe.
class Client {
 public:
  virtual ~Client() = default;
  virtual StatusOr<nlohmann::json> Get(const Resource& r, const std::string& ns,
                                       const std::string& name) = 0;
  // Returns the List object (`items`, `metadata.resourceVersion`, `metadata.continue`).
  virtual StatusOr<nlohmann::json> List(const Resource& r, const std::string& ns,
                                        const ListOptions& options) = 0;
  virtual StatusOr<nlohmann::json> Create(const Resource& r, const std::string& ns,
                                          const nlohmann::json& object) = 0;
  // POST ...?dryRun=All: the API server defaults, validates and admits the object as it would
  // create it, and stores nothing; the answer is the object as it would be stored, the errors are
  // Create's. Clients that cannot dry-run say so with kFailedPrecondition.
  virtual StatusOr<nlohmann::json> CreateDryRun(const Resource& r, const std::string& ns,
                                                const nlohmann::json& object);
  // PUT; subresource "" or "status". The object's metadata.resourceVersion makes it conditional.
  virtual StatusOr<nlohmann::json> Update(const Resource& r, const std::string& ns,
                                          const nlohmann::json& object,
                                          const std::string& subresource = "") = 0;
  virtual StatusOr<nlohmann::json> Patch(const Resource& r, const std::string& ns,
                                         const std::string& name, PatchType type,
                                         const nlohmann::json& patch,
                                         const std::string& subresource = "") = 0;
  // NotFound is returned as an error; callers that do not care check IsNotFound.
  virtual Status Delete(const Resource& r, const std::string& ns, const std::string& name,
                        const DeleteOptions& options = {}) = 0;
  virtual StatusOr<std::unique_ptr<WatchStream>> Watch(const Resource& r, const std::string& ns,
                                                       const ListOptions& options) = 0;
};

inline bool IsNotFound(const Status& s) { return s.code() == StatusCode::kNotFound; }
inline bool IsAlreadyExists(const Status& s) { return s.code() == StatusCode::kAlreadyExists; }
inline bool IsConflict(const Status& s) { return s.code() == StatusCode::kAborted; }
bool IsGone(const Status& s);

}  // namespace parallelrun::op::kube
