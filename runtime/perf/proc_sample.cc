#include "runtime/perf/proc_sample.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

namespace parallelrun::rt {
namespace {

// Reads a whole (small, size-less) /proc file relative to `dir_fd` into `out`. False when it
// cannot be opened or read (the process exited, or the file is not ours to read).
bool ReadAt(int dir_fd, const char* name, std::string* out) {
  out->clear();
  int fd = ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  bool ok = true;
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return ok;
}

bool Read(const std::string& path, std::string* out) { return ReadAt(AT_FDCWD, path.c_str(), out); }

Status ReadRequired(const char* path, std::string* out) {
  if (!Read(path, out)) {
    return UnavailableError(std::string("cannot read ") + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

bool IsPhysicalDisk(const std::string& name) {
  std::string sys_name = name;
  std::replace(sys_name.begin(), sys_name.end(), '/', '!');  // sysfs spelling of "cciss/c0d0"
  return ::access(("/sys/block/" + sys_name + "/device").c_str(), F_OK) == 0;
}

FsUsage ReadFsUsage(const std::string& path, const std::vector<DiskStat>& disks) {
  FsUsage u;
  u.path = path;
  struct statvfs vfs;
  struct stat st;
  if (::statvfs(path.c_str(), &vfs) != 0 || ::stat(path.c_str(), &st) != 0) {
    u.error = std::strerror(errno);
    return u;
  }
  u.ok = true;
  const uint64_t unit = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
  u.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * unit;
  u.used_bytes = static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * unit;
  u.avail_bytes = static_cast<uint64_t>(vfs.f_bavail) * unit;
  const unsigned maj = major(st.st_dev), min = minor(st.st_dev);
  for (const auto& d : disks) {
    if (d.major == maj && d.minor == min) {
      u.device = d;
      break;
    }
  }
  return u;
}

void ReadProcesses(const SampleOptions& options, Sample* sample) {
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return;
  const int proc_fd = ::dirfd(dir);
  std::string text;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    int pid_fd = ::openat(proc_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pid_fd < 0) continue;
    ProcessInfo p;
    struct stat st;
    bool ok = ::fstat(pid_fd, &st) == 0 && ReadAt(pid_fd, "stat", &text);
    if (ok) {
      p.uid = st.st_uid;
      auto stat = ParseProcStat(text);
      ok = stat.ok();
      if (ok) p.stat = std::move(*stat);
    }
    if (ok && ReadAt(pid_fd, "cmdline", &text)) p.cmdline = ParseCmdline(text);
    ::close(pid_fd);
    if (ok) sample->processes.push_back(std::move(p));
  }
  ::closedir(dir);
  std::sort(sample->processes.begin(), sample->processes.end(),
            [](const ProcessInfo& a, const ProcessInfo& b) { return a.stat.pid < b.stat.pid; });

  const std::vector<int> watched = DescendantsOf(sample->processes, options.root_pid);
  for (auto& p : sample->processes) {
    if (!std::binary_search(watched.begin(), watched.end(), p.stat.pid)) continue;
    p.watched = true;
    const std::string base = "/proc/" + std::to_string(p.stat.pid) + "/";
    if (Read(base + "io", &text)) {
      auto io = ParseProcIo(text);
      if (io.ok()) p.io = *io;
    }
    if (Read(base + "environ", &text)) p.process_name = FindEnviron(text, "PARALLELRUN_PROCESS");
  }
}

}  // namespace

SystemConstants SystemConstants::Get() {
  SystemConstants c;
  if (long t = ::sysconf(_SC_CLK_TCK); t > 0) c.ticks_per_second = t;
  if (long p = ::sysconf(_SC_PAGESIZE); p > 0) c.page_size = p;
  return c;
}

StatusOr<Sample> ReadSample(const SampleOptions& options, const Clock& clock) {
  Sample s;
  s.time = clock.Now();
  s.steady = clock.SteadyNow();
  std::string text;

  PR_RETURN_IF_ERROR(ReadRequired("/proc/stat", &text));
  auto stat = ParseSystemStat(text);
  if (!stat.ok()) return stat.status().WithContext("/proc/stat");
  s.stat = *stat;

  PR_RETURN_IF_ERROR(ReadRequired("/proc/meminfo", &text));
  auto mem = ParseMemInfo(text);
  if (!mem.ok()) return mem.status().WithContext("/proc/meminfo");
  s.mem = *mem;

  if (Read("/proc/loadavg", &text)) {
    if (auto load = ParseLoadAvg(text); load.ok()) s.load = *load;
  }
  if (Read("/proc/net/dev", &text)) {
    if (auto net = ParseNetDev(text); net.ok()) s.net = *net;
  }
  for (const char* path : {"/proc/net/sockstat", "/proc/net/sockstat6"}) {
    if (!Read(path, &text)) continue;
    auto sockets = ParseSockStat(text);
    if (!sockets.ok()) continue;
    s.tcp_sockets = std::max<int64_t>(s.tcp_sockets, 0) + sockets->tcp;
    s.udp_sockets = std::max<int64_t>(s.udp_sockets, 0) + sockets->udp;
  }

  std::vector<DiskStat> disks;
  if (Read("/proc/diskstats", &text)) disks = ParseDiskStats(text);
  for (const auto& d : disks) {
    if (!IsPhysicalDisk(d.name)) continue;
    s.disk_io.reads += d.reads;
    s.disk_io.writes += d.writes;
    s.disk_io.read_bytes += d.read_sectors * 512;
    s.disk_io.write_bytes += d.write_sectors * 512;
  }
  for (const auto& path : options.fs_paths) s.filesystems.push_back(ReadFsUsage(path, disks));

  ReadProcesses(options, &s);
  return s;
}

std::vector<int> DescendantsOf(const std::vector<ProcessInfo>& processes, int root) {
  std::multimap<int, int> children;  // ppid -> pid
  bool root_seen = false;
  for (const auto& p : processes) {
    children.emplace(p.stat.ppid, p.stat.pid);
    root_seen |= p.stat.pid == root;
  }
  if (!root_seen) return {};
  // A set of visited pids, so that a ppid cycle (pids reused while /proc was being read) cannot
  // loop.
  std::set<int> seen = {root};
  std::vector<int> todo = {root};
  while (!todo.empty()) {
    int pid = todo.back();
    todo.pop_back();
    auto [begin, end] = children.equal_range(pid);
    for (auto it = begin; it != end; ++it) {
      if (seen.insert(it->second).second) todo.push_back(it->second);
    }
  }
  return std::vector<int>(seen.begin(), seen.end());
}

}  // namespace parallelrun::rt
