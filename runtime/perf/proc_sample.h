// One reading of the machine's state from /proc, /sys and statvfs(3): what the resource monitor
// turns into rows (perf_tables.h). Linux only.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/perf/proc_parse.h"

namespace parallelrun::rt {

// Kernel constants the tables need to turn ticks and pages into seconds and bytes.
struct SystemConstants {
  long ticks_per_second = 100;  // sysconf(_SC_CLK_TCK)
  long page_size = 4096;        // sysconf(_SC_PAGESIZE)
  // The running kernel's values.
  static SystemConstants Get();
};

// Cumulative I/O of the machine's physical disks (those with /sys/block/<name>/device: loop, ram,
// zram and device-mapper devices are left out, since their I/O is also counted on the disks under
// them).
struct DiskIoTotals {
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
};

// The file system holding one path.
struct FsUsage {
  std::string path;
  bool ok = false;  // statvfs succeeded; otherwise only `path` and `error` are set
  std::string error;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;   // total - free (blocks in use, by anyone)
  uint64_t avail_bytes = 0;  // what an unprivileged user may still write (df's Avail)
  // The block device behind it as found in /proc/diskstats (a disk or a partition); nullopt for
  // overlay, tmpfs, NFS and the like.
  std::optional<DiskStat> device;
};

struct ProcessInfo {
  ProcStat stat;
  uid_t uid = 0;
  std::string cmdline;  // "" for kernel threads and zombies
  // Set only for watched processes (the root and its descendants):
  bool watched = false;
  std::optional<ProcIo> io;  // nullopt when /proc/<pid>/io is not readable (another user's)
  std::string process_name;  // PARALLELRUN_PROCESS of its environment (processNNN), if any
};

struct Sample {
  SystemTime time;    // wall clock, for the timestamp column
  SteadyTime steady;  // for rates between two samples
  SystemStat stat;
  MemInfo mem;
  std::optional<LoadAvg> load;
  std::optional<NetTotals> net;
  DiskIoTotals disk_io;
  int64_t tcp_sockets = -1;  // -1: /proc/net/sockstat not readable
  int64_t udp_sockets = -1;
  std::vector<FsUsage> filesystems;
  std::vector<ProcessInfo> processes;  // every process of the machine (of this pid namespace),
                                       // by pid
};

struct SampleOptions {
  int root_pid = 0;                   // the watched tree: this process and its descendants
  std::vector<std::string> fs_paths;  // one FsUsage each, in this order
};

// Reads everything at once. Fails only when /proc/stat or /proc/meminfo cannot be read or
// parsed (not Linux, or /proc not mounted); a process that exits while being read is left out,
// and other missing files leave their fields empty.
StatusOr<Sample> ReadSample(const SampleOptions& options, const Clock& clock);

// The pids of `root` and all its descendants (by ppid chains) among `processes`, sorted. Empty
// when `root` is not among them.
std::vector<int> DescendantsOf(const std::vector<ProcessInfo>& processes, int root);

}  // namespace parallelrun::rt
