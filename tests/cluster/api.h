#pragma once
// The in-process API of the test cluster: the operations the HTTPS front end serves, callable
// directly by the process kubelet and the built-in controllers that run inside the same
// `testcluster` process. Every call has the semantics of the matching HTTP request (defaulting,
// validation, resourceVersion checks, watch events, garbage collection), but runs with full
// rights (no authentication or authorization: those belong to the HTTPS front end).

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

// An API error as the server answers it: the HTTP code, the Status `reason` and a message that
// kubectl prints as `Error from server (<reason>): <message>`.
struct ApiError {
  int code = 0;
  std::string reason;
  std::string message;
  Json details;  // Status.details (name, group, kind, causes); may be null

  // The `Status` object (kind Status, apiVersion v1) for this error.
  Json ToStatus() const;
};

// Outcome of one call: an object (or a list) or an error.
class ApiResult {
 public:
  ApiResult(Json value, int code = 200) : value_(std::move(value)), code_(code) {}
  ApiResult(ApiError error) : error_(std::move(error)), code_(error_.code) {}

  bool ok() const { return error_.code == 0; }
  const Json& value() const { return value_; }
  Json& value() { return value_; }
  const ApiError& error() const { return error_; }
  int code() const { return code_; }  // 200, 201 or the error's code

 private:
  Json value_;
  ApiError error_;
  int code_ = 200;
};

// A resource type by API group and plural name, e.g. {"", "pods"}, {"apps", "deployments"},
// {"parallelrun.io", "parallelrunjobs"}. The version is the served one (one per group here).
struct ResourceRef {
  std::string group;
  std::string resource;
};

// Options of list and watch calls (the query parameters of the same name).
struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;  // "" = most recent
  std::string resource_version_match;
  int64_t limit = 0;  // 0 = no limit
  std::string continue_token;
  bool allow_watch_bookmarks = false;
  bool send_initial_events = false;
  int64_t timeout_seconds = 0;  // watches: 0 = until cancelled
};

// Options of create, update and patch calls.
struct WriteOptions {
  bool dry_run = false;
  std::string field_manager;
  std::string field_validation;  // "", Ignore, Warn, Strict
  bool force = false;            // server-side apply
};

// Options of delete calls (DeleteOptions).
struct DeleteOptions {
  std::optional<int64_t> grace_period_seconds;
  std::string propagation_policy;  // "", Background, Foreground, Orphan
  bool dry_run = false;
  std::string precondition_uid;
  std::string precondition_resource_version;
};

// One watch event: type ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (object is then a Status).
struct WatchEvent {
  std::string type;
  Json object;
};

// An open watch. Events come in resourceVersion order, filtered like the list would be.
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  // Waits up to `timeout` for the next event; nullopt when none came in time. After an ERROR
  // event, or once the watch's timeoutSeconds passed, Closed() is true.
  virtual std::optional<WatchEvent> Next(std::chrono::milliseconds timeout) = 0;
  virtual bool Closed() const = 0;
  // Makes a watch that allowed bookmarks send one as soon as it has caught up, as if the
  // server's bookmark timer fired now. Safe to call from any thread.
  virtual void RequestBookmark() {}
};

// The API as the HTTPS front end serves it. Thread-safe.
class Api {
 public:
  virtual ~Api() = default;

  virtual ApiResult Get(const ResourceRef& ref, const std::string& ns, const std::string& name,
                        const std::string& subresource = "") = 0;
  // Returns a <Kind>List with metadata.resourceVersion (and continue when limited).
  virtual ApiResult List(const ResourceRef& ref, const std::string& ns,
                         const ListOptions& options = {}) = 0;
  virtual ApiResult Create(const ResourceRef& ref, const std::string& ns, Json object,
                           const WriteOptions& options = {}) = 0;
  // PUT. `subresource` is "" or "status".
  virtual ApiResult Update(const ResourceRef& ref, const std::string& ns, const std::string& name,
                           Json object, const std::string& subresource = "",
                           const WriteOptions& options = {}) = 0;
  // PATCH with a Content-Type of application/merge-patch+json, application/json-patch+json,
  // application/strategic-merge-patch+json or application/apply-patch+yaml.
  virtual ApiResult Patch(const ResourceRef& ref, const std::string& ns, const std::string& name,
                          const std::string& content_type, const std::string& body,
                          const std::string& subresource = "",
                          const WriteOptions& options = {}) = 0;
  // DELETE. Pods bound to a node get a deletionTimestamp and stay until the kubelet deletes
  // them again with grace period 0 (graceful deletion), as on a real cluster.
  virtual ApiResult Delete(const ResourceRef& ref, const std::string& ns, const std::string& name,
                           const DeleteOptions& options = {}) = 0;
  // Opens a watch; an error (e.g. 410 Expired) comes back instead of a stream.
  virtual std::unique_ptr<WatchStream> Watch(const ResourceRef& ref, const std::string& ns,
                                             const ListOptions& options, ApiError* error) = 0;
};

// What the process kubelet gets from the `testcluster` process it runs in.
struct KubeletContext {
  Api* api = nullptr;
  std::string state_dir;  // DIR of `testcluster up --state DIR`
  std::string node_name;  // the Node object created at bootstrap (see README.md)
  std::string api_host;   // 127.0.0.1: KUBERNETES_SERVICE_HOST
  int api_port = 0;       // KUBERNETES_SERVICE_PORT
  std::string ca_file;    // DIR/ca.crt: the service-account ca.crt
  // How pods run: "process" (host processes, commands from PATH) or "container" (real OCI
  // containers from local images with podman + runc; see kubelet/pod_runner.h).
  std::string runtime = "process";
  // The bearer token of service account <ns>/<name> (created on first use; also in
  // DIR/tokens/<ns>/<name>). The API server authenticates it as
  // system:serviceaccount:<ns>:<name>.
  std::function<std::string(const std::string& ns, const std::string& name)> service_account_token;
};

// Implemented by tests/cluster/kubelet (linked only when that folder builds the target
// `cluster_kubelet`).
class Kubelet {
 public:
  virtual ~Kubelet() = default;
  // Stops every pod process (SIGTERM, then SIGKILL after the grace period) and returns when
  // they are gone.
  virtual void Stop() = 0;
};
std::unique_ptr<Kubelet> StartKubelet(const KubeletContext& context);
// Kills pod processes left behind by a testcluster process that died without Stop() (used by
// `testcluster down` after it had to SIGKILL the server).
void KillLeftoverPodProcesses(const std::string& state_dir);

}  // namespace parallelrun::rt::cluster
