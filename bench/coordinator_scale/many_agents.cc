#include "bench/coordinator_scale/many_agents.h"

#include <dirent.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "runtime/protocol/coordinator_client.h"

extern char** environ;

namespace parallelrun::rt::bench {
namespace {

using std::chrono::milliseconds;

int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct AgentFigures {
  int64_t accepted = 0, lease_calls = 0, report_calls = 0, failed = 0;
  int64_t first_ns = INT64_MAX, last_ns = 0;
  std::vector<uint32_t> lease_us;
  std::string error;
};

// One simulated agent (see many_agents.h).
class SimAgent {
 public:
  SimAgent(const AgentProcessOptions& o, int index, AgentFigures* f) : o_(o), f_(f) {
    protocol::HttpClientOptions co;
    co.base_url = o.url;
    co.token = o.token;
    client_ = protocol::MakeHttpCoordinatorClient(co);
    node_ = "10." + std::to_string(index / 65536) + "." + std::to_string(index / 256 % 256) + "." +
            std::to_string(index % 256);
    pid_ = 100000 + index;
  }

  void Run() {
    if (!Register({})) return;
    rr_.node = node_;
    lr_.node = node_;
    lr_.max = o_.workers;
    if (o_.combined) {
      RunPipelined();
    } else {
      RunSeparate();
    }
  }

 private:
  // A report, then a lease call, then the work: the workers wait for every lease answer.
  void RunSeparate() {
    while (true) {
      if (!rr_.results.empty()) {
        auto resp = Call([&] { return client_->Report(rr_); }, &f_->report_calls);
        if (!resp) return;
        if (Accepted(*resp)) return;
      }
      bool end = false;
      std::vector<protocol::Lease> leases = LeaseAlone(&end);
      if (end) return;
      if (leases.empty()) continue;
      if (o_.work_ms > 0) std::this_thread::sleep_for(milliseconds(o_.work_ms));
      for (const auto& l : leases) rr_.results.push_back(Done(l));
    }
  }

  // As the agent does while its workers have work queued: a batch waits behind the running one,
  // starts the moment it ends, and the report of the ended batch asks for the next one (one
  // request). Workers wait only when there is no queued batch (at the start, after the
  // coordinator had no work, or when an answer took longer than a batch's work).
  void RunPipelined() {
    std::vector<protocol::Lease> running, queued;
    bool more = true;  // the coordinator may hand out more work
    int64_t run_start = 0;
    while (true) {
      if (running.empty() && queued.empty()) {
        if (!more) return;
        bool end = false;
        queued = LeaseAlone(&end);
        if (end) return;
        if (queued.empty()) continue;
      }
      if (running.empty()) {
        running = std::move(queued);
        queued.clear();
        run_start = MonoNs();
      }
      const int64_t left_ns = run_start + int64_t{o_.work_ms} * 1000000 - MonoNs();
      if (left_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(left_ns));
      for (const auto& l : running) rr_.results.push_back(Done(l));
      running = std::move(queued);  // the queued batch starts at once
      queued.clear();
      run_start = MonoNs();
      if (more) rr_.lease = lr_;
      const int64_t t0 = MonoNs();
      auto resp = Call([&] { return client_->Report(rr_); }, &f_->report_calls);
      if (!resp) return;
      rr_.lease.reset();
      if (resp->lease) {
        f_->lease_us.push_back(static_cast<uint32_t>((MonoNs() - t0) / 1000));
        more = !resp->lease->done && !resp->lease->stop && !resp->lease->leases.empty();
        queued = std::move(resp->lease->leases);
      }
      if (Accepted(*resp)) return;
    }
  }

  // A lease call of its own (its latency recorded). Empty: no work now (after the coordinator's
  // retry_after_ms wait), or *end: the job is over or the agent gave up.
  std::vector<protocol::Lease> LeaseAlone(bool* end) {
    const int64_t t0 = MonoNs();
    auto leases = Call([&] { return client_->Lease(lr_); }, &f_->lease_calls);
    *end = !leases || leases->done || leases->stop;
    if (*end) return {};
    f_->lease_us.push_back(static_cast<uint32_t>((MonoNs() - t0) / 1000));
    if (leases->leases.empty()) {
      std::this_thread::sleep_for(milliseconds(std::max(1, leases->retry_after_ms)));
    }
    return std::move(leases->leases);
  }

  // The report was accepted: counts it; true when the coordinator said stop.
  bool Accepted(const protocol::ResultsResponse& resp) {
    f_->accepted += static_cast<int64_t>(resp.accepted.size());
    f_->last_ns = MonoNs();
    rr_.results.clear();
    return resp.stop;
  }

  // One call, retried after a transient failure (registering again, holding the unsent results,
  // as the agent does); nullopt: gave up (f_->error says why).
  template <typename F>
  auto Call(F call, int64_t* counter) -> std::optional<std::decay_t<decltype(call().value())>> {
    f_->first_ns = std::min(f_->first_ns, MonoNs());
    while (true) {
      auto answer = call();
      ++*counter;
      if (answer.ok()) {
        backoff_ = milliseconds(0);
        return std::move(*answer);
      }
      if (!Recover(answer.status(), rr_)) return std::nullopt;
    }
  }

  protocol::AttemptResult Done(const protocol::Lease& l) const {
    protocol::AttemptResult r;
    r.mini_batch_id = l.mini_batch_id;
    r.attempt = l.attempt;
    r.process = "process000";
    r.pid = pid_;
    r.status = "RUN_DONE";
    r.total = l.items;
    r.succeeded = l.items;
    r.start_utc = "2026-01-01T00:00:00.000Z";
    return r;
  }

  // After a failed call: back off, then register again holding the results not yet accepted
  // (what a lost lease reply granted goes back to the queue). False: give up (not transient).
  bool Recover(const Status& failure, const protocol::ResultsRequest& unsent) {
    if (failure.code() != StatusCode::kUnavailable) {
      f_->error = node_ + ": " + failure.ToString();
      return false;
    }
    ++f_->failed;
    std::vector<protocol::LeaseRef> held;
    for (const auto& r : unsent.results) held.push_back({r.mini_batch_id, r.attempt});
    return Register(held);
  }

  bool Register(const std::vector<protocol::LeaseRef>& held) {
    while (true) {
      if (backoff_.count() > 0) std::this_thread::sleep_for(backoff_);
      auto reg = client_->Register(protocol::RegisterRequest{node_, pid_, held});
      if (reg.ok()) return true;
      if (reg.status().code() != StatusCode::kUnavailable) {
        f_->error = node_ + ": register: " + reg.status().ToString();
        return false;
      }
      ++f_->failed;
      backoff_ = std::min(milliseconds(2000), std::max(milliseconds(100), 2 * backoff_));
    }
  }

  const AgentProcessOptions& o_;
  AgentFigures* f_;
  protocol::ResultsRequest rr_;  // the results not yet accepted
  protocol::LeaseRequest lr_;
  std::unique_ptr<protocol::CoordinatorClient> client_;
  std::string node_;
  int64_t pid_ = 0;
  milliseconds backoff_{0};
};

// /proc/self: resident bytes, threads, socket fds.
void SampleSelf(int64_t* rss, int* threads, int* sockets) {
  long long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lld %lld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  *rss = resident * ::sysconf(_SC_PAGESIZE);
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) *threads = std::atoi(line.c_str() + 8);
  }
  *sockets = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    char target[64];
    while (dirent* e = ::readdir(d)) {
      std::string path = std::string("/proc/self/fd/") + e->d_name;
      ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
      if (n > 7 && std::strncmp(target, "socket:", 7) == 0) ++*sockets;
    }
    ::closedir(d);
  }
}

// Reads a child's out file into `r`; false when it is missing or malformed.
bool Gather(const std::string& file, ManyAgentsResult* r, int64_t* first_ns, int64_t* last_ns) {
  std::ifstream in(file);
  int64_t accepted = 0, leases = 0, reports = 0, failed = 0, first = 0, last = 0;
  if (!(in >> accepted >> leases >> reports >> failed >> first >> last)) return false;
  std::string error;
  std::getline(in, error);
  std::getline(in, error);
  if (error != "-" && r->error.empty()) r->error = error;
  r->accepted += accepted;
  r->lease_calls += leases;
  r->report_calls += reports;
  r->failed_calls += failed;
  *first_ns = std::min(*first_ns, first);
  *last_ns = std::max(*last_ns, last);
  for (uint32_t us; in >> us;) r->lease_ms.push_back(us / 1000.0);
  return true;
}

}  // namespace

double CpuSeconds(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

AgentProcessOptions ParseAgentProcessFlags(int argc, char** argv) {
  AgentProcessOptions o;
  for (int i = 0; i + 1 < argc; i += 2) {
    const std::string name = argv[i], value = argv[i + 1];
    if (name == "--url") {
      o.url = value;
    } else if (name == "--token") {
      o.token = value;
    } else if (name == "--first") {
      o.first_agent = std::atoi(value.c_str());
    } else if (name == "--agents") {
      o.agents = std::atoi(value.c_str());
    } else if (name == "--workers") {
      o.workers = std::atoi(value.c_str());
    } else if (name == "--work-ms") {
      o.work_ms = std::atoi(value.c_str());
    } else if (name == "--combined") {
      o.combined = value == "1";
    } else if (name == "--out") {
      o.out_file = value;
    } else {
      std::fprintf(stderr, "coordinator_scale --agent-process: bad flag %s\n", name.c_str());
      std::exit(1);
    }
  }
  return o;
}

int RunAgentProcess(const AgentProcessOptions& o) {
  // Each simulated agent makes its calls on its own thread (the client has no thread pool).
  std::vector<AgentFigures> figures(static_cast<size_t>(o.agents));
  std::vector<std::thread> threads;
  for (int a = 0; a < o.agents; ++a) {
    threads.emplace_back([&o, &figures, a] {
      SimAgent(o, o.first_agent + a, &figures[static_cast<size_t>(a)]).Run();
    });
  }
  for (auto& t : threads) t.join();
  AgentFigures sum;
  std::ostringstream lat;
  for (const auto& f : figures) {
    sum.accepted += f.accepted;
    sum.lease_calls += f.lease_calls;
    sum.report_calls += f.report_calls;
    sum.failed += f.failed;
    sum.first_ns = std::min(sum.first_ns, f.first_ns);
    sum.last_ns = std::max(sum.last_ns, f.last_ns);
    if (sum.error.empty()) sum.error = f.error;
    for (uint32_t us : f.lease_us) lat << us << '\n';
  }
  std::ofstream out(o.out_file);
  out << sum.accepted << ' ' << sum.lease_calls << ' ' << sum.report_calls << ' ' << sum.failed
      << ' ' << sum.first_ns << ' ' << sum.last_ns << '\n'
      << (sum.error.empty() ? "-" : sum.error) << '\n'
      << lat.str();
  out.close();
  return out && sum.error.empty() ? 0 : 1;
}

ManyAgentsResult DriveManyAgents(const std::string& self_exe, const std::string& url,
                                 const std::string& token, int agents, int workers, int processes,
                                 int work_ms, bool combined, const std::string& scratch_dir) {
  ManyAgentsResult r;
  std::vector<pid_t> pids;
  std::vector<std::string> files;
  const double cpu0 = CpuSeconds(RUSAGE_SELF);
  for (int p = 0, first = 0; p < processes; ++p) {
    const int n = agents / processes + (p < agents % processes ? 1 : 0);
    files.push_back(scratch_dir + "/agents-" + std::to_string(p) + ".txt");
    std::vector<std::string> args = {self_exe,     "--agent-process",
                                     "--url",      url,
                                     "--token",    token,
                                     "--first",    std::to_string(first),
                                     "--agents",   std::to_string(n),
                                     "--workers",  std::to_string(workers),
                                     "--work-ms",  std::to_string(work_ms),
                                     "--combined", combined ? "1" : "0",
                                     "--out",      files.back()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (int err = ::posix_spawn(&pid, self_exe.c_str(), nullptr, nullptr, argv.data(), environ)) {
      r.error = "cannot start " + self_exe + ": " + std::strerror(err);
      break;
    }
    pids.push_back(pid);
    first += n;
  }
  std::atomic<bool> running{true};
  std::thread monitor([&] {
    while (running.load()) {
      int64_t rss = 0;
      int threads = 0, sockets = 0;
      SampleSelf(&rss, &threads, &sockets);
      r.max_rss_bytes = std::max(r.max_rss_bytes, rss);
      r.max_threads = std::max(r.max_threads, threads);
      r.max_connections = std::max(r.max_connections, sockets - 1);  // less the listener
      std::this_thread::sleep_for(milliseconds(1000));
    }
  });
  for (size_t i = 0; i < pids.size(); ++i) {
    int status = 0;
    ::waitpid(pids[i], &status, 0);
    if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) && r.error.empty()) {
      r.error =
          "agent process " + std::to_string(i) + " failed (status " + std::to_string(status) + ")";
    }
  }
  running = false;
  monitor.join();
  r.coordinator_cpu_seconds = CpuSeconds(RUSAGE_SELF) - cpu0;
  r.agents_cpu_seconds = CpuSeconds(RUSAGE_CHILDREN);
  int64_t first_ns = INT64_MAX, last_ns = 0;
  for (const auto& f : files) {
    if (!Gather(f, &r, &first_ns, &last_ns) && r.error.empty()) r.error = "no figures in " + f;
  }
  r.seconds = last_ns > first_ns ? static_cast<double>(last_ns - first_ns) * 1e-9 : 0;
  std::sort(r.lease_ms.begin(), r.lease_ms.end());
  return r;
}

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace parallelrun::rt::bench
