#include "runtime/perf/proc_parse.h"

#include <charconv>

namespace parallelrun::rt {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Splits on runs of blanks.
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// Calls f(line) for each line (without its '\n'); stops when f returns false.
template <typename F>
void ForEachLine(std::string_view text, F f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!f(line)) return;
    if (nl == std::string_view::npos) return;
    text.remove_prefix(nl + 1);
  }
}

template <typename T>
bool ToNumber(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out = "\"";
  out += s.substr(0, kMax);
  if (s.size() > kMax) out += "...";
  return out + "\"";
}

}  // namespace

StatusOr<SystemStat> ParseSystemStat(std::string_view text) {
  SystemStat out;
  bool have_cpu = false;
  bool have_btime = false;
  Status error;
  ForEachLine(text, [&](std::string_view line) {
    if (StartsWith(line, "cpu ")) {
      auto f = Fields(line);
      if (f.size() < 5) {
        error = InvalidArgumentError("cpu line " + Quote(line) +
                                     ": expected at least 4 tick counts (user nice system idle)");
        return false;
      }
      // user nice system idle iowait irq softirq steal [guest guest_nice]
      for (size_t i = 1; i < f.size() && i <= 8; ++i) {
        uint64_t v = 0;
        if (!ToNumber(f[i], &v)) {
          error = InvalidArgumentError("cpu line " + Quote(line) + ": field " + std::to_string(i) +
                                       " is not a tick count");
          return false;
        }
        out.cpu.total += v;
        if (i == 4 || i == 5) out.cpu.idle += v;
      }
      have_cpu = true;
    } else if (StartsWith(line, "cpu")) {
      if (line.size() > 3 && line[3] >= '0' && line[3] <= '9') ++out.cpu_count;
    } else if (StartsWith(line, "btime ")) {
      auto f = Fields(line);
      if (f.size() != 2 || !ToNumber(f[1], &out.boot_time)) {
        error = InvalidArgumentError("btime line " + Quote(line) + ": expected `btime SECONDS`");
        return false;
      }
      have_btime = true;
    }
    return true;
  });
  if (!error.ok()) return error;
  if (!have_cpu) return InvalidArgumentError("expected an aggregate `cpu` line");
  if (!have_btime) return InvalidArgumentError("expected a `btime` line");
  return out;
}

StatusOr<MemInfo> ParseMemInfo(std::string_view text) {
  MemInfo out;
  bool have_total = false;
  bool have_available = false;
  uint64_t free_kb = 0, buffers_kb = 0, cached_kb = 0;
  Status error;
  ForEachLine(text, [&](std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return true;
    std::string_view key = line.substr(0, colon);
    uint64_t* target = nullptr;
    if (key == "MemTotal") {
      target = &out.total_kb;
      have_total = true;
    } else if (key == "MemAvailable") {
      target = &out.available_kb;
      have_available = true;
    } else if (key == "MemFree") {
      target = &free_kb;
    } else if (key == "Buffers") {
      target = &buffers_kb;
    } else if (key == "Cached") {
      target = &cached_kb;
    } else if (key == "SwapTotal") {
      target = &out.swap_total_kb;
    } else if (key == "SwapFree") {
      target = &out.swap_free_kb;
    } else {
      return true;
    }
    auto f = Fields(line.substr(colon + 1));
    if (f.empty() || !ToNumber(f[0], target)) {
      error = InvalidArgumentError(std::string(key) + " line " + Quote(line) +
                                   ": expected a number of kB");
      return false;
    }
    return true;
  });
  if (!error.ok()) return error;
  if (!have_total) return InvalidArgumentError("expected a MemTotal line");
  if (!have_available) out.available_kb = free_kb + buffers_kb + cached_kb;
  return out;
}

StatusOr<LoadAvg> ParseLoadAvg(std::string_view text) {
  auto f = Fields(text);
  LoadAvg out;
  if (f.size() < 3 || !ToNumber(f[0], &out.one) || !ToNumber(f[1], &out.five) ||
      !ToNumber(f[2], &out.fifteen)) {
    return InvalidArgumentError("got " + Quote(text) + ", expected three load averages");
  }
  return out;
}

StatusOr<NetTotals> ParseNetDev(std::string_view text) {
  NetTotals out;
  Status error;
  ForEachLine(text, [&](std::string_view line) {
    // The two header lines hold '|' and no "name:"; interface lines are "name: 16 numbers", and
    // large counters may leave no blank after the colon.
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return true;
    auto name = Fields(line.substr(0, colon));
    if (name.size() != 1) return true;
    auto f = Fields(line.substr(colon + 1));
    uint64_t recv = 0, sent = 0;
    if (f.size() < 16 || !ToNumber(f[0], &recv) || !ToNumber(f[8], &sent)) {
      error = InvalidArgumentError("interface line " + Quote(line) +
                                   ": expected 16 counters (receive bytes first, transmit bytes "
                                   "ninth)");
      return false;
    }
    if (name[0] == "lo") return true;
    out.recv_bytes += recv;
    out.sent_bytes += sent;
    return true;
  });
  if (!error.ok()) return error;
  return out;
}

std::vector<DiskStat> ParseDiskStats(std::string_view text) {
  std::vector<DiskStat> out;
  ForEachLine(text, [&](std::string_view line) {
    auto f = Fields(line);
    // major minor name reads reads_merged sectors_read ms_reading writes writes_merged
    // sectors_written ms_writing in_flight ms_io weighted_ms [discards ... flushes ...]
    DiskStat d;
    if (f.size() >= 14 && ToNumber(f[0], &d.major) && ToNumber(f[1], &d.minor) &&
        ToNumber(f[3], &d.reads) && ToNumber(f[5], &d.read_sectors) && ToNumber(f[7], &d.writes) &&
        ToNumber(f[9], &d.write_sectors)) {
      d.name = std::string(f[2]);
      out.push_back(std::move(d));
    }
    return true;
  });
  return out;
}

StatusOr<SockStat> ParseSockStat(std::string_view text) {
  SockStat out;
  Status error;
  ForEachLine(text, [&](std::string_view line) {
    auto f = Fields(line);
    if (f.empty()) return true;
    const bool tcp = f[0] == "TCP:" || f[0] == "TCP6:";
    const bool udp = f[0] == "UDP:" || f[0] == "UDP6:";
    if (!tcp && !udp) return true;
    // "TCP: inuse 3 orphan 0 tw 0 alloc 3 mem 0": name value pairs.
    for (size_t i = 1; i + 1 < f.size(); i += 2) {
      if (f[i] != "inuse" && !(tcp && f[i] == "tw")) continue;
      int64_t v = 0;
      if (!ToNumber(f[i + 1], &v)) {
        error = InvalidArgumentError("line " + Quote(line) + ": " + std::string(f[i]) +
                                     " is not a number");
        return false;
      }
      (tcp ? out.tcp : out.udp) += v;
    }
    return true;
  });
  if (!error.ok()) return error;
  return out;
}

StatusOr<ProcStat> ParseProcStat(std::string_view text) {
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return InvalidArgumentError("got " + Quote(text) + ", expected `pid (comm) state ...`");
  }
  ProcStat s;
  auto head = Fields(text.substr(0, open));
  if (head.size() != 1 || !ToNumber(head[0], &s.pid)) {
    return InvalidArgumentError("got " + Quote(text) + ", expected a pid before `(comm)`");
  }
  s.comm = std::string(text.substr(open + 1, close - open - 1));
  // Fields after the comm, numbered as in proc(5) minus 3: [0] is field 3 (state).
  auto f = Fields(text.substr(close + 1));
  if (f.size() < 22 || f[0].size() != 1) {
    return InvalidArgumentError("got " + Quote(text) +
                                ", expected at least 22 fields after `(comm)`, the first a state "
                                "letter");
  }
  s.state = f[0][0];
  bool ok = ToNumber(f[1], &s.ppid) && ToNumber(f[2], &s.pgrp) && ToNumber(f[3], &s.session) &&
            ToNumber(f[4], &s.tty_nr) && ToNumber(f[5], &s.tpgid) && ToNumber(f[11], &s.utime) &&
            ToNumber(f[12], &s.stime) && ToNumber(f[16], &s.nice) && ToNumber(f[17], &s.threads) &&
            ToNumber(f[19], &s.start_ticks) && ToNumber(f[20], &s.vsize_bytes) &&
            ToNumber(f[21], &s.rss_pages);
  if (!ok) {
    return InvalidArgumentError("got " + Quote(text) +
                                ", expected numbers in the ppid, tty, utime, stime, nice, "
                                "num_threads, starttime, vsize and rss fields");
  }
  return s;
}

StatusOr<ProcIo> ParseProcIo(std::string_view text) {
  ProcIo out;
  bool have_read = false, have_write = false;
  Status error;
  ForEachLine(text, [&](std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return true;
    std::string_view key = line.substr(0, colon);
    uint64_t* target = nullptr;
    if (key == "read_bytes") {
      target = &out.read_bytes;
      have_read = true;
    } else if (key == "write_bytes") {
      target = &out.write_bytes;
      have_write = true;
    } else {
      return true;
    }
    auto f = Fields(line.substr(colon + 1));
    if (f.size() != 1 || !ToNumber(f[0], target)) {
      error = InvalidArgumentError(std::string(key) + " line " + Quote(line) +
                                   ": expected a byte count");
      return false;
    }
    return true;
  });
  if (!error.ok()) return error;
  if (!have_read || !have_write) {
    return InvalidArgumentError("expected read_bytes and write_bytes lines");
  }
  return out;
}

std::string ParseCmdline(std::string_view text) {
  while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  std::string out(text);
  for (char& c : out) {
    if (c == '\0') c = ' ';
  }
  return out;
}

std::string FindEnviron(std::string_view text, std::string_view name) {
  while (!text.empty()) {
    size_t end = text.find('\0');
    std::string_view entry = text.substr(0, end);
    if (entry.size() > name.size() && entry[name.size()] == '=' && StartsWith(entry, name)) {
      return std::string(entry.substr(name.size() + 1));
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return "";
}

}  // namespace parallelrun::rt
