// The callbacks of a native entry point (library_callbacks.h).

#include "runtime/hosts/native/library_callbacks.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"
#include "runtime/hosts/native/host_util.h"
#include "runtime/hosts/native/parallelrun_native.h"

namespace parallelrun::rt::native {
namespace {

// The entry-script log: <log_dir>/user/entry_script_log/<node>/<process>.log.txt, the same file
// and line format as EntryScript().logger of the Python host. Created on first use.
class EntryLog {
 public:
  void Configure(std::string path, int level) {
    path_ = std::move(path);
    level_ = level;
  }
  int level() const { return level_; }

  void Write(int level, const char* message) {
    if (level < level_) return;
    const char* name = level >= PRN_LOG_ERROR     ? "ERROR"
                       : level >= PRN_LOG_WARNING ? "WARNING"
                       : level >= PRN_LOG_INFO    ? "INFO"
                                                  : "DEBUG";
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03d", static_cast<int>(ms.count()));
    std::string line = FormatUtc(now, "%Y-%m-%d %H:%M:%S") + millis + "|" + name + "|" +
                       std::to_string(::getpid()) + "|" +
                       std::to_string(static_cast<long>(::syscall(SYS_gettid))) + "|" +
                       (message != nullptr ? message : "");
    if (line.empty() || line.back() != '\n') line += '\n';
    std::lock_guard<std::mutex> lock(mu_);
    if (fd_ < 0) {
      MakeDirs(Dirname(path_)).IgnoreError("the open below reports a folder that is missing");
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd_ < 0) {
        std::fprintf(stderr, "parallelrun-native-host: cannot open %s: %s\n", path_.c_str(),
                     std::strerror(errno));
        return;
      }
    }
    (void)WriteAll(fd_, line);
  }

 private:
  std::string path_;
  int level_ = PRN_LOG_INFO;
  std::mutex mu_;
  int fd_ = -1;
};

EntryLog g_entry_log;

// The message the library gives for its current call (prn_init or prn_run).
std::mutex g_error_mu;
std::string g_error;
bool g_error_set = false;

}  // namespace

void ConfigureEntryLog(std::string path, int level) {
  g_entry_log.Configure(std::move(path), level);
}

void LogCallback(int level, const char* message) { g_entry_log.Write(level, message); }

void SetErrorCallback(const char* message) {
  std::lock_guard<std::mutex> lock(g_error_mu);
  g_error = message != nullptr ? message : "";
  g_error_set = true;
}

void ResultSetErrorCallback(void* /*host*/, const char* message) { SetErrorCallback(message); }

void ClearError() {
  std::lock_guard<std::mutex> lock(g_error_mu);
  g_error.clear();
  g_error_set = false;
}

bool TakeError(std::string* message) {
  std::lock_guard<std::mutex> lock(g_error_mu);
  *message = g_error;
  return g_error_set;
}

}  // namespace parallelrun::rt::native
