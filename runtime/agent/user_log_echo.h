// What a worker pod's log shows (`kubectl logs <job>-worker-<i>`, docs/why-did-my-job-fail.md):
// the user's stdout and stderr of this node's workers, copied as they are written from
// logs/user/stdout/<node>/ and logs/user/stderr/<node>/ (one line each, prefixed
// "[process000 stdout] "), and one line per failed attempt or failed init(), with the traceback
// indented below it the first time an error text is seen on this node. The files on the output
// volume stay the complete record; this is a copy for people with only kubectl.
//
// Enabled by `parallelrun agent --echo-user-logs` (the operator's worker pods); local runs leave
// it off so that the terminal keeps its progress display.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "runtime/base/mutex.h"
#include "runtime/base/thread_annotations.h"

namespace parallelrun::rt {

class UserLogEcho {
 public:
  // Output already in the files when Start() runs (an earlier agent on this node) is not copied.
  UserLogEcho(std::string log_dir, std::string node, std::FILE* out = stdout,
              std::chrono::milliseconds period = std::chrono::milliseconds(250));
  ~UserLogEcho();
  UserLogEcho(const UserLogEcho&) = delete;
  UserLogEcho& operator=(const UserLogEcho&) = delete;

  void Start();
  // Copies what is left (a last line without its newline too), then stops. Idempotent.
  void Stop();
  // Copies what the files gained since the last call (the thread calls it every period).
  void Poll();

  // "mini-batch 3 attempt 1 failed (process000): RUN_EXCEPTION: ValueError: ... (traceback:
  // logs/user/error/<node>/process000.txt)"; `mini_batch_id` < 0 for init().
  void Failed(int64_t mini_batch_id, int attempt, const std::string& process,
              const std::string& status, const std::string& error, const std::string& detail);

 private:
  struct Followed {
    int64_t offset = 0;
    std::string partial;  // bytes after the last newline
  };
  void PollLocked(bool final) REQUIRES(mu_);
  void FollowLocked(const std::string& path, const std::string& prefix, bool final) REQUIRES(mu_);
  void WriteLocked(const std::string& text) REQUIRES(mu_);

  const std::string log_dir_;
  const std::string node_;
  std::FILE* const out_;
  const std::chrono::milliseconds period_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool started_ GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::map<std::string, Followed> files_ GUARDED_BY(mu_);
  // Error texts whose traceback was printed.
  std::set<std::string> tracebacks_shown_ GUARDED_BY(mu_);
};

}  // namespace parallelrun::rt
