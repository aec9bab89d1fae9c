// The rows of `logs/perf/<node>/` (SPEC.md §5), made from samples (proc_sample.h). Pure
// functions: the same two samples always give the same text.
//
// CSV files are RFC 4180 with a header row; times are UTC ISO 8601; MB = 2^20 bytes,
// GB = 2^30 bytes. Columns that need a previous sample (rates and counts "during the interval")
// are empty in the first row, and where a counter went backwards (a device or interface went
// away).
//
// node_resource_usage.csv, one row per sample:
//   timestamp_utc, interval_s (seconds since the previous sample), cpu_percent (all CPUs
//   together: 100 = every CPU busy, over the interval), cpu_count, load_1m, load_5m, load_15m,
//   mem_total_mb, mem_available_mb, mem_used_mb (total - available), mem_used_percent,
//   swap_used_mb, disk_read_count, disk_write_count, disk_read_mb, disk_write_mb (physical disks,
//   over the interval), net_recv_mb, net_sent_mb (all interfaces but lo, over the interval),
//   tcp_sockets (IPv4 + IPv6: listening, connected and TIME_WAIT), udp_sockets (IPv4 + IPv6), both
//   of this network namespace, processes.
// node_disk_usage.csv, one row per sample and path (the output folder and /):
//   timestamp_utc, path, device (from /proc/diskstats; empty for overlay, tmpfs, NFS ...),
//   total_gb, used_gb, free_gb (available to unprivileged users), used_percent (used / (used +
//   free), as df), read_count, write_count, read_mb, write_mb (the device, over the interval).
// processes_resource_usage.csv, one row per sample and watched process (the agent and its
// descendants: workers and whatever they started):
//   timestamp_utc, pid, ppid, process (PARALLELRUN_PROCESS, i.e. processNNN, for workers and
//   their children; the root's label for the root), name, state, cpu_percent (over the interval;
//   100 = one CPU), cpu_s (user + system since it started), rss_mb, vms_mb, threads, read_mb,
//   write_mb (storage I/O since it started; empty when not readable), start_utc, cmdline (at most
//   kCmdlineMaxBytes).
// os/<YYYYmmddHH>/processes_<MM>: every process of the machine, as `ps auxww` shows them, after a
//   `# <timestamp>` line (samples in the same minute append to the same file).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include "runtime/perf/proc_sample.h"

namespace parallelrun::rt {

inline constexpr size_t kCmdlineMaxBytes = 1000;

// Header rows, with the trailing newline.
std::string NodeUsageHeader();
std::string DiskUsageHeader();
std::string ProcessUsageHeader();

// The rows `cur` adds (each ending in a newline). `prev` is the previous sample, or null for the
// first one.
std::string NodeUsageRow(const Sample* prev, const Sample& cur);
std::string DiskUsageRows(const Sample* prev, const Sample& cur);
// Rows of cur's watched processes; `root_pid` is labelled `root_label` in the process column.
std::string ProcessUsageRows(const Sample* prev, const Sample& cur, const SystemConstants& sys,
                             int root_pid, const std::string& root_label);

// The `ps auxww`-like listing of every process in `cur`: USER PID %CPU (CPU time / time since it
// started, as ps) %MEM VSZ RSS (KiB) TTY STAT START (UTC) TIME COMMAND.
using UserNameFn = std::function<std::string(uid_t)>;
std::string ProcessListing(const Sample& cur, const SystemConstants& sys,
                           const UserNameFn& user_name);

// The user name of `uid` (getpwuid_r), or the number when it has none; cached.
class UserNames {
 public:
  std::string operator()(uid_t uid);

 private:
  std::map<uid_t, std::string> cache_;
};

}  // namespace parallelrun::rt
