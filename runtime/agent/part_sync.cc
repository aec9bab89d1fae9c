#include "runtime/agent/part_sync.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include "runtime/agent/agent_impl.h"

namespace parallelrun::rt {
namespace {

std::string Errno(const std::string& what, const std::string& path, int e) {
  return what + " " + path + ": " + std::strerror(e);
}

// fsync of `path` and of `path`.header when that exists. "" or the error.
std::string SyncOne(const std::string& path) {
  for (const std::string& p : {path, path + ".header"}) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (p != path && errno == ENOENT) continue;  // no header companion
      return Errno("cannot open part file", p, errno);
    }
    const int rc = ::fsync(fd);
    const int e = errno;
    ::close(fd);
    if (rc != 0) return Errno("cannot sync part file", p, e);
  }
  return "";
}

}  // namespace

std::vector<std::string> SyncPartFiles(const std::vector<std::string>& paths) {
  std::vector<std::string> errors(paths.size());
  if (paths.size() == 1) {
    errors[0] = SyncOne(paths[0]);
    return errors;
  }
  // Start the write-back of every file first, so that their blocks are allocated in the same
  // journal transaction: the first fsync below commits it, the others find their metadata
  // committed already and only wait for their own data.
  for (const std::string& path : paths) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // SyncOne names the error
    (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    ::close(fd);
  }
  for (size_t i = 0; i < paths.size(); ++i) errors[i] = SyncOne(paths[i]);
  return errors;
}

void Agent::Impl::SyncPartsLocked(std::unique_lock<std::mutex>& lock, Talk& talk) {
  lock.unlock();
  const std::vector<std::string> errors = SyncPartFiles(talk.to_sync);
  lock.lock();
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
    r.status = "RUN_EXCEPTION";
    r.succeeded = 0;
    r.failed = r.total;
    r.error = "the part file of this attempt cannot be made durable: " + f->second;
    log_->error("mini-batch {} attempt {}: {}", r.mini_batch_id, r.attempt, r.error);
    talk.report.results[i] = r;
  }
}

}  // namespace parallelrun::rt
