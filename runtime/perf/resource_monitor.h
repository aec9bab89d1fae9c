// The node's resource monitor: `<log_dir>/perf/<node>/` (SPEC.md §5, the files and columns are
// described in perf_tables.h), sampled every resourceMonitorInterval seconds from /proc by a
// thread of its own. One per agent.
//
// Guarantees:
// - Start() takes the first sample on the calling thread before it returns (so the agent has a
//   baseline before its workers start), then the thread takes one every interval (not drifting:
//   a slow sample shortens the next wait). With an interval of 0 no thread starts and nothing is
//   written (unless SampleNow() is called).
// - Every sample is written (and so visible to `tail -f`) before the next one starts; a CSV file
//   gets its header row once, when it is created or empty, so a restarted agent appends to it.
// - Stop() returns as soon as a sample in progress (milliseconds) is finished; the destructor
//   stops.
// - A sample that fails (unreadable /proc, full disk) is logged as a warning (once per distinct
//   message) and the monitor goes on; it never ends the agent.
// Thread safety: Start(), Stop() and SampleNow() may be called from any thread; samples are
// serialized.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/perf/perf_tables.h"
#include "runtime/perf/proc_sample.h"

namespace spdlog {
class logger;
}

namespace parallelrun::rt {

struct ResourceMonitorOptions {
  std::string node;                  // names the folder: <log_dir>/perf/<node>/
  std::string log_dir;               // <output>/logs
  int interval_seconds = 600;        // resourceMonitorInterval; 0 disables
  int root_pid = 0;                  // the watched process tree (the agent); 0: this process
  std::string root_label = "agent";  // its name in the process column
  // File systems of node_disk_usage.csv; empty: the output folder (log_dir's parent) and /.
  std::vector<std::string> disk_paths;
  std::shared_ptr<spdlog::logger> log;  // warnings and a debug line per sample; may be null
};

class ResourceMonitor {
 public:
  ResourceMonitor(ResourceMonitorOptions options, const Clock& clock);
  ~ResourceMonitor();
  ResourceMonitor(const ResourceMonitor&) = delete;
  ResourceMonitor& operator=(const ResourceMonitor&) = delete;

  // Takes the first sample, then starts the sampling thread. Does nothing when the interval is 0,
  // when already started, or after Stop().
  void Start();
  // Stops and joins the thread. Idempotent.
  void Stop();
  // Takes one sample now and appends it to the files, whatever the interval (the thread calls
  // this; so may a caller that wants a snapshot at a moment of interest, e.g. a worker killed for
  // memory).
  Status SampleNow();

  // <log_dir>/perf/<node>.
  const std::string& perf_dir() const { return perf_dir_; }
  // CPU time (user + system, this thread) the last sample took, in seconds.
  double last_sample_cpu_seconds() const;

 private:
  void Loop();
  Status Write(const Sample& sample);
  Status OpenCsv(const std::string& name, const std::string& header, AppendFile* file);

  const ResourceMonitorOptions options_;
  const Clock& clock_;
  const std::string perf_dir_;
  const int root_pid_;
  const SystemConstants sys_;

  // Sampling state, under sample_mu_.
  mutable std::mutex sample_mu_;
  std::optional<Sample> prev_;
  AppendFile node_csv_, disk_csv_, process_csv_;
  UserNames user_names_;
  std::string last_error_;
  double last_cpu_s_ = 0;

  // Thread control, under mu_.
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace parallelrun::rt
