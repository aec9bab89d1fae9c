#include "runtime/perf/perf_tables.h"

#include <fmt/format.h>
#include <pwd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

namespace parallelrun::rt {
namespace {

constexpr double kMb = 1024.0 * 1024.0;
constexpr double kGb = 1024.0 * 1024.0 * 1024.0;

// Control characters (a `python -c` script's newlines) would break a CSV line or the listing's
// one-line-per-process shape; ps prints them as '?' too.
std::string Printable(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

// At most `max` bytes, not cutting a UTF-8 sequence in two.
std::string Truncate(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  s.resize(end);
  return s;
}

std::string Csv(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Join(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ',';
    line += Csv(fields[i]);
  }
  return line + "\n";
}

std::string Fixed(double v, int decimals) { return fmt::format("{:.{}f}", v, decimals); }
std::string Mb(double bytes) { return Fixed(bytes / kMb, 1); }

// cur - prev as a string, or "" when there is no previous value or the counter went backwards.
std::string Delta(std::optional<uint64_t> prev, uint64_t cur, double scale, int decimals) {
  if (!prev || cur < *prev) return "";
  return Fixed(static_cast<double>(cur - *prev) / scale, decimals);
}

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }

std::string Percent(double part, double whole) {
  return whole > 0 ? Fixed(100.0 * part / whole, 1) : "";
}

double StartEpochSeconds(const Sample& s, const ProcStat& p, const SystemConstants& sys) {
  return static_cast<double>(s.stat.boot_time) +
         static_cast<double>(p.start_ticks) / static_cast<double>(sys.ticks_per_second);
}

SystemTime FromEpochSeconds(double seconds) {
  return SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::duration<double>(seconds)));
}

double EpochSeconds(SystemTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

double CpuSeconds(const ProcStat& p, const SystemConstants& sys) {
  return static_cast<double>(p.utime + p.stime) / static_cast<double>(sys.ticks_per_second);
}

// The terminal named the way ps names it, from the tty_nr field.
std::string TtyName(int tty_nr) {
  if (tty_nr == 0) return "?";
  const unsigned maj = (static_cast<unsigned>(tty_nr) >> 8) & 0xfff;
  const unsigned min =
      (static_cast<unsigned>(tty_nr) & 0xff) | ((static_cast<unsigned>(tty_nr) >> 12) & 0xfff00);
  if (maj >= 136 && maj <= 143) return fmt::format("pts/{}", min + (maj - 136) * 256);
  if (maj == 4) return min < 64 ? fmt::format("tty{}", min) : fmt::format("ttyS{}", min - 64);
  return fmt::format("{}:{}", maj, min);
}

// ps's STAT: the state letter, then < (high priority), N (low priority), s (session leader),
// l (multi-threaded), + (in the foreground process group of its terminal).
std::string StatFlags(const ProcStat& p) {
  std::string s(1, p.state);
  if (p.nice < 0) s += '<';
  if (p.nice > 0) s += 'N';
  if (p.session == p.pid) s += 's';
  if (p.threads > 1) s += 'l';
  if (p.tty_nr != 0 && p.tpgid >= 0 && p.tpgid == p.pgrp) s += '+';
  return s;
}

// ps's START: the time of day within the last 24 hours, else the date.
std::string StartColumn(double start_epoch, SystemTime now) {
  const SystemTime start = FromEpochSeconds(start_epoch);
  if (now - start < std::chrono::hours(24)) return FormatUtc(start, "%H:%M");
  if (FormatUtc(start, "%Y") == FormatUtc(now, "%Y")) return FormatUtc(start, "%b%d");
  return FormatUtc(start, "%Y");
}

// ps's TIME: minutes:seconds of CPU.
std::string CpuTimeColumn(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

const ProcessInfo* FindProcess(const Sample& s, const ProcStat& like) {
  auto it = std::lower_bound(s.processes.begin(), s.processes.end(), like.pid,
                             [](const ProcessInfo& p, int pid) { return p.stat.pid < pid; });
  // The same pid with another start time is another process (the pid was reused).
  if (it == s.processes.end() || it->stat.pid != like.pid ||
      it->stat.start_ticks != like.start_ticks) {
    return nullptr;
  }
  return &*it;
}

}  // namespace

std::string NodeUsageHeader() {
  return Join({"timestamp_utc",    "interval_s",       "cpu_percent",      "cpu_count",
               "load_1m",          "load_5m",          "load_15m",         "mem_total_mb",
               "mem_available_mb", "mem_used_mb",      "mem_used_percent", "swap_used_mb",
               "disk_read_count",  "disk_write_count", "disk_read_mb",     "disk_write_mb",
               "net_recv_mb",      "net_sent_mb",      "tcp_sockets",      "udp_sockets",
               "processes"});
}

std::string DiskUsageHeader() {
  return Join({"timestamp_utc", "path", "device", "total_gb", "used_gb", "free_gb", "used_percent",
               "read_count", "write_count", "read_mb", "write_mb"});
}

std::string ProcessUsageHeader() {
  return Join({"timestamp_utc", "pid", "ppid", "process", "name", "state", "cpu_percent", "cpu_s",
               "rss_mb", "vms_mb", "threads", "read_mb", "write_mb", "start_utc", "cmdline"});
}

std::string NodeUsageRow(const Sample* prev, const Sample& cur) {
  auto p = [&](auto field) -> std::optional<uint64_t> {
    if (!prev) return std::nullopt;
    return field(*prev);
  };
  std::string interval, cpu;
  if (prev) {
    interval = Fixed(Seconds(cur.steady - prev->steady), 3);
    const CpuTimes& a = prev->stat.cpu;
    const CpuTimes& b = cur.stat.cpu;
    if (b.total > a.total && b.idle >= a.idle) {
      const double busy = static_cast<double>((b.total - a.total) - (b.idle - a.idle));
      cpu = Percent(std::max(0.0, busy), static_cast<double>(b.total - a.total));
    }
  }
  const double total_kb = static_cast<double>(cur.mem.total_kb);
  const double avail_kb = static_cast<double>(std::min(cur.mem.available_kb, cur.mem.total_kb));
  const double swap_used_kb = static_cast<double>(
      cur.mem.swap_total_kb - std::min(cur.mem.swap_free_kb, cur.mem.swap_total_kb));
  std::string load1, load5, load15;
  if (cur.load) {
    load1 = Fixed(cur.load->one, 2);
    load5 = Fixed(cur.load->five, 2);
    load15 = Fixed(cur.load->fifteen, 2);
  }
  std::string recv, sent;
  if (cur.net && prev && prev->net) {
    recv = Delta(prev->net->recv_bytes, cur.net->recv_bytes, kMb, 3);
    sent = Delta(prev->net->sent_bytes, cur.net->sent_bytes, kMb, 3);
  }
  const DiskIoTotals& io = cur.disk_io;
  return Join({
      Iso8601Utc(cur.time),
      interval,
      cpu,
      std::to_string(cur.stat.cpu_count),
      load1,
      load5,
      load15,
      Fixed(total_kb / 1024, 1),
      Fixed(avail_kb / 1024, 1),
      Fixed((total_kb - avail_kb) / 1024, 1),
      Percent(total_kb - avail_kb, total_kb),
      Fixed(swap_used_kb / 1024, 1),
      Delta(p([](const Sample& s) { return s.disk_io.reads; }), io.reads, 1, 0),
      Delta(p([](const Sample& s) { return s.disk_io.writes; }), io.writes, 1, 0),
      Delta(p([](const Sample& s) { return s.disk_io.read_bytes; }), io.read_bytes, kMb, 3),
      Delta(p([](const Sample& s) { return s.disk_io.write_bytes; }), io.write_bytes, kMb, 3),
      recv,
      sent,
      cur.tcp_sockets >= 0 ? std::to_string(cur.tcp_sockets) : "",
      cur.udp_sockets >= 0 ? std::to_string(cur.udp_sockets) : "",
      std::to_string(cur.processes.size()),
  });
}

std::string DiskUsageRows(const Sample* prev, const Sample& cur) {
  std::string out;
  for (size_t i = 0; i < cur.filesystems.size(); ++i) {
    const FsUsage& u = cur.filesystems[i];
    if (!u.ok) {
      out += Join({Iso8601Utc(cur.time), u.path, "", "", "", "", "", "", "", "", ""});
      continue;
    }
    std::optional<DiskStat> before;
    if (prev && i < prev->filesystems.size() && prev->filesystems[i].path == u.path &&
        prev->filesystems[i].device && u.device &&
        prev->filesystems[i].device->name == u.device->name) {
      before = prev->filesystems[i].device;
    }
    auto delta = [&](uint64_t DiskStat::*field, double scale, int decimals) -> std::string {
      if (!u.device) return "";
      std::optional<uint64_t> b;
      if (before) b = (*before).*field;
      return Delta(b, (*u.device).*field, scale, decimals);
    };
    out += Join({
        Iso8601Utc(cur.time),
        u.path,
        u.device ? u.device->name : "",
        Fixed(static_cast<double>(u.total_bytes) / kGb, 2),
        Fixed(static_cast<double>(u.used_bytes) / kGb, 2),
        Fixed(static_cast<double>(u.avail_bytes) / kGb, 2),
        Percent(static_cast<double>(u.used_bytes),
                static_cast<double>(u.used_bytes + u.avail_bytes)),
        delta(&DiskStat::reads, 1, 0),
        delta(&DiskStat::writes, 1, 0),
        delta(&DiskStat::read_sectors, kMb / 512, 3),
        delta(&DiskStat::write_sectors, kMb / 512, 3),
    });
  }
  return out;
}

std::string ProcessUsageRows(const Sample* prev, const Sample& cur, const SystemConstants& sys,
                             int root_pid, const std::string& root_label) {
  std::string out;
  const std::string time = Iso8601Utc(cur.time);
  const double interval = prev ? Seconds(cur.steady - prev->steady) : 0;
  for (const ProcessInfo& p : cur.processes) {
    if (!p.watched) continue;
    const ProcStat& s = p.stat;
    std::string cpu;
    if (const ProcessInfo* before = prev ? FindProcess(*prev, s) : nullptr;
        before && interval > 0) {
      const double used = CpuSeconds(s, sys) - CpuSeconds(before->stat, sys);
      cpu = Fixed(std::max(0.0, 100.0 * used / interval), 1);
    }
    std::string label = p.process_name;
    if (s.pid == root_pid) label = root_label;
    const double rss =
        static_cast<double>(std::max<int64_t>(s.rss_pages, 0)) * static_cast<double>(sys.page_size);
    out += Join({
        time,
        std::to_string(s.pid),
        std::to_string(s.ppid),
        label,
        Printable(s.comm),
        std::string(1, s.state),
        cpu,
        Fixed(CpuSeconds(s, sys), 2),
        Mb(rss),
        Mb(static_cast<double>(s.vsize_bytes)),
        std::to_string(s.threads),
        p.io ? Fixed(static_cast<double>(p.io->read_bytes) / kMb, 3) : "",
        p.io ? Fixed(static_cast<double>(p.io->write_bytes) / kMb, 3) : "",
        Iso8601Utc(FromEpochSeconds(StartEpochSeconds(cur, s, sys))),
        Truncate(Printable(p.cmdline), kCmdlineMaxBytes),
    });
  }
  return out;
}

std::string ProcessListing(const Sample& cur, const SystemConstants& sys,
                           const UserNameFn& user_name) {
  std::string out = "# " + Iso8601Utc(cur.time) + "\n";
  out +=
      fmt::format("{:<12} {:>7} {:>5} {:>5} {:>9} {:>8} {:<8} {:<5} {:>5} {:>7} {}\n", "USER",
                  "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND");
  const double now = EpochSeconds(cur.time);
  const double mem_total_kb = static_cast<double>(cur.mem.total_kb);
  for (const ProcessInfo& p : cur.processes) {
    const ProcStat& s = p.stat;
    const double start = StartEpochSeconds(cur, s, sys);
    const double cpu_s = CpuSeconds(s, sys);
    const double elapsed = now - start;
    const double rss_kb = static_cast<double>(std::max<int64_t>(s.rss_pages, 0)) *
                          static_cast<double>(sys.page_size) / 1024;
    const std::string command = p.cmdline.empty() ? "[" + s.comm + "]" : p.cmdline;
    out += fmt::format("{:<12} {:>7} {:>5.1f} {:>5.1f} {:>9} {:>8.0f} {:<8} {:<5} {:>5} {:>7} {}\n",
                       user_name(p.uid), s.pid,
                       elapsed > 0 ? std::min(999.9, 100.0 * cpu_s / elapsed) : 0.0,
                       mem_total_kb > 0 ? 100.0 * rss_kb / mem_total_kb : 0.0, s.vsize_bytes / 1024,
                       rss_kb, TtyName(s.tty_nr), StatFlags(s), StartColumn(start, cur.time),
                       CpuTimeColumn(cpu_s), Printable(command));
  }
  return out;
}

std::string UserNames::operator()(uid_t uid) {
  auto it = cache_.find(uid);
  if (it != cache_.end()) return it->second;
  std::string name = std::to_string(uid);
  struct passwd pw;
  struct passwd* result = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr) {
    name = result->pw_name;
  }
  cache_.emplace(uid, name);
  return name;
}

}  // namespace parallelrun::rt
