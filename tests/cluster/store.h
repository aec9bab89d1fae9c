#pragma once
// The object store of the test cluster: JSON objects keyed by (type, namespace, name), one
// global resourceVersion counter, a bounded history of change events for watches, and
// persistence as one JSON file per object under DIR/store so a restarted server keeps them.
//
// The store knows nothing about API semantics: the Api implementation checks and builds the
// objects and calls Put/Remove while holding the store's mutex (every write is serialised, so a
// read-check-write is atomic).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {

using Json = nlohmann::json;

class Store {
 public:
  // A change: type ADDED, MODIFIED or DELETED; `object` is the new state (the last state for
  // DELETED, with the deletion's resourceVersion); `previous` the state before (null for ADDED).
  struct Event {
    int64_t rv = 0;
    std::string type_key;  // "<group>/<resource>", e.g. "/pods", "apps/deployments"
    std::string ns;
    std::string type;
    Json object;
    Json previous;
  };

  // dir: where objects are persisted ("" = memory only). history: how many events are kept for
  // watches; older resourceVersions get 410 Gone.
  explicit Store(std::string dir, size_t history = 20000);

  // Loads persisted objects. Events before the load are gone, so watches from an older
  // resourceVersion get 410.
  bool Load(std::string* error);

  std::mutex& mutex() { return mu_; }

  // The calls below require mutex() to be held.
  int64_t current_rv() const { return rv_; }
  const Json* Find(const std::string& type_key, const std::string& ns,
                   const std::string& name) const;
  // Objects of a type (all namespaces when ns is empty), ordered by namespace then name.
  std::vector<const Json*> Objects(const std::string& type_key, const std::string& ns) const;
  // All type keys that hold objects.
  std::vector<std::string> TypeKeys() const;
  // Stores the object under a new resourceVersion (written into metadata.resourceVersion) and
  // records the event. Returns the new resourceVersion.
  int64_t Put(const std::string& type_key, Json object);
  // Removes an object; the DELETED event carries `last_state` with a new resourceVersion.
  int64_t Remove(const std::string& type_key, const std::string& ns, const std::string& name);

  // Forgets every event kept so far (as etcd compaction does): watches and continue tokens from
  // an older resourceVersion get 410.
  void Compact() {
    events_.clear();
    compacted_rv_ = rv_;
  }
  // Oldest resourceVersion a watch may start from (it gets every event after it).
  int64_t oldest_watchable_rv() const { return compacted_rv_; }
  // Events with rv > after; false when `after` is older than the kept history (410).
  bool EventsAfter(int64_t after, std::vector<const Event*>* out) const;
  // Waits (with the mutex held through `lock`) until an event after `rv` exists or the deadline.
  void WaitForEventAfter(std::unique_lock<std::mutex>& lock, int64_t rv,
                         std::chrono::steady_clock::time_point deadline);
  // Wakes every waiter for good (used at shutdown).
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::string PathFor(const std::string& type_key, const std::string& ns,
                      const std::string& name) const;
  void Persist(const std::string& type_key, const Json& object);

  std::string dir_;
  size_t history_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  int64_t rv_ = 1;
  int64_t compacted_rv_ = 1;
  // type_key -> "ns/name" -> object
  std::map<std::string, std::map<std::string, Json>> objects_;
  std::deque<Event> events_;
};

}  // namespace parallelrun::rt::cluster
