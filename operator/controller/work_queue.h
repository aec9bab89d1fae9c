// A rate-limited work queue keyed by strings ("ns/name"), with client-go's semantics:
// an item is never handed to two workers at once; an item added while being processed is
// processed again after Done(); duplicates collapse; AddAfter delays; AddRateLimited delays by
// per-item exponential backoff (base 5 ms, cap 1000 s by default) that Forget() resets.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace parallelrun::op::controller {

struct WorkQueueOptions {
  std::chrono::milliseconds base_delay{5};
  std::chrono::milliseconds max_delay{1000 * 1000};
};

class WorkQueue {
 public:
  explicit WorkQueue(WorkQueueOptions options = {});
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Add(const std::string& key);
  void AddAfter(const std::string& key, std::chrono::milliseconds delay);
  void AddRateLimited(const std::string& key);
  void Forget(const std::string& key);  // resets the key's backoff
  int NumRequeues(const std::string& key) const;

  // Blocks until an item is ready or ShutDown(); nullopt after shut down.
  std::optional<std::string> Get();
  void Done(const std::string& key);
  void ShutDown();
  bool ShuttingDown() const;
  size_t Len() const;  // ready items (not delayed, not processing)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallelrun::op::controller
