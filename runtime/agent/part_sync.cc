#include "runtime/agent/part_sync.h"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

// Kernel AIO fsync (IOCB_CMD_FSYNC, Linux 4.18 and later): the fsyncs of one report are submitted
// in one io_submit and run concurrently by the kernel's workers, and the caller waits once in
// io_getevents, instead of waking a thread per file. On this machine's virtual disk a batch of 8
// took 0.5-0.7 ms and 11-18 us of the caller's CPU, against ~2 ms and most of a thread wake-up
// per file with threads. Where the kernel or a seccomp profile refuses it (io_setup or io_submit
// failing), or a file system cannot fsync through AIO (EINVAL), the threads do it instead.
class AioSync {
 public:
  static AioSync& Get() {
    static AioSync aio;
    return aio;
  }

  // Syncs fds[i] for every i of `todo`, its error into (*errors)[i]; what it could not submit is
  // left in *todo (for the threads). One batch at a time.
  void Sync(const std::vector<int>& fds, const std::vector<std::string>& paths,
            std::vector<size_t>* todo, std::vector<std::string>* errors) {
    std::lock_guard<std::mutex> one_batch(mu_);
    if (!ok_) return;
    std::vector<size_t> left;  // refused one by one (EINVAL: no fsync through AIO for that file)
    size_t next = 0;
    while (next < todo->size()) {
      const size_t n = std::min(todo->size() - next, kSlots);
      std::vector<iocb> cbs(n);
      std::vector<iocb*> ptrs(n);
      for (size_t k = 0; k < n; ++k) {
        std::memset(&cbs[k], 0, sizeof cbs[k]);
        cbs[k].aio_fildes = static_cast<uint32_t>(fds[(*todo)[next + k]]);
        cbs[k].aio_lio_opcode = IOCB_CMD_FSYNC;
        cbs[k].aio_data = (*todo)[next + k];
        ptrs[k] = &cbs[k];
      }
      const long submitted = ::syscall(SYS_io_submit, ctx_, static_cast<long>(n), ptrs.data());
      if (submitted < 0 && errno == EINVAL) {
        left.push_back((*todo)[next++]);  // the first one was refused: the threads sync it
        continue;
      }
      if (submitted <= 0) {
        // AIO refused (ENOSYS, EPERM: a seccomp profile) or busy: the threads take the rest, and
        // every later batch when it will never work.
        if (errno == ENOSYS || errno == EPERM) ok_ = false;
        break;
      }
      Wait(static_cast<size_t>(submitted), paths, errors);
      next += static_cast<size_t>(submitted);
    }
    left.insert(left.end(), todo->begin() + static_cast<std::ptrdiff_t>(next), todo->end());
    *todo = std::move(left);
  }

 private:
  static constexpr size_t kSlots = 128;

  AioSync() { ok_ = ::syscall(SYS_io_setup, static_cast<unsigned>(kSlots), &ctx_) == 0; }
  ~AioSync() {
    if (ok_) ::syscall(SYS_io_destroy, ctx_);
  }

  void Wait(size_t submitted, const std::vector<std::string>& paths,
            std::vector<std::string>* errors) {
    std::vector<io_event> events(submitted);
    size_t got = 0;
    while (got < submitted) {
      // All at once: one wake-up for the batch.
      const long left = static_cast<long>(submitted - got);
      const long n = ::syscall(SYS_io_getevents, ctx_, left, left, events.data(), nullptr);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // Cannot happen with a valid context; the fsyncs' outcome is unknown, so none counts.
        for (std::string& e : *errors) {
          if (e.empty()) e = Errno("cannot wait for the sync of a part file", "", errno);
        }
        return;
      }
      for (long k = 0; k < n; ++k) {
        const size_t i = events[static_cast<size_t>(k)].data;
        const auto res = events[static_cast<size_t>(k)].res;
        if (res != 0)
          (*errors)[i] = Errno("cannot sync part file", paths[i], static_cast<int>(-res));
      }
      got += static_cast<size_t>(n);
    }
  }

  std::mutex mu_;
  aio_context_t ctx_ = 0;
  bool ok_ = false;
};

// fsync of every open fd of `fds` (closed here), its error into (*errors)[i]: by kernel AIO, else
// at once from up to kMaxSyncThreads threads. Either way the device flushes concurrent fsyncs
// together (the block layer merges their cache flushes, a journal commits them in one
// transaction), while one after the other each waits for a flush of its own: ~4 ms each on a
// virtual disk, which made the communication loop wait ~40 ms for a report of ten parts.
void SyncAllAndClose(const std::vector<int>& fds, const std::vector<std::string>& paths,
                     std::vector<std::string>* errors) {
  std::vector<size_t> open;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] >= 0) open.push_back(i);
  }
  const std::vector<size_t> all = open;
  AioSync::Get().Sync(fds, paths, &open, errors);
  SyncThreads::Get().ForEach(open.size(), [&](size_t k) {
    const size_t i = open[k];
    const int rc = ::fsync(fds[i]);
    if (rc != 0) (*errors)[i] = Errno("cannot sync part file", paths[i], errno);
  });
  for (size_t i : all) ::close(fds[i]);
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
    }
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
