#include "operator/controller/work_queue.h"

#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "runtime/base/mutex.h"

namespace parallelrun::op::controller {

using Clock = rt::SteadyTime::clock;

// Delayed items are promoted to the ready queue by whoever looks next (Get waits with
// wait_until on the earliest deadline; Len promotes too), so no timer thread is needed.
struct WorkQueue::Impl {
  WorkQueueOptions options;
  const rt::Clock* clock = &rt::RealClock::Get();

  Clock::time_point Now() const { return clock->SteadyNow(); }

  rt::Mutex mu;
  rt::CondVar cv;
  std::deque<std::string> queue GUARDED_BY(mu);                     // ready, in order
  std::unordered_set<std::string> dirty GUARDED_BY(mu);             // queued or re-added
  std::unordered_set<std::string> processing GUARDED_BY(mu);        // handed out, not Done()
  std::map<std::string, Clock::time_point> waiting GUARDED_BY(mu);  // delayed: key → ready time
  std::set<std::pair<Clock::time_point, std::string>> by_time GUARDED_BY(mu);  // same, by time
  std::unordered_map<std::string, int> failures GUARDED_BY(mu);
  bool shutting_down GUARDED_BY(mu) = false;

  void AddLocked(const std::string& key) REQUIRES(mu) {
    if (shutting_down || dirty.count(key)) return;
    dirty.insert(key);
    if (processing.count(key)) return;  // Done() queues it again
    queue.push_back(key);
    cv.NotifyOne();
  }

  void PromoteDue(Clock::time_point now) REQUIRES(mu) {
    while (!by_time.empty() && by_time.begin()->first <= now) {
      std::string key = by_time.begin()->second;
      by_time.erase(by_time.begin());
      waiting.erase(key);
      AddLocked(key);
    }
  }

  // Keeps the earliest ready time when a key is already waiting.
  void AddAfterLocked(const std::string& key, Clock::time_point when) REQUIRES(mu) {
    auto it = waiting.find(key);
    if (it != waiting.end()) {
      if (it->second <= when) return;
      by_time.erase({it->second, key});
      it->second = when;
    } else {
      waiting.emplace(key, when);
    }
    by_time.emplace(when, key);
    cv.NotifyOne();  // a Get waiting for a later deadline recomputes
  }
};

WorkQueue::WorkQueue(WorkQueueOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  if (options.clock != nullptr) impl_->clock = options.clock;
}

WorkQueue::~WorkQueue() { ShutDown(); }

void WorkQueue::Add(const std::string& key) {
  rt::MutexLock lock(impl_->mu);
  impl_->AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, std::chrono::milliseconds delay) {
  rt::MutexLock lock(impl_->mu);
  if (impl_->shutting_down) return;
  if (delay <= std::chrono::milliseconds::zero()) {
    impl_->AddLocked(key);
    return;
  }
  impl_->AddAfterLocked(key, impl_->Now() + delay);
}

void WorkQueue::AddRateLimited(const std::string& key) {
  std::chrono::milliseconds delay;
  {
    rt::MutexLock lock(impl_->mu);
    int n = impl_->failures[key]++;
    // base · 2^n, capped; computed in double so large n cannot overflow.
    double ms = static_cast<double>(impl_->options.base_delay.count()) * std::pow(2.0, n);
    double cap = static_cast<double>(impl_->options.max_delay.count());
    delay = std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, cap)));
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const std::string& key) {
  rt::MutexLock lock(impl_->mu);
  impl_->failures.erase(key);
}

int WorkQueue::NumRequeues(const std::string& key) const {
  rt::MutexLock lock(impl_->mu);
  auto it = impl_->failures.find(key);
  return it == impl_->failures.end() ? 0 : it->second;
}

std::optional<std::string> WorkQueue::Get() {
  Impl& q = *impl_;
  rt::MutexLock lock(q.mu);
  while (true) {
    if (q.shutting_down) return std::nullopt;
    q.PromoteDue(q.Now());
    if (!q.queue.empty()) {
      std::string key = std::move(q.queue.front());
      q.queue.pop_front();
      q.processing.insert(key);
      q.dirty.erase(key);
      return key;
    }
    if (q.by_time.empty()) {
      q.cv.Wait(q.mu);
    } else {
      // A copy: the set node may be erased by another thread while this one waits. The wait is
      // in real time, for the gap left on the queue's clock.
      const Clock::duration gap = q.by_time.begin()->first - q.Now();
      q.cv.WaitUntil(q.mu, std::chrono::steady_clock::now() + gap);
    }
  }
}

void WorkQueue::Done(const std::string& key) {
  rt::MutexLock lock(impl_->mu);
  impl_->processing.erase(key);
  if (impl_->dirty.count(key) && !impl_->shutting_down) {
    impl_->queue.push_back(key);
    impl_->cv.NotifyOne();
  }
}

void WorkQueue::ShutDown() {
  rt::MutexLock lock(impl_->mu);
  impl_->shutting_down = true;
  impl_->cv.NotifyAll();
}

bool WorkQueue::ShuttingDown() const {
  rt::MutexLock lock(impl_->mu);
  return impl_->shutting_down;
}

size_t WorkQueue::Len() const {
  rt::MutexLock lock(impl_->mu);
  impl_->PromoteDue(impl_->Now());
  return impl_->queue.size();
}

}  // namespace parallelrun::op::controller
