// parallelrun-operator: parses the flags and wires the kube client, informers, work queue,
// reconciler, leader election, metrics and probes together (the only place that names concrete
// classes, STYLE.md); the manager (operator/manager/manager.h) runs their life cycle.
//
// Every replica runs its caches and answers Ready once they synced; only the leader reconciles.
// Shutdown: SIGTERM/SIGINT turn readiness off, stop the controller (in-flight reconciles finish),
// release the Lease (a standby takes over within ~1.5 s), stop the informers and the endpoints,
// and exit 0. Losing the Lease exits 1 at once, so a fresh process (the Deployment's next pod)
// starts from an empty cache.
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>

#include "operator/api/parallelrun_job.h"
#include "operator/cmd/job_metrics.h"
#include "operator/cmd/logging.h"
#include "operator/cmd/options.h"
#include "operator/cmd/runnables.h"
#include "operator/controller/controller.h"
#include "operator/controller/work_queue.h"
#include "operator/informer/informer.h"
#include "operator/kube/config.h"
#include "operator/kube/http_client.h"
#include "operator/manager/http_endpoints.h"
#include "operator/manager/manager.h"
#include "operator/manager/metrics.h"
#include "operator/reconciler/reconciler.h"
#include "operator/status/event_recorder.h"
#include "operator/status/progress_client.h"

namespace parallelrun::op::cmd {
namespace {

// SIGTERM and SIGINT, blocked in every thread and taken with sigtimedwait.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Returns on SIGTERM or SIGINT. Every 20 s meanwhile, hands memory freed by cache updates back to
// the system (glibc keeps it otherwise, and RSS is what admins see).
void WaitForStopSignal() {
  const sigset_t set = StopSignals();
  while (true) {
    const timespec every{.tv_sec = 20, .tv_nsec = 0};
    const int sig = sigtimedwait(&set, nullptr, &every);
    if (sig > 0) {
      spdlog::info("received signal {}, stopping", sig);
      return;
    }
    if (errno == EAGAIN) malloc_trim(0);
  }
}

std::string OwnNamespace(const kube::RestConfig& config) {
  if (const char* ns = std::getenv("POD_NAMESPACE"); ns != nullptr && *ns != '\0') return ns;
  return config.default_namespace.empty() ? "default" : config.default_namespace;
}

rt::StatusOr<kube::RestConfig> LoadCheckedConfig(const Options& o) {
  auto config = kube::LoadConfig(o.kubeconfig);
  if (!config.ok()) {
    return rt::Status(config.status().code(),
                      "cannot load the cluster configuration: " + config.status().message());
  }
  if (auto checked = kube::CheckRestConfig(*config); !checked.ok()) {
    return rt::Status(checked.code(), config->source + ": " + checked.message());
  }
  return config;
}

// The informers: ParallelRunJobs, and the children the operator made (labelled with their job).
struct Informers {
  Informers(kube::Client& client, const std::string& ns)
      : jobs(client, {.resource = kube::resources::kParallelRunJobs,
                      .ns = ns,
                      .transform = api::TrimForCache}),
        pods(client, {.resource = kube::resources::kPods,
                      .ns = ns,
                      .label_selector = api::kJobLabel,
                      .transform = api::TrimPodForCache}),
        config_maps(client, {.resource = kube::resources::kConfigMaps,
                             .ns = ns,
                             .label_selector = api::kJobLabel,
                             .transform = reconciler::TrimMetadataOnly}),
        services(client, {.resource = kube::resources::kServices,
                          .ns = ns,
                          .label_selector = api::kJobLabel,
                          .transform = reconciler::TrimMetadataOnly}) {}
  std::vector<informer::Informer*> Children() { return {&pods, &config_maps, &services}; }

  informer::Informer jobs, pods, config_maps, services;
  manager::InformerRunnable runnables[4] = {{"parallelrunjobs informer", jobs},
                                            {"pods informer", pods},
                                            {"configmaps informer", config_maps},
                                            {"services informer", services}};
};

reconciler::ReconcilerOptions ReconcilerOptionsFor(const Options& o, const kube::RestConfig& config,
                                                   manager::Counter& processed) {
  reconciler::ReconcilerOptions options;
  options.children.default_image = o.default_image;
  options.on_mini_batches_completed = [&processed](int64_t n) {
    processed.Inc(static_cast<double>(n));
  };
  for (const std::string& pair : SplitLabels(o.operator_pod_labels)) {
    const size_t eq = pair.find('=');
    options.children.operator_pod_labels[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  if (!options.children.operator_pod_labels.empty()) {
    options.children.operator_namespace = OwnNamespace(config);
  }
  return options;
}

manager::ManagerOptions ManagerOptionsFor(const Options& o, const kube::RestConfig& config) {
  manager::ManagerOptions options;
  options.on_lost_lease = [] {
    spdlog::error("lost the leader Lease; exiting so a fresh process takes over");
    std::fflush(nullptr);
    std::_Exit(1);
  };
  if (!o.leader_elect) return options;
  manager::LeaderElectionConfig le;
  le.ns = o.leader_election_namespace.empty() ? OwnNamespace(config) : o.leader_election_namespace;
  le.name = o.leader_election_id;
  spdlog::info("competing for the Lease {}/{}", le.ns, le.name);
  options.leader_election = le;
  return options;
}

// The servers every replica runs: the webhook (when enabled), the probes and /metrics.
struct Servers {
  Servers(const Options& o, kube::Client& client, const manager::Manager& mgr,
          const manager::Registry& registry, const reconciler::ChildrenOptions& children)
      : health("--health-probe-bind-address", o.health_probe_bind_address,
               {.healthz = [&mgr] { return mgr.Healthy(); },
                .readyz = [&mgr] { return mgr.Ready(); }}),
        metrics("--metrics-bind-address", o.metrics_bind_address, {.metrics = &registry}) {
    if (o.webhook_bind_address != "0") {
      webhook.emplace(o.webhook_bind_address, o.webhook_cert_dir, client, children);
    }
  }
  void AddTo(manager::Manager& mgr) {
    if (webhook) mgr.Add(manager::Group::kServer, &*webhook);
    mgr.Add(manager::Group::kServer, &health);
    mgr.Add(manager::Group::kServer, &metrics);
  }

  std::optional<WebhookRunnable> webhook;
  EndpointsRunnable health, metrics;
};

int Run(const Options& o) {
  auto config = LoadCheckedConfig(o);
  if (!config.ok()) {
    spdlog::error("{}", config.status().message());
    return 1;
  }
  spdlog::info("parallelrun-operator {} using {} ({}), watching {}", PARALLELRUN_VERSION,
               config->server, config->source, o.ns.empty() ? "all namespaces" : o.ns);
  auto client = kube::MakeHttpClient(*config, {.qps = 50, .burst = 100});

  manager::Registry registry;
  controller::WorkQueue queue;
  Informers informers(*client, o.ns);
  manager::Counter& processed = registry.GetCounter(
      "parallelrun_minibatches_processed_total",
      "Mini-batches that ended (failed ones included), counted as this replica wrote them into "
      "job statuses while it led.");
  auto progress = status::MakeTlsProgressReader();
  status::KubeEventRecorder events(*client, rt::RealClock::Get());
  const reconciler::ReconcilerOptions reconciler_options =
      ReconcilerOptionsFor(o, *config, processed);
  reconciler::JobReconciler job_reconciler(
      *client, {&informers.jobs, &informers.pods, &informers.config_maps, &informers.services},
      *progress, events, rt::RealClock::Get(), reconciler_options);
  MetricsObserver observer(registry);
  controller::Controller controller(
      "parallelrunjob", queue,
      [&job_reconciler](const std::string& key) { return job_reconciler.Reconcile(key); },
      o.max_concurrent_reconciles, &observer);
  JobController job_controller(informers.jobs, informers.Children(), queue, controller,
                               o.max_concurrent_reconciles);
  registry.SetGaugeFunction("parallelrun_workqueue_depth", "Jobs waiting to be reconciled.", {},
                            [&queue] { return static_cast<double>(queue.Len()); });
  RegisterJobMetrics(registry, informers.jobs);

  manager::Manager manager(*client, ManagerOptionsFor(o, *config));
  Servers servers(o, *client, manager, registry, reconciler_options.children);
  servers.AddTo(manager);
  for (auto& cache : informers.runnables) manager.Add(manager::Group::kCache, &cache);
  manager.Add(manager::Group::kLeader, &job_controller);
  if (rt::Status started = manager.Start(); !started.ok()) {
    spdlog::error("{}", started.message());
    return 1;
  }
  WaitForStopSignal();
  // Readiness off, the controller stopped (in-flight reconciles finish), the Lease released, the
  // caches stopped, the servers stopped: in that order, so a successor never reconciles alongside
  // us.
  manager.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace parallelrun::op::cmd

int main(int argc, char** argv) {
  using namespace parallelrun::op::cmd;
  // Few malloc arenas: cpprestsdk's thread pool would otherwise give each thread its own, and the
  // cache's small objects would spread over all of them (SPEC.md §9: <= 30 MiB with 500 jobs).
  mallopt(M_ARENA_MAX, 2);
  auto options = ParseOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!options.ok()) {
    std::fprintf(stderr, "parallelrun-operator: %s\n\n%s", options.status().message().c_str(),
                 Usage().c_str());
    return 1;
  }
  if (options->help) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  if (options->version) {
    std::printf("parallelrun-operator %s\n", PARALLELRUN_VERSION);
    return 0;
  }
  // Before any thread starts (the HTTP client's pool, spdlog): a thread that did not block the
  // stop signals would take SIGTERM's default action and end the process without releasing the
  // Lease (regression: a stopped leader made its successor wait 15 s for the Lease to expire).
  const sigset_t stop_signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  SetUpLogging(*options);
  const int code = Run(*options);
  std::fflush(nullptr);
  // cpprestsdk's thread pool may still finish a request; leave without static destructors (as the
  // runtime's commands do).
  std::_Exit(code);
}
