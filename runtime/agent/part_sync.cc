#include "runtime/agent/part_sync.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "runtime/agent/agent_impl.h"

namespace parallelrun::rt {
namespace {

std::string Errno(const std::string& what, const std::string& path, int e) {
  return what + " " + path + ": " + std::strerror(e);
}

// The most fsyncs in flight at once (one thread each, the caller's included).
constexpr size_t kMaxSyncThreads = 16;

int OpenPart(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }

// fsync of an open part file (closed here). "" or the error.
std::string SyncAndClose(int fd, const std::string& path) {
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  return rc == 0 ? "" : Errno("cannot sync part file", path, e);
}

// Threads that run fsyncs for SyncPartFiles, made on first use and kept for the process's life:
// a report every few attempts would otherwise create and end up to 15 threads each time.
class SyncThreads {
 public:
  static SyncThreads& Get() {
    static SyncThreads threads;
    return threads;
  }

  // Calls fn(i) for every i in [0, n), from up to kMaxSyncThreads threads at once (the caller's
  // included); returns when all calls have returned. One batch at a time.
  void ForEach(size_t n, const std::function<void(size_t)>& fn) {
    std::lock_guard<std::mutex> one_batch(batch_mu_);
    std::unique_lock<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = 0;
    ++generation_;
    const size_t helpers = std::min(n, kMaxSyncThreads) - (n > 0 ? 1 : 0);
    while (threads_.size() < helpers) {
      try {
        threads_.emplace_back([this, gen = generation_ - 1] { Loop(gen); });
      } catch (const std::system_error&) {
        break;  // no more threads now: the ones there (and this one) do the work
      }
    }
    for (size_t i = 0; i < helpers; ++i) work_cv_.notify_one();
    lock.unlock();
    Work();
    lock.lock();
    done_cv_.wait(lock, [&] { return active_ == 0; });
    fn_ = nullptr;
  }

  ~SyncThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  SyncThreads() = default;

  void Work() {
    for (size_t i = next_++; i < n_; i = next_++) (*fn_)(i);
  }

  void Loop(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      work_cv_.wait(lock, [&] { return stop_ || (fn_ != nullptr && generation_ != seen); });
      if (stop_) return;
      seen = generation_;
      ++active_;
      lock.unlock();
      Work();
      lock.lock();
      if (--active_ == 0) done_cv_.notify_all();
    }
  }

  std::mutex batch_mu_;  // one ForEach at a time
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t)>* fn_ = nullptr;  // the batch, while one runs
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  uint64_t generation_ = 0;  // batches started
  int active_ = 0;           // helpers working on the current batch
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// fsync of every open fd of `fds` (closed here), its error into (*errors)[i]. The fsyncs run at
// once, from up to kMaxSyncThreads threads: a device flushes concurrent fsyncs together (the block
// layer merges their cache flushes, a journal commits them in one transaction), while one after
// the other each waits for a flush of its own: ~4 ms each on a virtual disk, which made the
// communication loop wait ~40 ms for a report of ten parts.
void SyncAllAndClose(const std::vector<int>& fds, const std::vector<std::string>& paths,
                     std::vector<std::string>* errors) {
  std::vector<size_t> open;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] >= 0) open.push_back(i);
  }
  SyncThreads::Get().ForEach(open.size(), [&](size_t k) {
    const size_t i = open[k];
    (*errors)[i] = SyncAndClose(fds[i], paths[i]);
  });
}

}  // namespace

std::vector<std::string> SyncPartFiles(const std::vector<std::string>& parts, bool headers) {
  std::vector<std::string> paths;
  for (const std::string& p : parts) {
    paths.push_back(p);
    if (headers) paths.push_back(p + ".header");
  }
  std::vector<int> fds(paths.size(), -1);
  std::vector<std::string> path_errors(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    fds[i] = OpenPart(paths[i]);
    if (fds[i] < 0) {
      // A DataFrame part has a header companion; a list's has none.
      if (!(headers && i % 2 == 1 && errno == ENOENT)) {
        path_errors[i] = Errno("cannot open part file", paths[i], errno);
      }
      continue;
    }
    // Start the write-back of every file first, so that the fsyncs below overlap their I/O.
    if (paths.size() > 1) (void)::sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE);
  }
  SyncAllAndClose(fds, paths, &path_errors);
  std::vector<std::string> errors(parts.size());
  const size_t per_part = headers ? 2 : 1;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (errors[i / per_part].empty()) errors[i / per_part] = path_errors[i];
  }
  return errors;
}

void Agent::Impl::SyncPartsLocked(Talk& talk) {
  mu_.unlock();
  const std::vector<std::string> errors =
      SyncPartFiles(talk.to_sync, base_config_.append_row_header);
  mu_.lock();
  std::map<std::string, std::string> failed;
  for (size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i].empty()) failed[talk.to_sync[i]] = errors[i];
  }
  for (size_t i = 0; i < talk.sent.size(); ++i) {
    auto it = unacked_.find(talk.sent[i]);
    if (it == unacked_.end() || it->second.durable) continue;
    it->second.durable = true;
    auto f = failed.find(it->second.part_file);
    if (f == failed.end()) continue;
    // Not durable: the attempt failed (the coordinator retries the mini-batch elsewhere).
    protocol::AttemptResult& r = it->second.result;
    r.status = AttemptStatusName(AttemptStatus::kRunException);
    r.succeeded = 0;
    r.failed = r.total;
    r.error = "the part file of this attempt cannot be made durable: " + f->second;
    log_->error("mini-batch {} attempt {}: {}", r.mini_batch_id, r.attempt, r.error);
    talk.report.results[i] = r;
  }
}

}  // namespace parallelrun::rt
