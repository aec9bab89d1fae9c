#pragma once
// A cache of one resource type kept current by list + watch over the in-process Api (api.h),
// re-listing after a 410 or a closed watch, as client-go's informers do. The kubelet reads the
// cache and asks which keys changed since it last looked.
//
// Thread-safe: one background thread feeds the cache; readers may call from any thread.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster/api.h"

namespace parallelrun::rt::cluster {

class Informer {
 public:
  // `notify` is called (from the informer's thread) after every change of the cache.
  Informer(Api* api, ResourceRef ref, std::function<void()> notify);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void Start();
  void Stop();

  // True once the first list has been loaded.
  bool Synced() const { return synced_; }

  // Key of an object: "<namespace>/<name>" ("/<name>" for cluster-scoped ones).
  static std::string KeyOf(const Json& object);

  std::optional<Json> Get(const std::string& key) const;
  std::vector<Json> List() const;
  // Keys added, changed or removed since the last call.
  std::set<std::string> TakeChanged();

 private:
  void Run();
  // Replaces the cache with a fresh list; returns its resourceVersion ("" on failure).
  std::string Relist();
  void Apply(const WatchEvent& event);

  Api* api_;
  ResourceRef ref_;
  std::function<void()> notify_;
  mutable std::mutex mu_;
  std::map<std::string, Json> objects_;
  std::set<std::string> changed_;
  std::atomic<bool> synced_{false};
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread thread_;
};

}  // namespace parallelrun::rt::cluster
