#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/perf/perf_tables.h"
#include "runtime/perf/proc_parse.h"
#include "runtime/perf/proc_sample.h"
#include "runtime/perf/resource_monitor.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

namespace parallelrun::rt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

constexpr auto kWait = 30s;  // generous: the machine is shared

// ---------------------------------------------------------------------------------------------
// Parsers

constexpr char kProcStat[] =
    "cpu  588120 10 65092 447222 1358 0 459 703 0 0\n"
    "cpu0 292085 0 30564 228120 247 0 71 363 0 0\n"
    "cpu1 296034 0 34527 219101 1110 0 387 340 0 0\n"
    "intr 1 2 3\n"
    "ctxt 12345\n"
    "btime 1795430575\n"
    "processes 9200\n"
    "procs_running 3\n";

TEST(ParseSystemStatTest, SumsTheAggregateLineAndCountsCpus) {
  auto s = ParseSystemStat(kProcStat);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->cpu.total, 588120u + 10 + 65092 + 447222 + 1358 + 0 + 459 + 703);
  EXPECT_EQ(s->cpu.idle, 447222u + 1358);
  EXPECT_EQ(s->cpu_count, 2);
  EXPECT_EQ(s->boot_time, 1795430575);
}

TEST(ParseSystemStatTest, GuestTimeIsNotCountedTwice) {
  auto s = ParseSystemStat("cpu 10 0 0 90 0 0 0 0 7 3\ncpu0 1\nbtime 5\n");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->cpu.total, 100u);
}

TEST(ParseSystemStatTest, OldKernelsWithFourCountersParse) {
  auto s = ParseSystemStat("cpu 1 2 3 4\nbtime 5\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->cpu.total, 10u);
  EXPECT_EQ(s->cpu.idle, 4u);
}

TEST(ParseSystemStatTest, RejectsBadInput) {
  struct Case {
    const char* name;
    const char* text;
    const char* error;
  } cases[] = {
      {"Empty", "", "expected an aggregate `cpu` line"},
      {"NoBtime", "cpu 1 2 3 4\n", "expected a `btime` line"},
      {"ShortCpu", "cpu 1 2 3\nbtime 5\n", "expected at least 4 tick counts"},
      {"NotANumber", "cpu 1 x 3 4\nbtime 5\n", "field 2 is not a tick count"},
      {"BadBtime", "cpu 1 2 3 4\nbtime soon\n", "expected `btime SECONDS`"},
  };
  for (const auto& c : cases) {
    auto s = ParseSystemStat(c.text);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_THAT(s.status().message(), HasSubstr(c.error)) << c.name;
  }
}

TEST(ParseMemInfoTest, ReadsTotalsAvailableAndSwap) {
  auto m = ParseMemInfo(
      "MemTotal:       24684084 kB\n"
      "MemFree:        20071420 kB\n"
      "MemAvailable:   22022524 kB\n"
      "Buffers:           51736 kB\n"
      "Cached:          2063384 kB\n"
      "SwapTotal:       1048576 kB\n"
      "SwapFree:         524288 kB\n"
      "HugePages_Total:       0\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->total_kb, 24684084u);
  EXPECT_EQ(m->available_kb, 22022524u);
  EXPECT_EQ(m->swap_total_kb, 1048576u);
  EXPECT_EQ(m->swap_free_kb, 524288u);
}

TEST(ParseMemInfoTest, WithoutMemAvailableFallsBackToFreeBuffersAndCached) {
  auto m = ParseMemInfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 3 kB\n");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->available_kb, 123u);
}

TEST(ParseMemInfoTest, RejectsBadInput) {
  struct Case {
    const char* name;
    const char* text;
    const char* error;
  } cases[] = {
      {"NoTotal", "MemFree: 1 kB\n", "expected a MemTotal line"},
      {"BadNumber", "MemTotal: lots kB\n", "MemTotal line"},
      {"NoNumber", "MemTotal:\n", "expected a number of kB"},
  };
  for (const auto& c : cases) {
    auto m = ParseMemInfo(c.text);
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_THAT(m.status().message(), HasSubstr(c.error)) << c.name;
  }
}

TEST(ParseLoadAvgTest, ReadsTheThreeAverages) {
  auto l = ParseLoadAvg("5.48 6.34 6.99 6/150 9112\n");
  ASSERT_TRUE(l.ok());
  EXPECT_DOUBLE_EQ(l->one, 5.48);
  EXPECT_DOUBLE_EQ(l->five, 6.34);
  EXPECT_DOUBLE_EQ(l->fifteen, 6.99);
  EXPECT_FALSE(ParseLoadAvg("5.48 high\n").ok());
}

TEST(ParseNetDevTest, SumsInterfacesButLoopback) {
  auto n = ParseNetDev(
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo: 45129766  242867    0    0    0     0          0         0 45129766  242867    0 "
      "   0    0     0       0          0\n"
      "  eth0: 28674941     764    0    0    0     0          0         0    40366     465    0 "
      "   0    0     0       0          0\n"
      "eth1:1000 1 0 0 0 0 0 0 2000 1 0 0 0 0 0 0\n");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->recv_bytes, 28674941u + 1000);
  EXPECT_EQ(n->sent_bytes, 40366u + 2000);
}

TEST(ParseNetDevTest, RejectsAShortInterfaceLine) {
  auto n = ParseNetDev("eth0: 1 2 3\n");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("expected 16 counters"));
}

TEST(ParseDiskStatsTest, ReadsDevicesOfEveryKernelVersionAndSkipsShortLines) {
  auto d = ParseDiskStats(
      "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n"
      " 254       0 vda 170347 16564 8650322 319958 188619 106078 41772584 265617 0 60744 604705 "
      "76717 44 33176888 15649 35691 3479\n"
      " 254       1 vda1 10 0 80 1 20 0 160 2 0 3 3\n"
      "   8       0 sda 1 2\n");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[1].name, "vda");
  EXPECT_EQ(d[1].major, 254u);
  EXPECT_EQ(d[1].minor, 0u);
  EXPECT_EQ(d[1].reads, 170347u);
  EXPECT_EQ(d[1].read_sectors, 8650322u);
  EXPECT_EQ(d[1].writes, 188619u);
  EXPECT_EQ(d[1].write_sectors, 41772584u);
  EXPECT_EQ(d[2].name, "vda1");
  EXPECT_EQ(d[2].write_sectors, 160u);
}

TEST(ParseSockStatTest, CountsTcpInUseAndTimeWaitAndUdpInUse) {
  auto v4 = ParseSockStat(
      "sockets: used 17\n"
      "TCP: inuse 3 orphan 1 tw 4 alloc 9 mem 2\n"
      "UDP: inuse 2 mem 0\n"
      "UDPLITE: inuse 7\n"
      "RAW: inuse 5\n"
      "FRAG: inuse 0 memory 0\n");
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  EXPECT_EQ(v4->tcp, 7);
  EXPECT_EQ(v4->udp, 2);
  auto v6 = ParseSockStat("TCP6: inuse 1\nUDP6: inuse 3\nUDPLITE6: inuse 0\n");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->tcp, 1);
  EXPECT_EQ(v6->udp, 3);
  auto bad = ParseSockStat("TCP: inuse many\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("inuse is not a number"));
}

constexpr char kCatStat[] =
    "9117 (cat) R 9106 9106 6324 34817 9117 4194304 100 0 0 0 7 3 0 0 20 0 1 0 552148 3133440 "
    "412 18446744073709551615 94822415847424 94822415867305 140731370138080 0 0 0 0 0 0 0 0 0 "
    "17 0 0 0 0 0 0\n";

TEST(ParseProcStatTest, ReadsTheFieldsTheTablesUse) {
  auto s = ParseProcStat(kCatStat);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->pid, 9117);
  EXPECT_EQ(s->comm, "cat");
  EXPECT_EQ(s->state, 'R');
  EXPECT_EQ(s->ppid, 9106);
  EXPECT_EQ(s->pgrp, 9106);
  EXPECT_EQ(s->session, 6324);
  EXPECT_EQ(s->tty_nr, 34817);
  EXPECT_EQ(s->tpgid, 9117);
  EXPECT_EQ(s->utime, 7u);
  EXPECT_EQ(s->stime, 3u);
  EXPECT_EQ(s->nice, 0);
  EXPECT_EQ(s->threads, 1);
  EXPECT_EQ(s->start_ticks, 552148u);
  EXPECT_EQ(s->vsize_bytes, 3133440u);
  EXPECT_EQ(s->rss_pages, 412);
}

TEST(ParseProcStatTest, CommandNamesWithSpacesAndParenthesesDoNotShiftFields) {
  auto s = ParseProcStat(
      "42 (a) R (b c) S 1 42 42 0 -1 4194560 0 0 0 0 5 6 0 0 39 19 4 0 100 2000 30 0 0\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->comm, "a) R (b c");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->tpgid, -1);
  EXPECT_EQ(s->nice, 19);
  EXPECT_EQ(s->threads, 4);
}

TEST(ParseProcStatTest, RejectsBadInput) {
  struct Case {
    const char* name;
    const char* text;
    const char* error;
  } cases[] = {
      {"Empty", "", "expected `pid (comm) state ...`"},
      {"NoPid", "(cat) R 1 2 3", "expected a pid"},
      {"Truncated", "1 (cat) R 1 2 3", "expected at least 22 fields"},
      {"LongState", "1 (cat) RR 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21",
       "the first a state letter"},
      {"NotANumber", "1 (cat) R x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21",
       "expected numbers"},
  };
  for (const auto& c : cases) {
    auto s = ParseProcStat(c.text);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_THAT(s.status().message(), HasSubstr(c.error)) << c.name;
  }
}

TEST(ParseProcIoTest, ReadsStorageBytes) {
  auto io = ParseProcIo(
      "rchar: 6976\nwchar: 10\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192\n"
      "cancelled_write_bytes: 0\n");
  ASSERT_TRUE(io.ok());
  EXPECT_EQ(io->read_bytes, 4096u);
  EXPECT_EQ(io->write_bytes, 8192u);
  EXPECT_FALSE(ParseProcIo("rchar: 1\n").ok());
  EXPECT_FALSE(ParseProcIo("read_bytes: x\nwrite_bytes: 1\n").ok());
}

TEST(ParseCmdlineTest, JoinsArgumentsWithSpaces) {
  using namespace std::string_view_literals;
  EXPECT_EQ(ParseCmdline("python3\0-c\0print(1)\0"sv), "python3 -c print(1)");
  EXPECT_EQ(ParseCmdline("sleep\0"
                         "60"sv),
            "sleep 60");
  EXPECT_EQ(ParseCmdline(""), "");
}

TEST(FindEnvironTest, FindsTheExactName) {
  using namespace std::string_view_literals;
  constexpr auto env = "PATH=/bin\0PARALLELRUN_PROCESS_X=no\0PARALLELRUN_PROCESS=process003\0"sv;
  EXPECT_EQ(FindEnviron(env, "PARALLELRUN_PROCESS"), "process003");
  EXPECT_EQ(FindEnviron(env, "PATH"), "/bin");
  EXPECT_EQ(FindEnviron(env, "HOME"), "");
  EXPECT_EQ(FindEnviron("", "HOME"), "");
}

// ---------------------------------------------------------------------------------------------
// Process trees

ProcessInfo Proc(int pid, int ppid) {
  ProcessInfo p;
  p.stat.pid = pid;
  p.stat.ppid = ppid;
  p.stat.comm = "p" + std::to_string(pid);
  p.stat.state = 'S';
  return p;
}

TEST(DescendantsOfTest, FollowsPpidChains) {
  std::vector<ProcessInfo> ps = {Proc(1, 0),   Proc(2, 0),   Proc(10, 1), Proc(11, 10),
                                 Proc(12, 10), Proc(13, 12), Proc(20, 1), Proc(21, 20)};
  EXPECT_THAT(DescendantsOf(ps, 10), ElementsAre(10, 11, 12, 13));
  EXPECT_THAT(DescendantsOf(ps, 13), ElementsAre(13));
  EXPECT_THAT(DescendantsOf(ps, 99), IsEmpty());
}

TEST(DescendantsOfTest, APpidCycleEnds) {
  std::vector<ProcessInfo> ps = {Proc(5, 6), Proc(6, 5), Proc(7, 6)};
  EXPECT_THAT(DescendantsOf(ps, 5), ElementsAre(5, 6, 7));
}

// ---------------------------------------------------------------------------------------------
// Tables

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

size_t CountColumns(const std::string& csv_line) {
  size_t n = 1;
  bool quoted = false;
  for (char c : csv_line) {
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted) ++n;
  }
  return n;
}

constexpr int64_t kBoot = 1795430575;  // 2026-11-23T...; the samples are a day later
const SystemConstants kSys{100, 4096};

Sample BaseSample(double seconds_after_boot) {
  Sample s;
  s.time = SystemTime(std::chrono::seconds(kBoot)) +
           std::chrono::milliseconds(static_cast<int64_t>(seconds_after_boot * 1000));
  s.steady = SteadyTime(std::chrono::milliseconds(static_cast<int64_t>(seconds_after_boot * 1000)));
  s.stat.cpu_count = 2;
  s.stat.boot_time = kBoot;
  s.mem = {8 * 1024 * 1024, 6 * 1024 * 1024, 1024 * 1024, 1024 * 1024};  // kB
  s.load = LoadAvg{1.5, 1.25, 1};
  s.net = NetTotals{0, 0};
  s.tcp_sockets = 3;
  s.udp_sockets = 0;
  return s;
}

TEST(NodeUsageRowTest, FirstRowHasNoRates) {
  Sample s = BaseSample(86400);
  s.stat.cpu = {1000, 400};
  std::string row = NodeUsageRow(nullptr, s);
  EXPECT_EQ(row,
            "2026-11-24T10:42:55.000Z,,,2,1.50,1.25,1.00,8192.0,6144.0,2048.0,25.0,0.0,,,,,,,3,0,"
            "0\n");
  EXPECT_EQ(CountColumns(row), CountColumns(NodeUsageHeader()));
}

TEST(NodeUsageRowTest, SecondRowHasCpuPercentAndCountersOverTheInterval) {
  Sample a = BaseSample(86400);
  a.stat.cpu = {1000, 400};
  a.net = NetTotals{1 << 20, 0};
  a.disk_io = {10, 20, 0, 0};
  a.processes = {Proc(1, 0)};
  Sample b = BaseSample(86402.5);
  b.stat.cpu = {1500, 700};  // 500 ticks, 300 idle: 40% busy
  b.net = NetTotals{3 << 20, 1 << 19};
  b.disk_io = {15, 20, 2 << 20, 5 << 20};
  b.mem.swap_free_kb = 512 * 1024;
  b.processes = {Proc(1, 0), Proc(2, 0)};
  EXPECT_EQ(NodeUsageRow(&a, b),
            "2026-11-24T10:42:57.500Z,2.500,40.0,2,1.50,1.25,1.00,8192.0,6144.0,2048.0,25.0,512.0,"
            "5,0,2.000,5.000,2.000,0.500,3,0,2\n");
}

TEST(NodeUsageRowTest, CountersThatWentBackwardsLeaveTheCellEmpty) {
  Sample a = BaseSample(86400);
  a.net = NetTotals{5 << 20, 5 << 20};
  Sample b = BaseSample(86401);
  b.net = NetTotals{1 << 20, 6 << 20};  // an interface went away
  auto cells = Lines(NodeUsageRow(&a, b));
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_THAT(cells[0], HasSubstr(",,1.000,3,0,0"));
}

TEST(NodeUsageRowTest, MissingOptionalFilesLeaveCellsEmpty) {
  Sample s = BaseSample(86400);
  s.load.reset();
  s.net.reset();
  s.tcp_sockets = -1;
  s.udp_sockets = -1;
  EXPECT_EQ(NodeUsageRow(nullptr, s),
            "2026-11-24T10:42:55.000Z,,,2,,,,8192.0,6144.0,2048.0,25.0,0.0,,,,,,,,,0\n");
}

TEST(DiskUsageRowsTest, OneRowPerPathWithDeviceDeltas) {
  auto fs = [](uint64_t reads, uint64_t read_sectors) {
    FsUsage u;
    u.path = "/out";
    u.ok = true;
    u.total_bytes = 100ull << 30;
    u.used_bytes = 30ull << 30;
    u.avail_bytes = 60ull << 30;  // 10 GiB reserved for root
    DiskStat d;
    d.major = 254;
    d.name = "vda";
    d.reads = reads;
    d.read_sectors = read_sectors;
    d.writes = 7;
    d.write_sectors = 2048;
    u.device = d;
    return u;
  };
  FsUsage overlay;
  overlay.path = "/";
  overlay.ok = true;
  overlay.total_bytes = overlay.avail_bytes = 1ull << 30;
  FsUsage missing;
  missing.path = "/gone";
  missing.error = "No such file or directory";

  Sample a = BaseSample(86400);
  a.filesystems = {fs(100, 0), overlay, missing};
  Sample b = BaseSample(86401);
  b.filesystems = {fs(150, 4096), overlay, missing};
  EXPECT_EQ(DiskUsageRows(nullptr, a),
            "2026-11-24T10:42:55.000Z,/out,vda,100.00,30.00,60.00,33.3,,,,\n"
            "2026-11-24T10:42:55.000Z,/,,1.00,0.00,1.00,0.0,,,,\n"
            "2026-11-24T10:42:55.000Z,/gone,,,,,,,,,\n");
  auto rows = Lines(DiskUsageRows(&a, b));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], "2026-11-24T10:42:56.000Z,/out,vda,100.00,30.00,60.00,33.3,50,0,2.000,0.000");
  for (const auto& row : rows) EXPECT_EQ(CountColumns(row), CountColumns(DiskUsageHeader()));
}

ProcessInfo Watched(int pid, int ppid, uint64_t cpu_ticks, uint64_t start_ticks) {
  ProcessInfo p = Proc(pid, ppid);
  p.watched = true;
  p.stat.utime = cpu_ticks;
  p.stat.start_ticks = start_ticks;
  p.stat.rss_pages = 256;  // 1 MB
  p.stat.vsize_bytes = 10 << 20;
  p.stat.threads = 3;
  return p;
}

TEST(ProcessUsageRowsTest, WatchedProcessesWithCpuOverTheInterval) {
  Sample a = BaseSample(86400);
  a.processes = {Proc(1, 0), Watched(100, 1, 500, 1000), Watched(101, 100, 0, 2000)};
  Sample b = BaseSample(86402);
  ProcessInfo worker = Watched(101, 100, 300, 2000);  // 3 s of CPU in 2 s: 150%
  worker.process_name = "process000";
  worker.cmdline = "python3 -c \"a, b\"\nprint(1)";
  worker.io = ProcIo{1 << 20, 3 << 19};
  ProcessInfo reused = Watched(102, 100, 10, 9000);
  b.processes = {Proc(1, 0), Watched(100, 1, 600, 1000), worker, reused};
  a.processes.push_back(Watched(102, 100, 0, 3000));  // same pid, another process

  EXPECT_EQ(ProcessUsageRows(&a, b, kSys, 100, "agent"),
            "2026-11-24T10:42:57.000Z,100,1,agent,p100,S,50.0,6.00,1.0,10.0,3,,,"
            "2026-11-23T10:43:05.000Z,\n"
            "2026-11-24T10:42:57.000Z,101,100,process000,p101,S,150.0,3.00,1.0,10.0,3,1.000,"
            "1.500,2026-11-23T10:43:15.000Z,\"python3 -c \"\"a, b\"\"?print(1)\"\n"
            "2026-11-24T10:42:57.000Z,102,100,,p102,S,,0.10,1.0,10.0,3,,,"
            "2026-11-23T10:44:25.000Z,\n");
  auto first = Lines(ProcessUsageRows(nullptr, a, kSys, 100, "agent"));
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0],
            "2026-11-24T10:42:55.000Z,100,1,agent,p100,S,,5.00,1.0,10.0,3,,,"
            "2026-11-23T10:43:05.000Z,");
  EXPECT_EQ(CountColumns(first[0]), CountColumns(ProcessUsageHeader()));
}

TEST(ProcessUsageRowsTest, LongCommandLinesAreCutWithoutSplittingCharacters) {
  Sample s = BaseSample(86400);
  ProcessInfo p = Watched(100, 1, 0, 0);
  p.cmdline = std::string(kCmdlineMaxBytes - 1, 'x') + "\xc3\xa9tail";  // é across the limit
  s.processes = {p};
  auto rows = Lines(ProcessUsageRows(nullptr, s, kSys, 100, "agent"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0], ::testing::EndsWith("," + std::string(kCmdlineMaxBytes - 1, 'x')));
}

TEST(ProcessListingTest, LooksLikePsAux) {
  Sample s = BaseSample(86400);
  ProcessInfo init = Proc(1, 0);
  init.stat.session = 1;
  init.stat.utime = 6100;  // 61 s of CPU
  init.stat.rss_pages = 2560;
  init.stat.vsize_bytes = 100 << 20;
  init.cmdline = "/sbin/init splash";
  ProcessInfo kthread = Proc(2, 0);
  kthread.stat.comm = "kthreadd";
  kthread.stat.state = 'I';
  kthread.stat.nice = -20;
  ProcessInfo shell = Proc(300, 1);
  shell.uid = 1000;
  shell.stat.tty_nr = 34817;  // pts/1
  shell.stat.pgrp = 300;
  shell.stat.tpgid = 300;
  shell.stat.session = 300;
  shell.stat.threads = 2;
  shell.stat.start_ticks = (86400 - 3600) * 100;  // an hour ago
  shell.cmdline = "bash -c line1\nline2";
  s.processes = {init, kthread, shell};
  auto names = [](uid_t uid) { return uid == 0 ? std::string("root") : std::to_string(uid); };
  auto lines = Lines(ProcessListing(s, kSys, names));
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "# 2026-11-24T10:42:55.000Z");
  EXPECT_EQ(lines[1],
            "USER             PID  %CPU  %MEM       VSZ      RSS TTY      STAT  START    TIME "
            "COMMAND");
  EXPECT_EQ(lines[2],
            "root               1   0.1   0.1    102400    10240 ?        Ss    Nov23    1:01 "
            "/sbin/init splash");
  EXPECT_EQ(lines[3],
            "root               2   0.0   0.0         0        0 ?        I<    Nov23    0:00 "
            "[kthreadd]");
  EXPECT_EQ(lines[4],
            "1000             300   0.0   0.0         0        0 pts/1    Ssl+  09:42    0:00 "
            "bash -c line1?line2");
}

TEST(UserNamesTest, NamesRootAndNumbersUnknownUids) {
  UserNames names;
  EXPECT_EQ(names(0), "root");
  EXPECT_EQ(names(2147483000), "2147483000");
}

// ---------------------------------------------------------------------------------------------
// The monitor on the real /proc

class ResourceMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    std::filesystem::create_directories(dir_ / "logs");
  }

  ResourceMonitorOptions Options(int interval) {
    ResourceMonitorOptions o;
    o.node = "127.0.0.1";
    o.log_dir = (dir_ / "logs").string();
    o.interval_seconds = interval;
    return o;
  }
  std::string Read(const std::string& path) {
    auto text = ReadFile(path);
    return text.ok() ? *text : "";
  }
  // Lines of `file` once it has at least `n`, or what it has after kWait.
  std::vector<std::string> WaitForLines(const std::string& file, size_t n) {
    std::vector<std::string> lines;
    // Polling a file: there is nothing to wait on.
    fakes::WaitFor(
        [&] {
          lines = Lines(Read(file));
          return lines.size() >= n;
        },
        kWait, 50ms);
    return lines;
  }

  fakes::TempDir tmp_{"perf_test"};
  std::filesystem::path dir_;
};

TEST_F(ResourceMonitorTest, SamplesAtOnceAndThenEveryInterval) {
  // A child with a worker's environment: it must be watched and named after its process.
  SpawnOptions so;
  so.argv = {"sleep", "60"};
  so.env = {"PARALLELRUN_PROCESS=process007"};
  auto child = Spawn(so);
  ASSERT_TRUE(child.ok()) << child.status().ToString();

  ResourceMonitorOptions o = Options(1);
  o.root_label = "test";
  ResourceMonitor monitor(o, RealClock::Get());
  const std::string perf = (dir_ / "logs/perf/127.0.0.1").string();
  EXPECT_EQ(monitor.perf_dir(), perf);
  monitor.Start();
  auto node = WaitForLines(perf + "/node_resource_usage.csv", 3);
  monitor.Stop();
  ::kill(*child, SIGKILL);
  Wait(*child);

  ASSERT_GE(node.size(), 3u);
  EXPECT_EQ(node[0] + "\n", NodeUsageHeader());
  EXPECT_EQ(CountColumns(node[2]), CountColumns(node[0]));
  // The second sample has an interval close to 1 s and a CPU percentage.
  auto cells = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream in(line);
    for (std::string cell; std::getline(in, cell, ',');) out.push_back(cell);
    return out;
  };
  auto second = cells(node[2]);
  ASSERT_GE(second.size(), 3u);
  EXPECT_GT(std::stod(second[1]), 0.5);
  EXPECT_FALSE(second[2].empty());

  auto disk = Lines(Read(perf + "/node_disk_usage.csv"));
  ASSERT_GE(disk.size(), 5u);  // header, then two paths per sample
  EXPECT_EQ(disk[0] + "\n", DiskUsageHeader());
  EXPECT_THAT(disk[1], HasSubstr("," + dir_.string() + ","));
  EXPECT_THAT(disk[2], HasSubstr(",/,"));

  const std::string processes = Read(perf + "/processes_resource_usage.csv");
  auto process_lines = Lines(processes);
  ASSERT_GE(process_lines.size(), 3u);
  EXPECT_EQ(process_lines[0] + "\n", ProcessUsageHeader());
  EXPECT_THAT(processes, HasSubstr("," + std::to_string(::getpid()) + "," +
                                   std::to_string(::getppid()) + ",test,perf_test,"));
  EXPECT_THAT(processes, HasSubstr("," + std::to_string(*child) + "," + std::to_string(::getpid()) +
                                   ",process007,sleep,"));

  // The ps-like listings: at least one file, holding this process.
  bool found = false;
  for (const auto& hour : std::filesystem::directory_iterator(perf + "/os")) {
    EXPECT_EQ(hour.path().filename().string().size(), 10u);  // YYYYmmddHH
    for (const auto& minute : std::filesystem::directory_iterator(hour)) {
      EXPECT_THAT(minute.path().filename().string(),
                  ::testing::MatchesRegex("processes_[0-5][0-9]"));
      const std::string text = Read(minute.path().string());
      EXPECT_THAT(text, ::testing::StartsWith("# "));
      found |= text.find(" " + std::to_string(*child) + " ") != std::string::npos;
    }
  }
  EXPECT_TRUE(found);
}

// The agent starts its monitor before its workers: the first sample is the node without them.
TEST_F(ResourceMonitorTest, StartWritesTheFirstSampleBeforeItReturns) {
  ResourceMonitor monitor(Options(600), RealClock::Get());
  monitor.Start();
  const std::string node = monitor.perf_dir() + "/node_resource_usage.csv";
  ASSERT_TRUE(PathExists(node));
  EXPECT_EQ(Lines(Read(node)).size(), 2u);  // the header and the first sample, no waiting
  monitor.Stop();
  EXPECT_EQ(Lines(Read(node)).size(), 2u);  // the next one is an interval away
}

TEST_F(ResourceMonitorTest, IntervalZeroWritesNothing) {
  ResourceMonitor monitor(Options(0), RealClock::Get());
  monitor.Start();
  monitor.Stop();
  EXPECT_FALSE(PathExists((dir_ / "logs/perf").string()));
}

TEST_F(ResourceMonitorTest, StopReturnsPromptlyDuringALongInterval) {
  ResourceMonitor monitor(Options(600), RealClock::Get());
  monitor.Start();
  WaitForLines(monitor.perf_dir() + "/node_resource_usage.csv", 2);
  auto t0 = std::chrono::steady_clock::now();
  monitor.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(Lines(Read(monitor.perf_dir() + "/node_resource_usage.csv")).size(), 2u);
}

TEST_F(ResourceMonitorTest, ARestartedMonitorAppendsWithoutASecondHeader) {
  for (int i = 0; i < 2; ++i) {
    ResourceMonitor monitor(Options(600), RealClock::Get());
    ASSERT_TRUE(monitor.SampleNow().ok());
  }
  const std::string perf = (dir_ / "logs/perf/127.0.0.1").string();
  for (const char* file :
       {"node_resource_usage.csv", "node_disk_usage.csv", "processes_resource_usage.csv"}) {
    auto lines = Lines(Read(perf + "/" + file));
    ASSERT_GE(lines.size(), 3u) << file;
    EXPECT_EQ(std::count(lines.begin(), lines.end(), lines[0]), 1) << file;
  }
}

TEST_F(ResourceMonitorTest, AnUnwritableFolderIsAnErrorNamingIt) {
  ResourceMonitorOptions o = Options(600);
  o.log_dir = (dir_ / "not-a-folder").string();
  { std::ofstream(o.log_dir) << "x"; }
  ResourceMonitor monitor(o, RealClock::Get());
  Status st = monitor.SampleNow();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(o.log_dir + "/perf/127.0.0.1"));
}

}  // namespace
}  // namespace parallelrun::rt
