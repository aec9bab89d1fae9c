// A kube::Client for unit tests: the test cluster's API server (tests/cluster, cluster::ApiServer)
// in the same process, called directly instead of over HTTPS. Test-only (target op_kube_fake,
// built with the tests); production code never links it.
//
// Semantics are the test cluster's, one emulation of kube-apiserver for every test
// (tests/cluster/README.md): resourceVersions, defaulting and validation of built-in kinds, the
// CRDs in crds/ with their schemas and status subresource, selectors, paging, patches, finalizers,
// graceful deletion, garbage collection and the built-in controllers, watch history and 410.
// Namespaces must exist before objects are created in them, as on a real cluster: the default
// ones (default, kube-system, kube-public, kube-node-lease) do, others are listed in
// FakeClientOptions::namespaces. Errors are mapped exactly as the HTTPS client maps the same
// answer (client.h, http_status.h): "<VERB> <path>: <code> <reason>: <message>".
//
// Test hooks (client-side, the API server is not involved): InjectError (fail the next N calls
// of a verb on a resource), Calls/CallCount (every (verb, group, resource[/subresource]) used,
// for RBAC checks), CloseAllWatches (a dropped connection: undelivered events are lost, clients
// re-watch), OpenWatches. Server-side: CompactHistory (etcd compaction: older resourceVersions
// get 410), SendBookmarks (the server's bookmark timer firing now), CurrentResourceVersion.
// Thread-safe; watch streams may outlive the client.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "operator/kube/client.h"

namespace parallelrun::rt::cluster {
class ApiServer;
}  // namespace parallelrun::rt::cluster

namespace parallelrun::op::kube {

struct FakeWatchState;

struct FakeClientOptions {
  // Namespaces created at start, besides the cluster's default ones.
  std::vector<std::string> namespaces;
  // CustomResourceDefinition manifests (YAML or JSON files) applied at start; by default the
  // project's own (crds/*.yaml).
  std::vector<std::string> crd_files = DefaultCrdFiles();

  static std::vector<std::string> DefaultCrdFiles();
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
  // A failed start (a CRD file that does not parse or is refused) is returned by every call.
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
  StatusOr<nlohmann::json> CreateDryRun(const Resource& r, const std::string& ns,
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
  // matches any verb or resource) fail with `error` before reaching the server. They are still
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
  // Every watch that allowed bookmarks gets a BOOKMARK once it has caught up.
  void SendBookmarks();
  // Watches not yet ended (streams whose owner still holds them, not cancelled).
  int OpenWatches() const;
  int64_t CurrentResourceVersion() const;

 private:
  // Records the call and returns the first failure due: a failed start or an injected error.
  Status Enter(const std::string& verb, const Resource& r, const std::string& subresource);

  std::shared_ptr<rt::cluster::ApiServer> server_;
  Status start_error_;
  mutable std::mutex mu_;
  std::map<ApiCall, int> calls_;
  struct Injection {
    std::string verb;
    std::string resource;
    Status error;
    int remaining;
  };
  std::vector<Injection> injections_;
  std::vector<std::weak_ptr<FakeWatchState>> watches_;
};

}  // namespace parallelrun::op::kube
