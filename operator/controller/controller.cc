#include "operator/controller/controller.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace parallelrun::op::controller {

struct Controller::Impl {
  std::string name;
  WorkQueue& queue;
  ReconcileFn reconcile;
  int workers;
  ReconcileObserver* observer;

  std::mutex mu;  // guards threads and started
  bool started = false;
  std::vector<std::thread> threads;

  Impl(std::string n, WorkQueue& q, ReconcileFn fn, int w, ReconcileObserver* o)
      : name(std::move(n)), queue(q), reconcile(std::move(fn)), workers(w), observer(o) {}

  // A reconcile that throws is a bug in it, but must not take the operator down: it counts as an
  // error and the key is retried with backoff.
  Result Call(const std::string& key) {
    try {
      return reconcile(key);
    } catch (const std::exception& e) {
      return {rt::InternalError(std::string("reconcile threw: ") + e.what()), std::nullopt};
    } catch (...) {
      return {rt::InternalError("reconcile threw a non-standard exception"), std::nullopt};
    }
  }

  void Process(const std::string& key) {
    auto start = std::chrono::steady_clock::now();
    Result result = Call(key);
    std::chrono::duration<double> latency = std::chrono::steady_clock::now() - start;
    if (observer) observer->OnReconcile(key, result, latency);
    if (!result.status.ok()) {
      spdlog::warn("controller {}: reconcile {} failed (retry {}): {}", name, key,
                   queue.NumRequeues(key) + 1, result.status.ToString());
      queue.AddRateLimited(key);
    } else if (result.requeue_after) {
      queue.Forget(key);
      queue.AddAfter(key, *result.requeue_after);
    } else {
      queue.Forget(key);
    }
    queue.Done(key);
  }

  void Work() {
    while (auto key = queue.Get()) Process(*key);
  }
};

Controller::Controller(std::string name, WorkQueue& queue, ReconcileFn reconcile, int workers,
                       ReconcileObserver* observer)
    : impl_(std::make_unique<Impl>(std::move(name), queue, std::move(reconcile),
                                   workers < 1 ? 1 : workers, observer)) {}

Controller::~Controller() { Stop(); }

void Controller::Start() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->started) return;
  impl_->started = true;
  for (int i = 0; i < impl_->workers; ++i) impl_->threads.emplace_back([this] { impl_->Work(); });
}

void Controller::Stop() {
  impl_->queue.ShutDown();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.join();
}

}  // namespace parallelrun::op::controller
