// coordinator_scale's many-agents mode: N simulated agents with W workers each, spread over P
// child processes (this same binary, started with --agent-process), all on loopback, against the
// coordinator served by the parent process.
//
// A simulated agent behaves like a real one with W workers, one call at a time over its own
// keep-alive HTTP client (the production client): it leases up to W mini-batches, "runs" them
// for --work-ms (all W in parallel, as W workers would), reports them RUN_DONE in one results
// request that also asks for the next W (ResultsRequest.lease; with --separate-calls, a lease
// call of its own follows the report); a failed call is retried after a backoff (100 ms doubling to
// 2 s) after registering again, as the real agent does. Each lease call's latency (from sending the
// request to having the parsed reply) is recorded.
//
// While the child processes run, the parent samples its own /proc (it holds only the
// coordinator and its HTTP server): RSS, threads and open TCP connections (socket fds, less the
// listening one).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parallelrun::rt::bench {

struct AgentProcessOptions {
  std::string url;
  std::string token;
  int first_agent = 0;  // index of this process's first agent (node names are unique)
  int agents = 1;
  int workers = 8;
  int work_ms = 0;
  bool combined = true;  // a report carries the next lease call
  std::string out_file;  // where the child writes its figures for the parent
};

// The child process: runs its agents until the coordinator says done; writes out_file; returns
// the exit code (0, or 1 when an agent gave up).
int RunAgentProcess(const AgentProcessOptions& options);
// Parses the child's command line (argv after --agent-process); exits 1 on a bad flag.
AgentProcessOptions ParseAgentProcessFlags(int argc, char** argv);

struct ManyAgentsResult {
  int64_t accepted = 0;
  int64_t lease_calls = 0;
  int64_t report_calls = 0;
  int64_t failed_calls = 0;  // transient failures retried (connection refused/closed, 5xx)
  double seconds = 0;        // first lease sent .. last result accepted, over all processes
  double coordinator_cpu_seconds = 0;
  double agents_cpu_seconds = 0;
  std::vector<double> lease_ms;  // every lease call's latency, sorted
  int64_t max_rss_bytes = 0;     // the coordinator process, sampled every 100 ms
  int max_connections = 0;
  int max_threads = 0;
  std::string error;  // the first child failure
};

// Starts `processes` children of `self_exe` sharing `agents` agents, waits for them, and
// gathers their figures (scratch_dir holds their out files).
ManyAgentsResult DriveManyAgents(const std::string& self_exe, const std::string& url,
                                 const std::string& token, int agents, int workers, int processes,
                                 int work_ms, bool combined, const std::string& scratch_dir);

// User + system CPU seconds of getrusage(who): RUSAGE_SELF or RUSAGE_CHILDREN.
double CpuSeconds(int who);

// The q-quantile (0..1) of sorted values; 0 when empty.
double Quantile(const std::vector<double>& sorted, double q);

}  // namespace parallelrun::rt::bench
