// parallelrun-operator: wires the kube client, informers, work queue, reconciler, leader election,
// metrics and probes together (the only place that names concrete classes, STYLE.md).
//
// Every replica runs its caches and answers Ready once they synced; only the leader reconciles
// (manager/manager.h). Shutdown: SIGTERM/SIGINT turn readiness off, stop the controller
// (in-flight reconciles finish), release the Lease (a standby takes over within ~1.5 s), stop the
// informers and the endpoints, and exit 0. Losing the Lease exits 1 at once, so a fresh process
// (the Deployment's next pod) starts from an empty cache.
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "operator/api/parallelrun_job.h"
#include "operator/cmd/options.h"
#include "operator/controller/controller.h"
#include "operator/controller/work_queue.h"
#include "operator/informer/informer.h"
#include "operator/kube/config.h"
#include "operator/kube/http_client.h"
#include "operator/manager/http_endpoints.h"
#include "operator/manager/leader_election.h"
#include "operator/manager/manager.h"
#include "operator/manager/metrics.h"
#include "operator/reconciler/reconciler.h"
#include "operator/status/event_recorder.h"
#include "operator/status/progress_client.h"
#include "operator/webhook/server.h"

namespace parallelrun::op::cmd {
namespace {

using nlohmann::json;

// One JSON object per line: {"ts", "level", "logger", "msg"}.
class JsonSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto ts = rt::Iso8601Utc(msg.time);
    json line = {{"ts", ts},
                 {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                       spdlog::level::to_string_view(msg.level).size())},
                 {"logger", std::string(msg.logger_name.data(), msg.logger_name.size())},
                 {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

void SetUpLogging(const Options& o) {
  std::shared_ptr<spdlog::logger> logger;
  if (o.log_format == "json") {
    logger = std::make_shared<spdlog::logger>("operator", std::make_shared<JsonSink>());
  } else {
    logger = std::make_shared<spdlog::logger>("operator",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(o.log_level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string OwnNamespace(const kube::RestConfig& config) {
  if (const char* ns = std::getenv("POD_NAMESPACE"); ns != nullptr && *ns != '\0') return ns;
  return config.default_namespace.empty() ? "default" : config.default_namespace;
}

// Reconcile counts and latency for /metrics.
class MetricsObserver : public controller::ReconcileObserver {
 public:
  explicit MetricsObserver(manager::Registry& registry)
      : success_(registry.GetCounter("parallelrun_reconcile_total",
                                     "Reconciles of ParallelRunJobs by result.",
                                     {{"result", "success"}})),
        requeue_(registry.GetCounter("parallelrun_reconcile_total",
                                     "Reconciles of ParallelRunJobs by result.",
                                     {{"result", "requeue"}})),
        error_(registry.GetCounter("parallelrun_reconcile_total",
                                   "Reconciles of ParallelRunJobs by result.",
                                   {{"result", "error"}})),
        errors_(registry.GetCounter("parallelrun_reconcile_errors_total",
                                    "Reconciles that returned an error (retried with backoff); "
                                    "a write conflict that is simply retried is not one.")),
        latency_(registry.GetHistogram("parallelrun_reconcile_duration_seconds",
                                       "Time spent in one reconcile.")) {}
  void OnReconcile(const std::string& key, const controller::Result& result,
                   std::chrono::duration<double> latency) override {
    latency_.Observe(latency.count());
    // 409 Conflict: the cache was behind; the job is queued again with the newer object.
    if (!result.status.ok() && kube::IsConflict(result.status)) {
      requeue_.Inc();
    } else if (!result.status.ok()) {
      error_.Inc();
      errors_.Inc();
      spdlog::info("reconcile {}: {}", key, result.status.ToString());
    } else if (result.requeue_after) {
      requeue_.Inc();
    } else {
      success_.Inc();
    }
  }

 private:
  manager::Counter& success_;
  manager::Counter& requeue_;
  manager::Counter& error_;
  manager::Counter& errors_;
  manager::Histogram& latency_;
};

// Per-job gauges from the job cache, labelled namespace and name: they vanish with the job.
void RegisterJobMetrics(manager::Registry& registry, informer::Informer& jobs) {
  for (const char* phase : {"Pending", "Running", "Succeeded", "Failed", "Suspended"}) {
    registry.SetGaugeFunction(
        "parallelrun_jobs",
        "ParallelRunJobs in this replica's cache by status.phase (a job with no phase yet is "
        "Pending).",
        {{"phase", phase}}, [&jobs, phase] {
          double n = 0;
          for (const auto& job : jobs.List()) {
            auto s = job->find("status");
            std::string p = s != job->end() && s->is_object() ? s->value("phase", "") : "";
            n += (p.empty() ? std::string("Pending") : p) == phase;
          }
          return n;
        });
  }
  // status.<group>.<field> of every cached job, as {namespace, name, state=<field>}.
  auto per_job = [&jobs](const char* group, std::vector<const char*> fields) {
    return [&jobs, group, fields] {
      manager::Registry::Series out;
      for (const auto& job : jobs.List()) {
        const json meta = job->value("metadata", json::object());
        auto s = job->find("status");
        if (s == job->end() || !s->is_object()) continue;
        auto counts = s->find(group);
        if (counts == s->end() || !counts->is_object()) continue;
        for (const char* field : fields) {
          out.push_back({{{"namespace", meta.value("namespace", "")},
                          {"name", meta.value("name", "")},
                          {"state", field}},
                         counts->value(field, 0.0)});
        }
      }
      return out;
    };
  };
  registry.SetGaugeFamilyFunction(
      "parallelrun_job_minibatches",
      "Mini-batches of each job by state (status.miniBatches: total, completed, failed, running, "
      "retried).",
      per_job("miniBatches", {"total", "completed", "failed", "running", "retried"}));
  registry.SetGaugeFamilyFunction(
      "parallelrun_job_items",
      "Items of each job by state (status.items: total, succeeded, failed).",
      per_job("items", {"total", "succeeded", "failed"}));
}

std::mutex g_mu;
std::condition_variable g_cv;

// SIGTERM and SIGINT, blocked in every thread and taken with sigwait.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

int Run(const Options& o) {
  const sigset_t stop_signals = StopSignals();
  auto config = kube::LoadConfig(o.kubeconfig);
  if (!config.ok()) {
    spdlog::error("cannot load the cluster configuration: {}", config.status().message());
    return 1;
  }
  if (auto checked = kube::CheckRestConfig(*config); !checked.ok()) {
    spdlog::error("{}: {}", config->source, checked.message());
    return 1;
  }
  spdlog::info("parallelrun-operator {} using {} ({}), watching {}", PARALLELRUN_VERSION,
               config->server, config->source, o.ns.empty() ? "all namespaces" : o.ns);
  auto client = kube::MakeHttpClient(*config, {.qps = 50, .burst = 100});

  manager::Registry registry;
  controller::WorkQueue queue;
  const std::string child_selector = api::kJobLabel;
  informer::Informer jobs(
      *client,
      {.resource = kube::resources::kParallelRunJobs, .ns = o.ns, .transform = api::TrimForCache});
  informer::Informer pods(*client, {.resource = kube::resources::kPods,
                                    .ns = o.ns,
                                    .label_selector = child_selector,
                                    .transform = api::TrimPodForCache});
  informer::Informer config_maps(*client, {.resource = kube::resources::kConfigMaps,
                                           .ns = o.ns,
                                           .label_selector = child_selector,
                                           .transform = reconciler::TrimMetadataOnly});
  informer::Informer services(*client, {.resource = kube::resources::kServices,
                                        .ns = o.ns,
                                        .label_selector = child_selector,
                                        .transform = reconciler::TrimMetadataOnly});
  // Only the leader queues work: a standby keeps its caches warm but its queue empty (the depth
  // metric stays honest); the leader queues every cached job when it takes over.
  std::atomic<bool> leading{false};
  jobs.AddHandler([&queue, &leading](const std::string&, const informer::ObjectPtr&,
                                     const informer::ObjectPtr& obj) {
    if (leading) queue.Add(informer::KeyOf(*obj));
  });
  auto enqueue_owner = [&queue, &leading](const std::string&, const informer::ObjectPtr&,
                                          const informer::ObjectPtr& obj) {
    if (!leading) return;
    const json& meta = (*obj)["metadata"];
    auto labels = meta.find("labels");
    if (labels == meta.end() || !labels->contains(api::kJobLabel)) return;
    queue.Add(meta.value("namespace", "") + "/" + (*labels)[api::kJobLabel].get<std::string>());
  };
  for (auto* child : {&pods, &config_maps, &services}) child->AddHandler(enqueue_owner);

  // The admission webhook: every replica serves it, leader or not; Ready waits until it answers.
  std::atomic<bool> webhook_ready{o.webhook_bind_address == "0"};
  std::unique_ptr<rt::protocol::HttpServer> webhook_server;
  std::string webhook_host;  // where the readiness probe dials it
  if (!webhook_ready) {
    auto served = webhook::Serve({o.webhook_bind_address, o.webhook_cert_dir},
                                 webhook::KubeRightCheckers(*client));
    if (!served.ok()) {
      spdlog::error("--webhook-bind-address {}: {}", o.webhook_bind_address,
                    served.status().message());
      return 1;
    }
    webhook_server = std::move(*served);
    if (auto bind = manager::ParseBindAddress(o.webhook_bind_address); bind.ok() && *bind) {
      webhook_host = (*bind)->host;
    }
    spdlog::info("admission webhook on port {}", webhook_server->port());
  }
  // The manager is made below; the probes see it once it exists (not ready until then).
  std::atomic<manager::Manager*> mgr{nullptr};
  auto health = manager::ServeEndpoints(
      o.health_probe_bind_address, {.healthz =
                                        [&mgr] {
                                          manager::Manager* m = mgr.load();
                                          return m == nullptr || m->Healthy();
                                        },
                                    .readyz =
                                        [&mgr, &webhook_ready] {
                                          manager::Manager* m = mgr.load();
                                          return m != nullptr && m->Ready() && webhook_ready.load();
                                        }});
  if (!health.ok()) {
    spdlog::error("--health-probe-bind-address {}: {}", o.health_probe_bind_address,
                  health.status().message());
    return 1;
  }
  auto metrics = manager::ServeEndpoints(o.metrics_bind_address, {.metrics = &registry});
  if (!metrics.ok()) {
    spdlog::error("--metrics-bind-address {}: {}", o.metrics_bind_address,
                  metrics.status().message());
    return 1;
  }

  registry.SetGaugeFunction("parallelrun_workqueue_depth", "Jobs waiting to be reconciled.", {},
                            [&queue] { return static_cast<double>(queue.Len()); });
  RegisterJobMetrics(registry, jobs);
  manager::Counter& processed = registry.GetCounter(
      "parallelrun_minibatches_processed_total",
      "Mini-batches that ended (failed ones included), counted as this replica wrote them into "
      "job statuses while it led.");

  auto progress = status::MakeTlsProgressReader();
  status::KubeEventRecorder events(*client, rt::RealClock::Get());
  reconciler::ReconcilerOptions reconciler_options;
  reconciler_options.children.default_image = o.default_image;
  reconciler_options.on_mini_batches_completed = [&processed](int64_t n) {
    processed.Inc(static_cast<double>(n));
  };
  for (const std::string& pair : SplitLabels(o.operator_pod_labels)) {
    const size_t eq = pair.find('=');
    reconciler_options.children.operator_pod_labels[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  if (!reconciler_options.children.operator_pod_labels.empty()) {
    reconciler_options.children.operator_namespace = OwnNamespace(*config);
  }
  reconciler::JobReconciler job_reconciler(*client, {&jobs, &pods, &config_maps, &services},
                                           *progress, events, rt::RealClock::Get(),
                                           reconciler_options);
  MetricsObserver observer(registry);
  controller::Controller controller(
      "parallelrunjob", queue,
      [&job_reconciler](const std::string& key) { return job_reconciler.Reconcile(key); },
      o.max_concurrent_reconciles, &observer);

  manager::ManagerOptions manager_options;
  if (o.leader_elect) {
    manager::LeaderElectionConfig le;
    le.ns =
        o.leader_election_namespace.empty() ? OwnNamespace(*config) : o.leader_election_namespace;
    le.name = o.leader_election_id;
    spdlog::info("competing for the Lease {}/{}", le.ns, le.name);
    manager_options.leader_election = le;
  }
  manager::Manager manager(
      *client, {&jobs, &pods, &config_maps, &services}, manager_options,
      {.start_leading =
           [&] {
             leading = true;
             for (const auto& job : jobs.List()) queue.Add(informer::KeyOf(*job));
             spdlog::info("leading with synced caches ({} jobs); starting {} workers", jobs.Size(),
                          o.max_concurrent_reconciles);
             controller.Start();
           },
       .stop_leading =
           [&] {
             leading = false;
             controller.Stop();
           },
       .lost_lease =
           [] {
             spdlog::error("lost the leader Lease; exiting so a fresh process takes over");
             std::fflush(nullptr);
             std::_Exit(1);
           }});
  manager.Start();
  mgr = &manager;

  // Wait for a stop signal; hand memory freed by cache updates back to the system now and then
  // (glibc keeps it otherwise, and RSS is what admins see).
  std::atomic<bool> stopping{false};
  std::thread webhook_prober([&] {
    while (webhook_server && !webhook_ready && !stopping) {
      const rt::Status probed = webhook::Probe(webhook_host, webhook_server->port());
      if (probed.ok()) {
        webhook_ready = true;
        spdlog::info("admission webhook answers");
      } else {
        spdlog::info("waiting for the admission webhook: {}", probed.message());
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
  });
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received signal {}, stopping", sig);
    std::lock_guard<std::mutex> lock(g_mu);
    stopping = true;
    g_cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(g_mu);
    while (!g_cv.wait_for(lock, std::chrono::seconds(20), [&] { return stopping.load(); })) {
      malloc_trim(0);
    }
  }
  signal_waiter.join();
  webhook_prober.join();
  // Readiness off, the controller stopped (in-flight reconciles finish), the Lease released, the
  // caches stopped: in that order, so a successor never reconciles alongside us.
  manager.Stop();
  mgr = nullptr;
  if (*health) (*health)->Stop();
  if (*metrics) (*metrics)->Stop();
  if (webhook_server) webhook_server->Stop();
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
