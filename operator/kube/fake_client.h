// An in-memory kube::Client for tests: an API server's storage and watch semantics without HTTP.
//
// Guarantees (each as the real API server does it, see shared/reference/k8s-wire.md §9):
// - One global, monotonically increasing resourceVersion; every write bumps it.
// - Create sets uid, creationTimestamp, generation 1 and resourceVersion; an existing name is
//   AlreadyExists; `generateName` picks a unique name; a body with a resourceVersion is Invalid.
// - Update/Patch with a stale metadata.resourceVersion is a Conflict (kAborted). A PUT without
//   one is unconditional for built-in resources and Invalid for custom resources (a group with a
//   dot that is not *.k8s.io).
// - metadata.generation bumps when anything but .metadata and .status changes, and once when a
//   deletionTimestamp is set; never on status writes.
// - Status subresource (every resource except those in Options::without_status): writes to the
//   main resource keep the stored .status (a create drops it); writes to "status" change only
//   .status. Resources without it answer NotFound for "status".
// - Patch: merge patch (RFC 7386), JSON patch (RFC 6902, `test` included), apply as
//   create-or-merge. A metadata.resourceVersion in the patched result is a precondition.
//   Strategic merge patch is refused (InvalidArgument): it needs per-type schemas the fake does
//   not have (custom resources refuse it on a real server too).
// - Delete of an object with finalizers sets deletionTimestamp once (MODIFIED); the write that
//   empties its finalizers removes it (DELETED); new finalizers cannot be added meanwhile.
//   Pods are deleted at once (no kubelet). Preconditions (uid, resourceVersion) → Conflict.
// - Garbage collection (Options::garbage_collection, off by default as in envtest): removing
//   an owner drops the references to it from dependents and deletes those left without
//   owners; propagationPolicy Orphan only drops the references.
// - List: label selectors (=, ==, !=, in, notin, key, !key; comma = AND), field selectors
//   (=, ==, != on any dotted path, metadata.name and metadata.namespace included), limit and
//   continue over a consistent snapshot (all pages share the first page's resourceVersion);
//   a continue token, or a paged list at an exact resourceVersion, older than the kept history
//   is 410 Gone.
// - Watch: resourceVersion unset or "0" → synthetic ADDED for current objects, then changes;
//   N → changes after N, or an ERROR event (metav1.Status code 410, reason Expired) and the end
//   of the stream when N is older than the kept history (the last Options::history_window
//   events). Events are filtered as lists are; an object that stops (starts) matching a
//   selector arrives as DELETED (ADDED). timeoutSeconds ends the stream. BOOKMARKs are sent
//   by SendBookmarks() to watches that allowed them.
// - Errors carry messages shaped like the real client's: "<VERB> <path>: <code> <reason>: ...".
// Thread-safe: every call may come from any thread; watch streams outlive the client safely.
//
// Test hooks: InjectError (fail the next N calls of a verb on a resource), Calls/CallCount
// (every (verb, group, resource[/subresource]) used, for RBAC checks), CloseAllWatches (a
// server drop: undelivered events are lost, clients re-watch), CompactHistory, SendBookmarks.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "operator/kube/client.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::kube {

struct FakeClientOptions {
  // Watch events kept for resuming watches; older resourceVersions get 410.
  size_t history_window = 1000;
  bool garbage_collection = false;
  // Plural names of resources that have no status subresource.
  std::set<std::string> without_status = {
      "configmaps",      "secrets", "events",       "leases",       "endpoints",
      "serviceaccounts", "roles",   "rolebindings", "clusterroles", "clusterrolebindings"};
  const rt::Clock* clock = &rt::RealClock::Get();  // creation and deletion timestamps
};

// One API request as RBAC sees it. `resource` includes the subresource: "parallelrunjobs/status".
// Verbs: get, list, watch, create, update, patch, delete.
struct ApiCall {
  std::string verb;
  std::string group;
  std::string resource;
  auto operator<=>(const ApiCall&) const = default;
};

class FakeClient : public Client {
 public:
  explicit FakeClient(FakeClientOptions options = {});
  ~FakeClient() override;
  FakeClient(const FakeClient&) = delete;
  FakeClient& operator=(const FakeClient&) = delete;

  StatusOr<nlohmann::json> Get(const Resource& r, const std::string& ns,
                               const std::string& name) override;
  StatusOr<nlohmann::json> List(const Resource& r, const std::string& ns,
                                const ListOptions& options) override;
  StatusOr<nlohmann::json> Create(const Resource& r, const std::string& ns,
                                  const nlohmann::json& object) override;
  StatusOr<nlohmann::json> Update(const Resource& r, const std::string& ns,
                                  const nlohmann::json& object,
                                  const std::string& subresource = "") override;
  StatusOr<nlohmann::json> Patch(const Resource& r, const std::string& ns, const std::string& name,
                                 PatchType type, const nlohmann::json& patch,
                                 const std::string& subresource = "") override;
  Status Delete(const Resource& r, const std::string& ns, const std::string& name,
                const DeleteOptions& options = {}) override;
  StatusOr<std::unique_ptr<WatchStream>> Watch(const Resource& r, const std::string& ns,
                                               const ListOptions& options) override;

  // --- Test hooks ---

  // The next `times` calls of `verb` on `resource` ("pods", "parallelrunjobs/status"; "*"
  // matches any verb or resource) fail with `error` before doing anything. They are still
  // recorded in Calls().
  void InjectError(const std::string& verb, const std::string& resource, Status error,
                   int times = 1);
  void ClearInjectedErrors();
  // Every call made so far, with how often.
  std::map<ApiCall, int> Calls() const;
  // Calls of `verb` on `resource` (with subresource, any group).
  int CallCount(const std::string& verb, const std::string& resource) const;
  void ResetCalls();

  // Ends every open watch as a dropped connection would: events not yet read are lost.
  // `error` ok → Next() returns nullopt (clean end); otherwise Next() returns `error`.
  void CloseAllWatches(Status error = Status::Ok());
  // Forgets all history: watches from any resourceVersion before now get 410.
  void CompactHistory();
  // Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks.
  void SendBookmarks();
  // Watches not yet ended (streams whose owner still holds them, not cancelled).
  int OpenWatches() const;
  int64_t CurrentResourceVersion() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace parallelrun::op::kube
