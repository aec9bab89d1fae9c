// coordinator_scale: how the coordinator copes with a large job (SPEC.md §9: plans 1,000,000
// files; serves >= 20,000 mini-batch completions/s on loopback with batched leases; its memory
// grows by < 200 bytes per mini-batch), next to the original's published figures (~5 minutes to
// list 1M files, ~400 mini-batches/s scheduling).
//
//   coordinator_scale [--files N] [--agents N] [--batch N] [--input-dir DIR] [--output-dir DIR]
//   coordinator_scale --many-agents [--agents 1000] [--workers 8] [--processes 4] [--work-ms 0]
//                     [--separate-calls] [--files 200000] ...
//
// 1. Creates N empty files (default 1,000,000; 1,000 per subfolder) in a fresh folder under
//    --input-dir (default /dev/shm when it exists, else $TMPDIR or /tmp).
// 2. Starts a real Coordinator (miniBatchSize 1, so one mini-batch per file; summaryOnly, so the
//    figures are about scheduling, not output assembly) with its output folder (plan, journal,
//    logs) under --output-dir (default $TMPDIR or /tmp), and times the plan: the walk of the
//    input, the durable plan file and the coordinator's table. Process RSS before and after
//    gives the memory per mini-batch.
// 3. Serves it over the real HTTP adapters on 127.0.0.1 and drives it with --agents simulated
//    agents (default 4; threads with their own HTTP client), each leasing --batch mini-batches
//    (default 100) per request and reporting them RUN_DONE in one results request, as agents do.
//    Completions per second are counted from the first lease to the last accepted result (every
//    result request waits for the journal's fdatasync, as in production).
//    --many-agents instead simulates --agents agents (default 1,000) with --workers workers each
//    (default 8) in --processes child processes (default 4), each agent over its own keep-alive
//    connection, leasing up to --workers mini-batches per call and "running" them for --work-ms,
//    then reporting them in a request that asks for the next ones (--separate-calls: a report,
//    then a lease call) (many_agents.h); it prints completions/s, p50/p99 lease latency, and the
//    coordinator process's peak RSS, threads and open connections (sampled from /proc; the agents
//    are other processes). With --work-ms 0 every agent always has a call in flight, so the lease
//    latency is the queue of 1,000 agents (Little's law: agents / calls per second), not the
//    service time; the latency target is for agents that work between calls (e.g. --work-ms 300: 8
//    workers x 1,000 agents then ask for at most 26,667 mini-batches/s).
// Prints the figures and their ratios, removes what it created, and exits 0 unless something
// could not be done (1) or the job did not succeed with every mini-batch completed (2).
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench/coordinator_scale/many_agents.h"
#include "runtime/base/time_util.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/protocol/coordinator_client.h"
#include "runtime/protocol/coordinator_service.h"
#include "runtime/protocol/http_server.h"

// LeakSanitizer (asan preset): server threads keep OpenSSL per-thread state until exit.
extern "C" const char* __lsan_default_suppressions() { return "leak:libcrypto.so\n"; }

namespace {

namespace fs = std::filesystem;
using namespace parallelrun::rt;

// The original's published figures and SPEC.md §9's targets.
constexpr double kOriginalMiniBatchesPerSecond = 400;
constexpr double kOriginalListSecondsFor1M = 300;  // ~5 minutes to list 1,000,000 files
constexpr double kTargetCompletionsPerSecond = 20000;
constexpr double kTargetBytesPerMiniBatch = 200;
constexpr int kFilesPerFolder = 1000;

struct Flags {
  int64_t files = 1000000;
  int agents = 4;
  int batch = 100;
  bool many = false;            // --many-agents
  bool separate_calls = false;  // --separate-calls
  int workers = 8;
  int processes = 4;
  int work_ms = 0;
  int server_threads = 0;  // 0: as `parallelrun coordinator` for --agents nodes
  std::string input_dir;
  std::string output_dir;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "coordinator_scale: %s\n", message.c_str());
  std::fflush(nullptr);
  std::_Exit(1);
}

std::string TempRoot() {
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  f.input_dir = fs::is_directory("/dev/shm") ? "/dev/shm" : TempRoot();
  f.output_dir = TempRoot();
  bool seen_agents = false, seen_files = false;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    if (name == "--many-agents") {
      f.many = true;
      continue;
    }
    if (name == "--separate-calls") {
      f.separate_calls = true;
      continue;
    }
    if (i + 1 >= argc) Die("flag " + name + " needs a value");
    std::string value = argv[++i];
    char* end = nullptr;
    long long n = std::strtoll(value.c_str(), &end, 10);
    bool numeric = end != value.c_str() && *end == '\0' && n > 0;
    seen_agents = seen_agents || name == "--agents";
    seen_files = seen_files || name == "--files";
    if (name == "--files" && numeric) {
      f.files = n;
    } else if (name == "--agents" && numeric && n <= 10000) {
      f.agents = static_cast<int>(n);
    } else if (name == "--batch" && numeric && n <= 1000) {
      f.batch = static_cast<int>(n);
    } else if (name == "--workers" && numeric && n <= 1000) {
      f.workers = static_cast<int>(n);
    } else if (name == "--processes" && numeric && n <= 64) {
      f.processes = static_cast<int>(n);
    } else if (name == "--work-ms" && (numeric || value == "0") && n <= 60000) {
      f.work_ms = static_cast<int>(n);
    } else if (name == "--server-threads" && numeric && n <= 256) {
      f.server_threads = static_cast<int>(n);
    } else if (name == "--input-dir") {
      f.input_dir = value;
    } else if (name == "--output-dir") {
      f.output_dir = value;
    } else {
      Die("bad flag " + name + " " + value +
          " (flags: --files N, --agents 1..10000, --batch 1..1000, --input-dir DIR, "
          "--output-dir DIR; --many-agents, --workers 1..1000, --processes 1..64, "
          "--work-ms 0..60000, --separate-calls, --server-threads 1..256)");
    }
  }
  if (f.many && !seen_agents) f.agents = 1000;
  if (f.many && !seen_files) f.files = 200000;
  if (!f.many && f.agents > 256) Die("--agents: at most 256 threads without --many-agents");
  return f;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Resident set size of this process, in bytes (/proc/self/statm).
int64_t RssBytes() {
  long long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lld %lld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * ::sysconf(_SC_PAGESIZE);
}

std::string FsType(const std::string& path) {
  struct statfs s {};
  if (::statfs(path.c_str(), &s) != 0) return "?";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0x01021994:
      return "tmpfs";
    case 0xEF53:
      return "ext4";
    case 0x9123683E:
      return "btrfs";
    case 0x58465342:
      return "xfs";
    case 0x794c7630:
      return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "fs 0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

std::string MakeTempDir(const std::string& parent, const char* prefix) {
  std::string tmpl = parent + "/" + prefix + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Die("cannot create a folder under " + parent);
  return tmpl;
}

// N empty files, kFilesPerFolder per subfolder.
void CreateFiles(const std::string& root, int64_t n) {
  char path[512];
  for (int64_t i = 0; i < n; ++i) {
    if (i % kFilesPerFolder == 0) {
      std::snprintf(path, sizeof path, "%s/d%05lld", root.c_str(),
                    static_cast<long long>(i / kFilesPerFolder));
      if (::mkdir(path, 0755) != 0) Die(std::string("mkdir ") + path + ": " + std::strerror(errno));
    }
    std::snprintf(path, sizeof path, "%s/d%05lld/f%07lld", root.c_str(),
                  static_cast<long long>(i / kFilesPerFolder), static_cast<long long>(i));
    FILE* f = std::fopen(path, "w");
    if (f == nullptr) Die(std::string("create ") + path + ": " + std::strerror(errno));
    std::fclose(f);
  }
}

JobSpec BenchSpec(int nodes) {
  JobSpec spec;
  spec.name = "coordinator-scale";
  spec.entry_script = "score.py";
  Input input;
  input.name = "files";
  input.type = InputType::kFile;
  input.source.path = "files";
  spec.inputs = {input};
  spec.output.path = "out";
  spec.mini_batch_size_text = "1";
  spec.mini_batch_size = 1;
  spec.output_action = OutputAction::kSummaryOnly;
  spec.node_count = nodes;
  return spec;
}

struct DriveResult {
  int64_t accepted = 0;
  int64_t lease_calls = 0;
  int64_t report_calls = 0;
  double seconds = 0;
  double cpu_seconds = 0;
  std::string error;
};

// One simulated agent: lease a batch, report it done, until the coordinator says done.
void Agent(const std::string& url, int index, int batch, std::atomic<int64_t>* accepted,
           std::atomic<int64_t>* lease_calls, std::atomic<int64_t>* report_calls,
           std::string* error) {
  protocol::HttpClientOptions o;
  o.base_url = url;
  o.token = "bench-token";
  auto client = protocol::MakeHttpCoordinatorClient(o);
  const std::string node =
      "10.0." + std::to_string(index / 250) + "." + std::to_string(index % 250 + 1);
  auto reg = client->Register(protocol::RegisterRequest{node, 1000 + index, {}});
  if (!reg.ok()) {
    *error = "register: " + reg.status().ToString();
    return;
  }
  protocol::LeaseRequest lr;
  lr.node = node;
  lr.max = batch;
  protocol::ResultsRequest rr;
  rr.node = node;
  while (true) {
    auto leases = client->Lease(lr);
    ++*lease_calls;
    if (!leases.ok()) {
      *error = "lease: " + leases.status().ToString();
      return;
    }
    if (leases->done || leases->stop) return;
    if (leases->leases.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(leases->retry_after_ms));
      continue;
    }
    rr.results.clear();
    for (const auto& l : leases->leases) {
      protocol::AttemptResult r;
      r.mini_batch_id = l.mini_batch_id;
      r.attempt = l.attempt;
      r.process = "process000";
      r.pid = 1000 + index;
      r.status = "RUN_DONE";
      r.total = l.items;
      r.succeeded = l.items;
      r.start_utc = "2026-01-01T00:00:00.000Z";
      rr.results.push_back(std::move(r));
    }
    auto resp = client->Report(rr);
    ++*report_calls;
    if (!resp.ok()) {
      *error = "report: " + resp.status().ToString();
      return;
    }
    *accepted += static_cast<int64_t>(resp->accepted.size());
  }
}

DriveResult Drive(const std::string& url, const Flags& flags) {
  std::atomic<int64_t> accepted{0}, lease_calls{0}, report_calls{0};
  std::vector<std::string> errors(static_cast<size_t>(flags.agents));
  std::vector<std::thread> threads;
  const double t0 = Now();
  const double cpu0 = bench::CpuSeconds(RUSAGE_SELF);
  for (int a = 0; a < flags.agents; ++a) {
    threads.emplace_back(Agent, url, a, flags.batch, &accepted, &lease_calls, &report_calls,
                         &errors[static_cast<size_t>(a)]);
  }
  for (auto& t : threads) t.join();
  DriveResult r;
  r.seconds = Now() - t0;
  r.cpu_seconds = bench::CpuSeconds(RUSAGE_SELF) - cpu0;
  r.accepted = accepted.load();
  r.lease_calls = lease_calls.load();
  r.report_calls = report_calls.load();
  for (const auto& e : errors) {
    if (!e.empty() && r.error.empty()) r.error = e;
  }
  return r;
}

std::string SelfExe() {
  std::error_code ec;
  std::string exe = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) Die("cannot read /proc/self/exe: " + ec.message());
  return exe;
}

// --many-agents: drives the coordinator from child processes and prints what they saw.
DriveResult DriveMany(const std::string& url, const Flags& flags, const std::string& scratch) {
  bench::ManyAgentsResult m =
      bench::DriveManyAgents(SelfExe(), url, "bench-token", flags.agents, flags.workers,
                             flags.processes, flags.work_ms, !flags.separate_calls, scratch);
  std::printf(
      "\n%d agents x %d workers in %d processes, %d ms of simulated work per mini-batch, %s\n",
      flags.agents, flags.workers, flags.processes, flags.work_ms,
      flags.separate_calls ? "a report then a lease call" : "each report asks for the next leases");
  std::printf(
      "  lease latency over %zu calls: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms"
      " (target p99 <= 50 ms)\n",
      m.lease_ms.size(), bench::Quantile(m.lease_ms, 0.5), bench::Quantile(m.lease_ms, 0.9),
      bench::Quantile(m.lease_ms, 0.99), bench::Quantile(m.lease_ms, 1.0));
  std::printf(
      "  coordinator process (/proc/self): peak RSS %.1f MiB, peak %d open connections, "
      "peak %d threads\n",
      static_cast<double>(m.max_rss_bytes) / 1048576.0, m.max_connections, m.max_threads);
  std::printf(
      "  CPU: coordinator %.2f s (%.1f us per completion), agent processes %.2f s; "
      "%lld calls failed and were retried\n",
      m.coordinator_cpu_seconds,
      m.accepted > 0 ? m.coordinator_cpu_seconds * 1e6 / static_cast<double>(m.accepted) : 0.0,
      m.agents_cpu_seconds, static_cast<long long>(m.failed_calls));
  DriveResult r;
  r.accepted = m.accepted;
  r.lease_calls = m.lease_calls;
  r.report_calls = m.report_calls;
  r.seconds = m.seconds;
  r.cpu_seconds = m.coordinator_cpu_seconds + m.agents_cpu_seconds;
  r.error = m.error;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--agent-process") {
    return bench::RunAgentProcess(bench::ParseAgentProcessFlags(argc - 2, argv + 2));
  }
  const Flags flags = ParseFlags(argc, argv);
  const std::string in_root = MakeTempDir(flags.input_dir, "coordinator_scale_in_");
  const std::string out_root = MakeTempDir(flags.output_dir, "coordinator_scale_out_");
  const std::string files_dir = in_root + "/files";
  const std::string out_dir = out_root + "/out";
  if (::mkdir(files_dir.c_str(), 0755) != 0) Die("mkdir " + files_dir);

  std::printf("coordinator_scale: %lld files, %d agents, %d mini-batches per lease and report\n",
              static_cast<long long>(flags.files), flags.agents,
              flags.many ? flags.workers : flags.batch);
  std::printf("  input  %s (%s)\n  output %s (%s): plan, journal (fdatasync per report), logs\n",
              files_dir.c_str(), FsType(in_root).c_str(), out_dir.c_str(),
              FsType(out_root).c_str());
  std::fflush(stdout);

  double t = Now();
  CreateFiles(files_dir, flags.files);
  std::printf("  created %lld empty files in %.1f s (setup, not measured)\n",
              static_cast<long long>(flags.files), Now() - t);
  std::fflush(stdout);

  CoordinatorOptions options;
  options.spec = BenchSpec(flags.agents);
  options.paths.code_dir = in_root;
  options.paths.inputs = {{"files", files_dir}};
  options.paths.output_dir = out_dir;
  options.desired_nodes = flags.agents;
  options.owner_id = "coordinator-scale";

  // Planning: from Create() (which starts the planner) until the plan is complete and durable.
  const int64_t rss_before = RssBytes();
  const double plan_start = Now();
  const double plan_cpu_start = bench::CpuSeconds(RUSAGE_SELF);
  auto created = Coordinator::Create(options);
  if (!created.ok()) Die(created.status().ToString());
  std::shared_ptr<Coordinator> coordinator = std::move(*created);
  double first_planned = -1;
  protocol::Progress progress;
  while (true) {
    progress = coordinator->GetProgress();
    if (first_planned < 0 && progress.miniBatches.total > 0) first_planned = Now() - plan_start;
    if (progress.planned || progress.exitCode >= 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double plan_s = Now() - plan_start;
  const double plan_cpu_s = bench::CpuSeconds(RUSAGE_SELF) - plan_cpu_start;
  const int64_t rss_planned = RssBytes();
  const int64_t mini_batches = progress.miniBatches.total;
  if (mini_batches != flags.files) {
    Die("planned " + std::to_string(mini_batches) + " mini-batches for " +
        std::to_string(flags.files) + " files: " + progress.reason + " " + progress.message);
  }

  protocol::HttpServerOptions server_options;
  server_options.host = "127.0.0.1";
  server_options.token = "bench-token";
  server_options.threads = flags.server_threads > 0
                               ? flags.server_threads
                               : protocol::CoordinatorServerThreads(flags.agents);
  auto server =
      protocol::StartHttpServer(server_options, [coordinator](const protocol::HttpRequest& req) {
        return protocol::HandleCoordinatorRequest(*coordinator, req);
      });
  if (!server.ok()) Die(server.status().ToString());
  DriveResult drive =
      flags.many ? DriveMany((*server)->url(), flags, out_root) : Drive((*server)->url(), flags);
  if (!drive.error.empty()) Die(drive.error);
  const int code = coordinator->Wait();
  const int64_t rss_done = RssBytes();
  progress = coordinator->GetProgress();
  (*server)->Stop();

  const double per_mb_planned =
      static_cast<double>(rss_planned - rss_before) / static_cast<double>(mini_batches);
  const double per_mb_done =
      static_cast<double>(rss_done - rss_before) / static_cast<double>(mini_batches);
  const double rate = static_cast<double>(drive.accepted) / drive.seconds;
  const double list_s_1m = plan_s * 1e6 / static_cast<double>(flags.files);

  std::printf("\nplanning\n");
  std::printf("  %lld mini-batches planned in %.2f s wall, %.2f s CPU (%.0f files/s)\n",
              static_cast<long long>(mini_batches), plan_s, plan_cpu_s,
              static_cast<double>(mini_batches) / plan_s);
  std::printf("  first mini-batch ready to lease after %.3f s\n", first_planned);
  std::printf("  scaled to 1,000,000 files: %.1f s; original ~%.0f s to list them: %.1fx faster\n",
              list_s_1m, kOriginalListSecondsFor1M, kOriginalListSecondsFor1M / list_s_1m);
  std::printf("\nmemory (process RSS)\n");
  std::printf(
      "  before planning %.1f MiB, after planning %.1f MiB, after all completions %.1f MiB\n",
      static_cast<double>(rss_before) / 1048576.0, static_cast<double>(rss_planned) / 1048576.0,
      static_cast<double>(rss_done) / 1048576.0);
  std::printf("  growth per mini-batch: %.1f bytes after planning, %.1f bytes after completions\n",
              per_mb_planned, per_mb_done);
  std::printf(
      "  SPEC.md target < %.0f bytes per mini-batch: %.2fx of the budget used (after "
      "completions)\n",
      kTargetBytesPerMiniBatch, per_mb_done / kTargetBytesPerMiniBatch);
  std::printf("\nscheduling over HTTP on loopback\n");
  std::printf(
      "  %lld completions in %.2f s wall: %.0f completions/s; %.2f s CPU for coordinator "
      "and agents together (%.0f per CPU second)\n",
      static_cast<long long>(drive.accepted), drive.seconds, rate, drive.cpu_seconds,
      static_cast<double>(drive.accepted) / drive.cpu_seconds);
  std::printf("  %lld lease + %lld report requests (%.1f mini-batches per request)\n",
              static_cast<long long>(drive.lease_calls), static_cast<long long>(drive.report_calls),
              2.0 * static_cast<double>(drive.accepted) /
                  static_cast<double>(drive.lease_calls + drive.report_calls));
  std::printf("  original ~%.0f mini-batches/s: %.1fx\n", kOriginalMiniBatchesPerSecond,
              rate / kOriginalMiniBatchesPerSecond);
  std::printf("  SPEC.md target >= %.0f completions/s: %.2fx of the target\n",
              kTargetCompletionsPerSecond, rate / kTargetCompletionsPerSecond);
  std::printf("\njob: exit code %d, %s, %lld of %lld mini-batches completed\n", code,
              progress.phase.c_str(), static_cast<long long>(progress.miniBatches.completed),
              static_cast<long long>(progress.miniBatches.total));
  std::fflush(stdout);

  t = Now();
  std::error_code ec;
  fs::remove_all(in_root, ec);
  fs::remove_all(out_root, ec);
  std::printf("removed the files in %.1f s\n", Now() - t);
  const bool ok =
      code == 0 && drive.accepted == mini_batches && progress.miniBatches.completed == mini_batches;
  // Leave without static destructors: a server thread may still be finishing a reply.
  std::fflush(nullptr);
  std::_Exit(ok ? 0 : 2);
}
