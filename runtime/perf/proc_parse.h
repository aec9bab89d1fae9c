// Parsers for the Linux /proc files the resource monitor reads (proc(5)). Pure functions over a
// file's text, so each one is tested on fixture strings; reading the files is proc_sample.h's
// job. Errors say what was expected; the reader adds the file's path.
//
// Units are the kernel's: clock ticks (USER_HZ) for CPU times, kB for /proc/meminfo, bytes for
// /proc/net/dev and /proc/<pid>/io, 512-byte sectors for /proc/diskstats, pages for rss.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

// The machine's CPU time from the aggregate `cpu` line of /proc/stat, in clock ticks.
struct CpuTimes {
  uint64_t total = 0;  // user + nice + system + idle + iowait + irq + softirq + steal (guest
                       // time is already counted in user and nice)
  uint64_t idle = 0;   // idle + iowait
};

struct SystemStat {
  CpuTimes cpu;
  int cpu_count = 0;      // `cpuN` lines: the online CPUs
  int64_t boot_time = 0;  // `btime`: seconds since the epoch
};
// /proc/stat. Needs the aggregate `cpu` line with at least 4 numbers, and `btime`.
StatusOr<SystemStat> ParseSystemStat(std::string_view text);

// /proc/meminfo, in kB.
struct MemInfo {
  uint64_t total_kb = 0;
  uint64_t available_kb = 0;  // MemAvailable; before Linux 3.14, MemFree + Buffers + Cached
  uint64_t swap_total_kb = 0;
  uint64_t swap_free_kb = 0;
};
StatusOr<MemInfo> ParseMemInfo(std::string_view text);

// /proc/loadavg.
struct LoadAvg {
  double one = 0, five = 0, fifteen = 0;
};
StatusOr<LoadAvg> ParseLoadAvg(std::string_view text);

// /proc/net/dev summed over every interface except the loopback `lo` (traffic between processes
// of this machine, including our own coordinator-agent chatter in local mode, is not network).
struct NetTotals {
  uint64_t recv_bytes = 0;
  uint64_t sent_bytes = 0;
};
StatusOr<NetTotals> ParseNetDev(std::string_view text);

// One line of /proc/diskstats (cumulative since boot).
struct DiskStat {
  unsigned major = 0;
  unsigned minor = 0;
  std::string name;
  uint64_t reads = 0;         // reads completed
  uint64_t read_sectors = 0;  // 512-byte sectors, whatever the device's sector size
  uint64_t writes = 0;        // writes completed
  uint64_t write_sectors = 0;
};
// Lines that do not have the 14 leading fields are skipped; an empty file gives no disks.
std::vector<DiskStat> ParseDiskStats(std::string_view text);

// /proc/net/sockstat or /proc/net/sockstat6: sockets of this network namespace. (Counting the
// lines of /proc/net/tcp would cost the kernel a walk of its whole connection hash table per
// read: most of a sample's CPU.)
struct SockStat {
  int64_t tcp = 0;  // TCP/TCP6 `inuse` (listening and connected) + `tw` (TIME_WAIT)
  int64_t udp = 0;  // UDP/UDP6 `inuse`
};
// Lines of other protocols (UDPLITE, RAW, FRAG) are ignored.
StatusOr<SockStat> ParseSockStat(std::string_view text);

// /proc/<pid>/stat.
struct ProcStat {
  int pid = 0;
  std::string comm;  // executable name, at most 15 bytes, may hold spaces and parentheses
  char state = '?';  // R, S, D, Z, T, t, X, I ...
  int ppid = 0;
  int pgrp = 0;
  int session = 0;
  int tty_nr = 0;
  int tpgid = -1;
  uint64_t utime = 0;  // clock ticks
  uint64_t stime = 0;
  int64_t nice = 0;
  int64_t threads = 0;
  uint64_t start_ticks = 0;  // clock ticks after boot
  uint64_t vsize_bytes = 0;
  int64_t rss_pages = 0;
};
// The command name is what lies between the first '(' and the last ')', so a name such as
// "a) R (b" cannot shift the fields after it.
StatusOr<ProcStat> ParseProcStat(std::string_view text);

// /proc/<pid>/io: bytes this process made the storage layer read and write (not page-cache hits).
struct ProcIo {
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
};
StatusOr<ProcIo> ParseProcIo(std::string_view text);

// /proc/<pid>/cmdline: the NUL-separated arguments joined with single spaces. Empty for kernel
// threads and zombies.
std::string ParseCmdline(std::string_view text);

// The value of `name` in /proc/<pid>/environ (NUL-separated NAME=value), or "" when absent.
std::string FindEnviron(std::string_view text, std::string_view name);

}  // namespace parallelrun::rt
