#include "operator/cmd/runnables.h"

#include <spdlog/spdlog.h>

#include "operator/api/parallelrun_job.h"
#include "operator/webhook/server.h"

namespace parallelrun::op::cmd {

using nlohmann::json;

JobController::JobController(informer::Informer& jobs,
                             const std::vector<informer::Informer*>& children,
                             controller::WorkQueue& queue, controller::Controller& controller,
                             int workers)
    : jobs_(jobs), queue_(queue), controller_(controller), workers_(workers) {
  jobs.AddHandler(
      [this](const std::string&, const informer::ObjectPtr&, const informer::ObjectPtr& obj) {
        if (leading_) queue_.Add(informer::KeyOf(*obj));
      });
  auto enqueue_owner = [this](const std::string&, const informer::ObjectPtr&,
                              const informer::ObjectPtr& obj) {
    if (!leading_) return;
    const json& meta = (*obj)["metadata"];
    auto labels = meta.find("labels");
    if (labels == meta.end() || !labels->contains(api::kJobLabel)) return;
    queue_.Add(meta.value("namespace", "") + "/" + (*labels)[api::kJobLabel].get<std::string>());
  };
  for (informer::Informer* child : children) child->AddHandler(enqueue_owner);
}

rt::Status JobController::Start() {
  leading_ = true;
  for (const auto& job : jobs_.List()) queue_.Add(informer::KeyOf(*job));
  spdlog::info("leading with synced caches ({} jobs); starting {} workers", jobs_.Size(), workers_);
  controller_.Start();
  return rt::Status::Ok();
}

void JobController::Stop() {
  leading_ = false;
  controller_.Stop();
}

rt::Status EndpointsRunnable::Start() {
  auto served = manager::ServeEndpoints(address_, handlers_);
  if (!served.ok()) return served.status();
  server_ = std::move(*served);
  return rt::Status::Ok();
}

void EndpointsRunnable::Stop() {
  if (server_) server_->Stop();
}

rt::Status WebhookRunnable::Start() {
  auto served = webhook::Serve({bind_address_, cert_dir_}, webhook::KubeRightCheckers(client_),
                               {webhook::KubePodJudge(client_), children_});
  if (!served.ok()) return served.status();
  server_ = std::move(*served);
  std::string host;  // where the readiness probe dials it
  if (auto bind = manager::ParseBindAddress(bind_address_); bind.ok() && *bind) {
    host = (*bind)->host;
  }
  spdlog::info("admission webhook on port {}", server_->port());
  prober_ = std::thread([this, host, port = server_->port()] { ProbeUntilReady(host, port); });
  return rt::Status::Ok();
}

void WebhookRunnable::ProbeUntilReady(std::string host, int port) {
  while (true) {
    const rt::Status probed = webhook::Probe(host, port);
    if (probed.ok()) {
      ready_ = true;
      spdlog::info("admission webhook answers");
      return;
    }
    spdlog::info("waiting for the admission webhook: {}", probed.message());
    rt::MutexLock lock(mu_);
    if (cv_.WaitFor(mu_, std::chrono::milliseconds(500),
                    [this]() REQUIRES(mu_) { return stopping_; })) {
      return;
    }
  }
}

void WebhookRunnable::Stop() {
  {
    rt::MutexLock lock(mu_);
    stopping_ = true;
    cv_.NotifyAll();
  }
  if (prober_.joinable()) prober_.join();
  ready_ = false;
  if (server_) server_->Stop();
}

}  // namespace parallelrun::op::cmd
