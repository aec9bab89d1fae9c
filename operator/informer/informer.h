// A shared informer: list+watch of one resource into a local store, with handlers.
// Keeps the list's resourceVersion and every event's, asks for bookmarks, re-watches from the
// last version when a watch ends, re-lists on 410 Gone (emitting DELETED for objects that
// vanished and MODIFIED/ADDED for the rest), and reconnects with capped exponential backoff
// (0.2 s … 30 s, jittered) after errors. Objects may be trimmed by `transform` before they are
// stored (the operator keeps only the fields it reads).
//
// The store keeps each object packed (CBOR, about the size of its JSON text; a parsed
// nlohmann::json takes 5-7 times that) and decodes it on every read: Get, List and ListByLabels
// return fresh snapshots (two calls give equal objects, not the same pointer), and ListByLabels
// decodes only the objects it returns.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "operator/kube/client.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::informer {

using ObjectPtr = std::shared_ptr<const nlohmann::json>;

struct InformerOptions {
  kube::Resource resource;
  std::string ns;  // "" = all namespaces
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;  // list with limit/continue
  // Applied to every object before it is stored and handed to handlers (may drop fields).
  std::function<nlohmann::json(nlohmann::json)> transform;
  // Wait after an error before retrying: starts here, doubles, jittered up to +25 %, capped.
  // A successful list or a received event starts over.
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  // Where the backoff waits and a watch's age are measured (SteadyNow); nullptr: the real clock.
  // A backoff wait re-reads the clock at least every 100 ms of real time, so a test that moves its
  // clock by hand sees the retry within that without sleeping.
  const rt::Clock* clock = nullptr;
};

// Called on the informer's thread, in order. type: ADDED, MODIFIED, DELETED.
// `old` is null for ADDED; `obj` is the last known state for DELETED.
using EventHandler =
    std::function<void(const std::string& type, const ObjectPtr& old, const ObjectPtr& obj)>;

class Informer {
 public:
  Informer(kube::Client& client, InformerOptions options);
  ~Informer();  // Stop()s
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void AddHandler(EventHandler handler);  // before Start()
  void Start();                           // starts the list+watch thread
  void Stop();                            // cancels the watch and joins
  bool HasSynced() const;  // the first list has been stored and handed to the handlers
  bool WaitForSync(std::chrono::milliseconds timeout) const;

  // Reads from the store (thread-safe; objects are immutable snapshots, decoded per call).
  ObjectPtr Get(const std::string& ns, const std::string& name) const;
  std::vector<ObjectPtr> List(const std::string& ns = "") const;
  // Objects whose metadata.labels contain every pair of `labels`.
  std::vector<ObjectPtr> ListByLabels(
      const std::string& ns, const std::vector<std::pair<std::string, std::string>>& labels) const;
  size_t Size() const;
  std::string LastResourceVersion() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "ns/name" (or "name" for cluster-scoped objects).
std::string KeyOf(const nlohmann::json& object);

}  // namespace parallelrun::op::informer
