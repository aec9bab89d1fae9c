// csv_partition: how fast the partitioner cuts CSV into 1 MiB mini-batches (SPEC.md §9 asks for
// >= 500 MB/s per core), next to a plain memchr newline count over the same file in the same run.
//
//   csv_partition [--mb N] [--dir DIR] [--repeat N]
//
// Writes N MB (default 300) of quoted CSV (quoted fields holding commas, doubled quotes and
// newlines) into a fresh temporary folder under DIR (default $TMPDIR or /tmp), reads it once to
// warm the page cache, then times both scans in CPU time of the one thread (best of --repeat,
// default 3) and removes the folder. Exits 0 unless something could not be done.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/jobspec/job_spec.h"
#include "runtime/partitioner/partitioner.h"

namespace {

using parallelrun::rt::Input;
using parallelrun::rt::InputType;
using parallelrun::rt::JobSpec;
using parallelrun::rt::TabularFormat;

// CPU seconds of this thread (user + system): "per core" speed, unaffected by other processes
// taking turns on a busy machine.
double CpuNow() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double WallNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Writes about `bytes` of CSV; returns the number of data rows.
int64_t Generate(const std::string& path, int64_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  const char* const names[] = {"\"Doe, Jane\"", "\"Smith, John Jr.\"", "plain_name",
                               "\"O'Neil, Pat\"", "\"Lee\""};
  const char* const notes[] = {"\"said \"\"hello\"\" twice\"",
                               "\"line one\nline two\"",
                               "\"a, b, c\"",
                               "unquoted note text",
                               "\"\"",
                               "\"multi\r\nline, with \"\"quotes\"\" and, commas\"",
                               "\"nothing special here at all, really\""};
  std::minstd_rand rng(1);
  std::string buf = "id,name,note,score,tag\n";
  int64_t written = 0;
  int64_t rows = 0;
  char num[64];
  while (written + static_cast<int64_t>(buf.size()) < bytes) {
    std::snprintf(num, sizeof num, "%lld,", static_cast<long long>(rows++));
    buf += num;
    buf += names[rng() % 5];
    buf += ',';
    buf += notes[rng() % 7];
    std::snprintf(num, sizeof num, ",%u.%02u,tag%u\n", static_cast<unsigned>(rng() % 1000),
                  static_cast<unsigned>(rng() % 100), static_cast<unsigned>(rng() % 50));
    buf += num;
    if (buf.size() >= (4 << 20)) {
      std::fwrite(buf.data(), 1, buf.size(), f);
      written += static_cast<int64_t>(buf.size());
      buf.clear();
    }
  }
  std::fwrite(buf.data(), 1, buf.size(), f);
  std::fclose(f);
  return rows;
}

// Reads the whole file through a 1 MiB buffer, counting newlines with memchr.
int64_t CountNewlines(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(1 << 20);
  int64_t n = 0;
  ssize_t got;
  while ((got = ::read(fd, buf.data(), buf.size())) > 0) {
    const char* p = buf.data();
    const char* end = p + got;
    while ((p = static_cast<const char*>(std::memchr(p, '\n', end - p))) != nullptr) {
      ++n;
      ++p;
    }
  }
  ::close(fd);
  return n;
}

struct SplitResult {
  int64_t rows = 0;
  int64_t batches = 0;
};

SplitResult Split(const std::string& dir) {
  JobSpec spec;
  Input in;
  in.name = "table";
  in.type = InputType::kTabular;
  in.format = TabularFormat::kCsv;
  spec.inputs.push_back(in);
  spec.mini_batch_size = 1 << 20;
  auto p = parallelrun::rt::MakePartitioner(spec, {dir});
  if (!p.ok()) {
    std::fprintf(stderr, "csv_partition: %s\n", p.status().ToString().c_str());
    std::exit(1);
  }
  SplitResult r;
  while (true) {
    auto next = (*p)->Next();
    if (!next.ok()) {
      std::fprintf(stderr, "csv_partition: %s\n", next.status().ToString().c_str());
      std::exit(1);
    }
    if (!next->has_value()) break;
    r.rows += (*next)->items;
    ++r.batches;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 300;
  int repeat = 3;
  const char* tmp = std::getenv("TMPDIR");
  std::string parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mb" && i + 1 < argc) {
      mb = std::atof(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      parent = argv[++i];
    } else if (a == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: csv_partition [--mb N] [--dir DIR] [--repeat N]\n");
      return a == "--help" || a == "-h" ? 0 : 1;
    }
  }
  if (mb <= 0 || repeat < 1) {
    std::fprintf(stderr, "csv_partition: --mb must be > 0 and --repeat >= 1\n");
    return 1;
  }
  std::string tmpl = parent + "/csv_partition_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror(tmpl.c_str());
    return 1;
  }
  const std::string dir = tmpl;
  const std::string path = dir + "/data.csv";
  const int64_t rows = Generate(path, static_cast<int64_t>(mb * 1e6));
  const double size_mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
  CountNewlines(path);  // warm the page cache

  double best_split = 1e30, best_base = 1e30, best_split_wall = 1e30;
  SplitResult split;
  for (int i = 0; i < repeat; ++i) {
    const double t0 = CpuNow();
    CountNewlines(path);
    const double t1 = CpuNow();
    const double w1 = WallNow();
    split = Split(dir);
    const double t2 = CpuNow();
    best_split_wall = std::min(best_split_wall, WallNow() - w1);
    best_base = std::min(best_base, t1 - t0);
    best_split = std::min(best_split, t2 - t1);
  }
  std::filesystem::remove_all(dir);
  if (split.rows != rows) {
    std::fprintf(stderr,
                 "csv_partition: the splitter counted %lld rows, the generator wrote %lld\n",
                 static_cast<long long>(split.rows), static_cast<long long>(rows));
    return 1;
  }
  const double split_rate = size_mb / best_split;
  const double base_rate = size_mb / best_base;
  std::printf("csv_partition: %lld rows in %lld mini-batches of 1 MiB; best of %d; wall %.2f s\n",
              static_cast<long long>(split.rows), static_cast<long long>(split.batches), repeat,
              best_split_wall);
  std::printf(
      "csv_partition: %.1f MB in %.2f s = %.0f MB/s (baseline newline scan %.0f MB/s, ratio "
      "%.2f); target >= 500 MB/s\n",
      size_mb, best_split, split_rate, base_rate, split_rate / base_rate);
  return 0;
}
