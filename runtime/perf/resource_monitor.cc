#include "runtime/perf/resource_monitor.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <utility>

namespace parallelrun::rt {
namespace {

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::vector<std::string> DiskPaths(const ResourceMonitorOptions& o) {
  if (!o.disk_paths.empty()) return o.disk_paths;
  return {Dirname(o.log_dir), "/"};
}

}  // namespace

ResourceMonitor::ResourceMonitor(ResourceMonitorOptions options, const Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      perf_dir_(JoinPath(options_.log_dir, "perf/" + options_.node)),
      root_pid_(options_.root_pid > 0 ? options_.root_pid : static_cast<int>(::getpid())),
      sys_(SystemConstants::Get()) {}

ResourceMonitor::~ResourceMonitor() { Stop(); }

void ResourceMonitor::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_ || stop_ || options_.interval_seconds <= 0) return;
    started_ = true;
  }
  // The first sample on the caller's thread: the baseline, before the caller starts anything.
  SampleNow().IgnoreError("SampleNow logs its failures");
  std::lock_guard<std::mutex> lock(mu_);
  if (!stop_) thread_ = std::thread([this] { Loop(); });
}

void ResourceMonitor::Stop() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    thread = std::move(thread_);  // one caller joins; a concurrent Stop() finds nothing to join
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

double ResourceMonitor::last_sample_cpu_seconds() const {
  std::lock_guard<std::mutex> lock(sample_mu_);
  return last_cpu_s_;
}

void ResourceMonitor::Loop() {
  // Waits are in real time (the Clock seam has no waiting); the Clock stamps the samples.
  using std::chrono::steady_clock;
  const auto interval = std::chrono::seconds(options_.interval_seconds);
  auto next = steady_clock::now() + interval;  // Start() took the first sample
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_until(lock, next, [&] { return stop_; })) {
    lock.unlock();
    SampleNow().IgnoreError("SampleNow logs its failures; the next sample may do better");
    lock.lock();
    next += interval;
    // After a stall longer than an interval (a suspended machine), start again from now rather
    // than catching up with a burst of samples.
    if (auto now = steady_clock::now(); next < now) next = now + interval;
  }
}

Status ResourceMonitor::SampleNow() {
  std::lock_guard<std::mutex> lock(sample_mu_);
  const double cpu_before = ThreadCpuSeconds();
  SampleOptions so;
  so.root_pid = root_pid_;
  so.fs_paths = DiskPaths(options_);
  Status st;
  auto sample = ReadSample(so, clock_);
  if (sample.ok()) {
    st = Write(*sample);
    prev_ = std::move(*sample);
  } else {
    st = sample.status();
  }
  last_cpu_s_ = ThreadCpuSeconds() - cpu_before;
  if (!st.ok()) {
    st = st.WithContext("resource monitor (" + perf_dir_ + ")");
    if (options_.log && st.message() != last_error_) {
      options_.log->warn("{}; logs/perf may miss samples", st.ToString());
    }
    last_error_ = st.message();
  } else {
    last_error_.clear();
    if (options_.log && prev_) {
      options_.log->debug("resource monitor: sample of {} processes took {:.1f} ms of CPU",
                          prev_->processes.size(), last_cpu_s_ * 1000);
    }
  }
  return st;
}

Status ResourceMonitor::OpenCsv(const std::string& name, const std::string& header,
                                AppendFile* file) {
  if (file->is_open()) return Status::Ok();
  const std::string path = JoinPath(perf_dir_, name);
  struct stat st;
  const bool fresh = ::stat(path.c_str(), &st) != 0 || st.st_size == 0;
  PR_ASSIGN_OR_RETURN(*file, AppendFile::Open(path));
  if (fresh) {
    Status s = file->Append(header);
    if (!s.ok()) {
      file->Close();  // so that the next sample tries the header again
      return s;
    }
  }
  return Status::Ok();
}

Status ResourceMonitor::Write(const Sample& sample) {
  const Sample* prev = prev_ ? &*prev_ : nullptr;
  Status first_error;
  auto note = [&](const Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };
  // Each file on its own: one that cannot be written does not keep the others empty.
  Status s = OpenCsv("node_resource_usage.csv", NodeUsageHeader(), &node_csv_);
  if (s.ok()) s = node_csv_.Append(NodeUsageRow(prev, sample));
  note(s);
  s = OpenCsv("node_disk_usage.csv", DiskUsageHeader(), &disk_csv_);
  if (s.ok()) s = disk_csv_.Append(DiskUsageRows(prev, sample));
  note(s);
  s = OpenCsv("processes_resource_usage.csv", ProcessUsageHeader(), &process_csv_);
  if (s.ok()) {
    s = process_csv_.Append(ProcessUsageRows(prev, sample, sys_, root_pid_, options_.root_label));
  }
  note(s);

  const std::string listing_path =
      JoinPath(perf_dir_, "os/" + FormatUtc(sample.time, "%Y%m%d%H") + "/processes_" +
                              FormatUtc(sample.time, "%M"));
  auto listing = AppendFile::Open(listing_path);
  if (listing.ok()) {
    note(listing->Append(
        ProcessListing(sample, sys_, [this](uid_t uid) { return user_names_(uid); })));
  } else {
    note(listing.status());
  }
  return first_error;
}

}  // namespace parallelrun::rt
