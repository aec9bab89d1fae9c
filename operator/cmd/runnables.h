// The operator's runnables, as the manager (operator/manager/manager.h) starts and stops them:
// the ParallelRunJob controller (leader only), the admission webhook and the HTTP endpoints
// (every replica).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "operator/controller/controller.h"
#include "operator/controller/work_queue.h"
#include "operator/informer/informer.h"
#include "operator/manager/http_endpoints.h"
#include "operator/manager/manager.h"
#include "operator/reconciler/children.h"
#include "runtime/base/mutex.h"
#include "runtime/protocol/http_server.h"

namespace parallelrun::op::cmd {

// The controller as a kLeader runnable. Only the leader queues work: a standby keeps its caches
// warm but its queue empty (the depth metric stays honest); Start() queues every cached job, then
// starts the workers. Jobs queue their own key, children ("pods", ConfigMaps, Services) the key of
// the job named by their api::kJobLabel label.
class JobController : public manager::Runnable {
 public:
  // Adds the informers' handlers: before they start.
  JobController(informer::Informer& jobs, const std::vector<informer::Informer*>& children,
                controller::WorkQueue& queue, controller::Controller& controller, int workers);
  std::string Name() const override { return "parallelrunjob controller"; }
  rt::Status Start() override;
  void Stop() override;  // returns when no reconcile runs

 private:
  informer::Informer& jobs_;
  controller::WorkQueue& queue_;
  controller::Controller& controller_;
  int workers_;
  std::atomic<bool> leading_{false};
};

// /metrics or the probes as a kServer runnable, on a bind address ("0": none).
class EndpointsRunnable : public manager::Runnable {
 public:
  EndpointsRunnable(std::string flag, std::string address, manager::EndpointHandlers handlers)
      : flag_(std::move(flag)), address_(std::move(address)), handlers_(std::move(handlers)) {}
  std::string Name() const override { return flag_ + " " + address_; }
  rt::Status Start() override;
  void Stop() override;

 private:
  std::string flag_, address_;
  manager::EndpointHandlers handlers_;
  std::unique_ptr<manager::EndpointServer> server_;
};

// The admission webhook as a kServer runnable: Ready() once it answers a TLS probe (tried every
// 500 ms from Start() on).
class WebhookRunnable : public manager::Runnable {
 public:
  // children: the operator's pod settings, for the pods the webhook has the API server judge.
  WebhookRunnable(std::string bind_address, std::string cert_dir, kube::Client& client,
                  reconciler::ChildrenOptions children)
      : bind_address_(std::move(bind_address)),
        cert_dir_(std::move(cert_dir)),
        client_(client),
        children_(std::move(children)) {}
  ~WebhookRunnable() override { Stop(); }
  std::string Name() const override { return "--webhook-bind-address " + bind_address_; }
  rt::Status Start() override;
  void Stop() override;
  bool Ready() const override { return ready_; }

 private:
  void ProbeUntilReady(std::string host, int port);

  std::string bind_address_, cert_dir_;
  kube::Client& client_;
  reconciler::ChildrenOptions children_;
  std::unique_ptr<rt::protocol::HttpServer> server_;
  std::atomic<bool> ready_{false};
  rt::Mutex mu_;
  rt::CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread prober_;
};

}  // namespace parallelrun::op::cmd
