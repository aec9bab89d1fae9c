// A rate-limited work queue keyed by strings ("ns/name"), with client-go's semantics:
// an item is never handed to two workers at once; an item added while being processed is
// processed again after Done(); duplicates collapse; AddAfter delays; AddRateLimited delays by
// per-item exponential backoff (base 5 ms, cap 1000 s by default) that Forget() resets.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "runtime/base/time_util.h"

namespace parallelrun::op::controller {

struct WorkQueueOptions {
  std::chrono::milliseconds base_delay{5};
  std::chrono::milliseconds max_delay{1000 * 1000};
  // Where delays are measured (SteadyNow); nullptr: the real clock. A delayed item is ready once
  // this clock reaches its time: Len() and Get() promote it. Get() waits in real time for at most
  // the clock's remaining gap, then looks again, so with a clock a test moves by hand, Len()
  // after Advance() shows what became ready without sleeping.
  const rt::Clock* clock = nullptr;
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
