#pragma once
// The API semantics of the test cluster (everything but HTTP): the Api of api.h over a Store,
// with the built-in kinds' defaulting and validation, CRD registration and schema checks,
// status subresource and generation rules, finalizers, graceful pod deletion, and the
// controllers that a real control plane runs (garbage collector, namespace deletion,
// Deployments, Endpoints, default ServiceAccounts and their tokens).

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "tests/cluster/api.h"
#include "tests/cluster/registry.h"
#include "tests/cluster/store.h"

namespace parallelrun::rt::cluster {

// Name of the one Node (the kubelet's).
inline constexpr const char* kNodeName = "testcluster-node";

class ApiServer : public Api {
 public:
  // state_dir: DIR ("" = memory only, for unit tests).
  explicit ApiServer(std::string state_dir);
  ~ApiServer() override;

  // Loads the store, registers stored CRDs, creates the bootstrap objects (namespaces default,
  // kube-system, kube-public, kube-node-lease; the node; RBAC defaults) and starts the
  // controllers. False with a message on failure.
  bool Start(std::string* error);
  void Stop();
  // Where the HTTPS front end listens (for the `kubernetes` Service and Endpoints).
  void SetServingAddress(const std::string& host, int port);
  // With a kubelet attached, bound pods are deleted gracefully (see README.md).
  void SetKubeletAttached(bool attached) { kubelet_attached_ = attached; }

  Registry& registry() { return registry_; }
  const std::string& state_dir() const { return state_dir_; }

  // Token of a service account, made (and written to DIR/tokens/<ns>/<name>) on first use.
  std::string ServiceAccountToken(const std::string& ns, const std::string& name);
  // "system:serviceaccount:<ns>:<name>" for a known service-account token, "" otherwise.
  std::string ServiceAccountForToken(const std::string& token);

  // Api
  ApiResult Get(const ResourceRef& ref, const std::string& ns, const std::string& name,
                const std::string& subresource = "") override;
  ApiResult List(const ResourceRef& ref, const std::string& ns,
                 const ListOptions& options = {}) override;
  ApiResult Create(const ResourceRef& ref, const std::string& ns, Json object,
                   const WriteOptions& options = {}) override;
  ApiResult Update(const ResourceRef& ref, const std::string& ns, const std::string& name,
                   Json object, const std::string& subresource = "",
                   const WriteOptions& options = {}) override;
  ApiResult Patch(const ResourceRef& ref, const std::string& ns, const std::string& name,
                  const std::string& content_type, const std::string& body,
                  const std::string& subresource = "", const WriteOptions& options = {}) override;
  ApiResult Delete(const ResourceRef& ref, const std::string& ns, const std::string& name,
                   const DeleteOptions& options = {}) override;
  std::unique_ptr<WatchStream> Watch(const ResourceRef& ref, const std::string& ns,
                                     const ListOptions& options, ApiError* error) override;

  // Internal, exposed for the watch stream; requires the store mutex.
  Store& store() { return store_; }

 private:
  class Impl;
  std::string state_dir_;
  Store store_;
  Registry registry_;
  std::atomic<bool> kubelet_attached_{false};
  std::unique_ptr<Impl> impl_;
};

// Helpers shared with the front end and tests.
ApiError NotFoundError(const ResourceType& type, const std::string& name);
ApiError BadRequest(const std::string& message);
ApiError MakeError(int code, const std::string& reason, const std::string& message);
// Parses a JSON or YAML body into JSON; false with a message when it is neither.
bool ParseBody(const std::string& body, Json* out, std::string* error);

}  // namespace parallelrun::rt::cluster
