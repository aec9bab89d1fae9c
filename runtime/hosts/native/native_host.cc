// parallelrun-native-host: runs one native entry point (a shared library implementing
// parallelrun_native.h) for the agent.
//
// Started by the agent (runtime/worker/native_worker.cc) as `parallelrun-native-host
// <arguments...>` with the control pipes and the job's folders in PARALLELRUN_* variables; speaks
// the line protocol of runtime/hosts/python/README.md, so the agent drives it exactly like the
// Python host. What is specific to this host is in README.md here.

#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"
#include "runtime/hosts/native/parallelrun_native.h"

namespace parallelrun::rt::native {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxDetail = 64 * 1024;       // longest detail sent back in a reply
constexpr size_t kMaxErrorLine = 1000;         // longest one-line error
constexpr size_t kPartBufferBytes = 1 << 20;   // rows buffered before a write to the part file
constexpr size_t kAltStackBytes = 256 * 1024;  // the crash handler's stack (stack overflows)

// ---- small helpers ----

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? v : fallback;
}

double CpuNow() {
  auto seconds = [](const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return seconds(self) + seconds(children);
}

double Round6(double x) { return std::round(x * 1e6) / 1e6; }

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > kMaxErrorLine) line = line.substr(0, kMaxErrorLine) + "...";
  return line;
}

std::string Truncate(const std::string& text) {
  if (text.size() <= kMaxDetail) return text;
  const size_t head = 8 * 1024;
  const size_t tail = kMaxDetail - head;
  return text.substr(0, head) + "\n... (" + std::to_string(text.size() - head - tail) +
         " characters omitted) ...\n" + text.substr(text.size() - tail);
}

std::string Errno(int e) { return std::strerror(e); }

// Writes all of `data` to `fd`; false (errno set) on failure.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// ---- the crash handler ----
//
// A crash inside the library kills the process (the agent reports WORKER_DIED with the signal);
// before it does, this leaves the signal, the call it happened in and a backtrace in the
// worker's stderr log, as Python's faulthandler does for the Python host.

char g_crash_where[512] = "the native host";  // set before each call into the library

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV (segmentation fault)";
    case SIGBUS:
      return "SIGBUS (bus error)";
    case SIGFPE:
      return "SIGFPE (arithmetic exception)";
    case SIGILL:
      return "SIGILL (illegal instruction)";
    case SIGABRT:
      return "SIGABRT (abort)";
    default:
      return "fatal signal";
  }
}

void CrashHandler(int sig) {
  // Only async-signal-safe calls: write(2), backtrace_symbols_fd (libgcc is loaded at start-up).
  auto put = [](const char* s) { (void)!::write(STDERR_FILENO, s, std::strlen(s)); };
  auto summary = [&] {
    put("parallelrun-native-host: ");
    put(SignalName(sig));
    put(" in ");
    put(g_crash_where);
    put("\n");
  };
  summary();
  put("backtrace:\n");
  void* frames[64];
  int n = ::backtrace(frames, 64);
  // A stack overflow is one frame repeated: print it once with a count.
  for (int i = 0; i < n;) {
    int same = 1;
    while (i + same < n && frames[i + same] == frames[i]) ++same;
    ::backtrace_symbols_fd(&frames[i], 1, STDERR_FILENO);
    if (same > 1) {
      char count[16];
      int len = 0;
      for (int v = same; v > 0; v /= 10) count[len++] = static_cast<char>('0' + v % 10);
      put("  (");
      while (len > 0) (void)!::write(STDERR_FILENO, &count[--len], 1);
      put(" times)\n");
    }
    i += same;
  }
  // Again at the end: the agent quotes the tail of the stderr log.
  summary();
  // Die of the same signal, so the agent reports it.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void InstallCrashHandler() {
  void* warm[1];
  ::backtrace(warm, 1);  // loads libgcc now: the handler must not load it
  alignas(16) static char alt_stack[kAltStackBytes];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = CrashHandler;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

void SetCrashWhere(const std::string& where) {
  std::snprintf(g_crash_where, sizeof g_crash_where, "%s", where.c_str());
}

// ---- logs ----

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

void LogCallback(int level, const char* message) { g_entry_log.Write(level, message); }

// The message the library gives for its current call (prn_init or prn_run).
std::mutex g_error_mu;
std::string g_error;
bool g_error_set = false;

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

// ---- the part file ----

// Collects the rows of one prn_run() call and writes them, one per line, to the part file:
// buffered, created (truncated) on the first flush, fsync'd by Finish(). Thread-safe, so a library
// may emit from its own threads during prn_run().
class RowSink {
 public:
  RowSink(std::string path, std::set<std::string>* known_dirs)
      : path_(std::move(path)), known_dirs_(known_dirs) {}
  ~RowSink() {
    if (fd_ >= 0) ::close(fd_);
  }

  int Emit(const char* row, size_t len) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || !error_.empty()) return -1;
    ++rows_;
    if (path_.empty()) return 0;
    buffer_.append(row, len);
    buffer_ += '\n';
    if (buffer_.size() >= kPartBufferBytes && !Flush()) return -1;
    return 0;
  }

  // Writes what is left, fsyncs the file (and its folder the first time). Ends the sink.
  bool Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    if (path_.empty()) return error_.empty();
    if (!error_.empty() || !Flush()) return false;
    if (::fsync(fd_) != 0) return Fail("fsync", errno);
    ::close(fd_);
    fd_ = -1;
    std::string folder = Dirname(path_);
    if (known_dirs_->insert(folder).second) {
      // The folder is synced after the first file created in it (it may be new itself); later
      // files rely on their own fsync, as in the Python host (see its write_file).
      Status st = SyncDir(folder);
      if (!st.ok()) {
        known_dirs_->erase(folder);
        error_ = st.message();
        return false;
      }
    }
    return true;
  }

  // A failed attempt leaves no part file behind.
  void Discard() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      ::unlink(path_.c_str());
    }
  }

  int64_t rows() {
    std::lock_guard<std::mutex> lock(mu_);
    return rows_;
  }
  std::string error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  static int EmitCallback(void* host, const char* row, size_t len) {
    if (host == nullptr || (row == nullptr && len > 0)) return -1;
    return static_cast<RowSink*>(host)->Emit(row, len);
  }

 private:
  bool Fail(const char* what, int e) {
    error_ = std::string(what) + ": " + Errno(e);
    return false;
  }
  bool Flush() {  // under mu_
    if (fd_ < 0) {
      std::string folder = Dirname(path_);
      if (known_dirs_->count(folder) == 0) {
        Status st = MakeDirs(folder);
        if (!st.ok()) {
          error_ = st.message();
          return false;
        }
      }
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd_ < 0) return Fail("open", errno);
    }
    if (!WriteAll(fd_, buffer_)) return Fail("write", errno);
    buffer_.clear();
    return true;
  }

  const std::string path_;
  std::set<std::string>* known_dirs_;
  std::mutex mu_;
  std::string buffer_;
  int fd_ = -1;
  int64_t rows_ = 0;
  bool closed_ = false;
  std::string error_;
};

// ---- the host ----

using AbiVersionFn = int (*)();
using InitFn = int (*)(const prn_context*);
using RunFn = int (*)(const prn_batch*, prn_result*);
using ShutdownFn = void (*)();

class Host {
 public:
  Host(int argc, char** argv);
  // Loads the library and calls prn_init(). Returns false after sending init_failed.
  bool Load();
  // Answers requests until shutdown or EOF. Returns the exit code.
  int Serve();

 private:
  bool SendLine(const json& reply);
  void SendInitFailed(const std::string& error, const std::string& detail);
  void AppendErrorLog(const std::string& header, const std::string& text);
  json Run(const json& req);
  // Reads the table range of a tabular request into `head`/`body`; "" or the reason it failed.
  std::string ReadTable(const json& req, std::string* head, std::string* body);
  json Shutdown();
  // Calls `fn`, turning an escaping C++ exception into a message. Returns fn's result, or -1.
  template <typename Fn>
  int Guarded(Fn fn, std::string* exception);

  int ctl_in_ = -1;
  int ctl_out_ = -1;
  std::string entry_point_;
  std::string node_, process_, output_dir_, log_dir_, working_dir_, input_type_, level_name_;
  std::string entry_log_dir_;
  std::string error_log_;
  std::vector<std::string> args_;
  std::vector<const char*> argv_;
  prn_context ctx_{};

  void* lib_ = nullptr;
  InitFn init_ = nullptr;
  RunFn run_ = nullptr;
  ShutdownFn shutdown_ = nullptr;
  std::set<std::string> known_dirs_;
};

Host::Host(int argc, char** argv) {
  ctl_in_ = std::atoi(Env("PARALLELRUN_CONTROL_IN_FD", "-1").c_str());
  ctl_out_ = std::atoi(Env("PARALLELRUN_CONTROL_OUT_FD", "-1").c_str());
  entry_point_ = Env("PARALLELRUN_ENTRY_SCRIPT", "");
  node_ = Env("PARALLELRUN_NODE", "127.0.0.1");
  process_ = Env("PARALLELRUN_PROCESS", "process000");
  output_dir_ = Env("PARALLELRUN_OUTPUT_DIR", ".");
  log_dir_ = Env("PARALLELRUN_LOG_DIR", JoinPath(output_dir_, "logs").c_str());
  working_dir_ = Env("PARALLELRUN_WORKING_DIR", ".");
  input_type_ = Env("PARALLELRUN_INPUT_TYPE", "file");
  level_name_ = Env("PARALLELRUN_LOGGING_LEVEL", "INFO");
  entry_log_dir_ = JoinPath(log_dir_, "user/entry_script_log/" + node_);
  error_log_ = JoinPath(log_dir_, "user/error/" + node_ + "/" + process_ + ".txt");

  int level = level_name_ == "DEBUG"     ? PRN_LOG_DEBUG
              : level_name_ == "WARNING" ? PRN_LOG_WARNING
              : level_name_ == "ERROR"   ? PRN_LOG_ERROR
                                         : PRN_LOG_INFO;
  g_entry_log.Configure(JoinPath(entry_log_dir_, process_ + ".log.txt"), level);

  args_.push_back(entry_point_);
  for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
  for (const std::string& a : args_) argv_.push_back(a.c_str());
  argv_.push_back(nullptr);

  ctx_.abi_version = PRN_ABI_VERSION;
  ctx_.argc = static_cast<int>(args_.size());
  ctx_.argv = argv_.data();
  ctx_.entry_point = entry_point_.c_str();
  ctx_.node = node_.c_str();
  ctx_.process = process_.c_str();
  ctx_.output_dir = output_dir_.c_str();
  ctx_.log_dir = entry_log_dir_.c_str();
  ctx_.working_dir = working_dir_.c_str();
  ctx_.input_type = input_type_.c_str();
  ctx_.log_level = level;
  ctx_.log = LogCallback;
  ctx_.set_error = SetErrorCallback;
}

bool Host::SendLine(const json& reply) {
  // Whatever the library printed lands in the logs before the agent reads the reply.
  std::fflush(nullptr);
  // Messages from the library need not be UTF-8: replace what is not.
  std::string text = reply.dump(-1, ' ', false, json::error_handler_t::replace);
  text += '\n';
  return WriteAll(ctl_out_, text);
}

void Host::AppendErrorLog(const std::string& header, const std::string& text) {
  StatusOr<AppendFile> f = AppendFile::Open(error_log_);
  std::string entry = Iso8601Utc(std::chrono::system_clock::now()) + " " + header + "\n" + text;
  if (!text.empty() && text.back() != '\n') entry += '\n';
  Status st = f.ok() ? f->Append(entry) : f.status();
  if (!st.ok()) std::fprintf(stderr, "parallelrun-native-host: %s\n", st.message().c_str());
}

void Host::SendInitFailed(const std::string& error, const std::string& detail) {
  AppendErrorLog("prn_init(): INIT_FAILED", detail.empty() ? error : detail);
  SendLine({{"event", "init_failed"}, {"error", error}, {"detail", Truncate(detail)}});
}

template <typename Fn>
int Host::Guarded(Fn fn, std::string* exception) {
  try {
    return fn();
  } catch (const std::exception& e) {
    *exception = std::string("a C++ exception escaped: ") + e.what();
  } catch (...) {
    *exception = "a C++ exception that is not a std::exception escaped";
  }
  return -1;
}

bool Host::Load() {
  const std::string& so = entry_point_;
  if (so.empty()) {
    SendInitFailed("PARALLELRUN_ENTRY_SCRIPT is not set: no native entry point to load", "");
    return false;
  }
  SetCrashWhere("loading " + so);
  // RTLD_NOW: an unresolved symbol is an init failure now, not a crash in the middle of a
  // mini-batch. RTLD_LOCAL: the library's symbols do not leak into later loads.
  lib_ = ::dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib_ == nullptr) {
    const char* why = ::dlerror();
    std::string reason = why != nullptr ? why : "unknown error";
    // dlerror() usually starts with the path already.
    if (reason.rfind(so + ": ", 0) == 0) reason.erase(0, so.size() + 2);
    SendInitFailed("cannot load the native entry point " + so + ": " + reason, "");
    return false;
  }
  auto abi = reinterpret_cast<AbiVersionFn>(::dlsym(lib_, "prn_abi_version"));
  if (abi == nullptr) {
    SendInitFailed(so + " does not export prn_abi_version(): not a parallelrun native entry "
                        "point (implement the functions of parallelrun_native.h, declared "
                        "extern \"C\")",
                   "");
    return false;
  }
  SetCrashWhere("prn_abi_version() of " + so);
  int version = abi();
  if (version != PRN_ABI_VERSION) {
    SendInitFailed(so + " was built for native ABI version " + std::to_string(version) +
                       "; this parallelrun-native-host speaks version " +
                       std::to_string(PRN_ABI_VERSION) +
                       " (rebuild it against this release's parallelrun_native.h)",
                   "");
    return false;
  }
  run_ = reinterpret_cast<RunFn>(::dlsym(lib_, "prn_run"));
  if (run_ == nullptr) {
    SendInitFailed(so + " does not export prn_run() (required; declare it extern \"C\")", "");
    return false;
  }
  init_ = reinterpret_cast<InitFn>(::dlsym(lib_, "prn_init"));
  shutdown_ = reinterpret_cast<ShutdownFn>(::dlsym(lib_, "prn_shutdown"));

  MakeDirs(entry_log_dir_).IgnoreError("each entry log's open reports a missing folder");
  if (init_ != nullptr) {
    SetCrashWhere("prn_init() of " + so);
    ClearError();
    std::string exception;
    int rc = Guarded([&] { return init_(&ctx_); }, &exception);
    if (rc != 0) {
      std::string message;
      bool has_message = TakeError(&message) && !message.empty();
      std::string error;
      std::string detail;
      if (!exception.empty()) {
        error = "prn_init() failed: " + exception;
        detail = has_message ? exception + "\n" + message : exception;
      } else if (has_message) {
        error = FirstLine(message);
        detail = message + "\n(prn_init() of " + so + " returned " + std::to_string(rc) + ")";
      } else {
        error = "prn_init() of " + so + " returned " + std::to_string(rc) +
                " (it gave no reason: call ctx->set_error() before returning)";
      }
      SendInitFailed(FirstLine(error), detail);
      return false;
    }
  }
  SetCrashWhere("the native host, between mini-batches (" + so + " is loaded)");
  return SendLine({{"event", "ready"}, {"pid", ::getpid()}, {"cpu_total_s", Round6(CpuNow())}});
}

std::string Host::ReadTable(const json& req, std::string* head, std::string* body) {
  const std::string file = req.at("file").get<std::string>();
  const int64_t header_end = req.value("header_end", int64_t{0});
  const int64_t begin = req.at("begin").get<int64_t>();
  const int64_t end = req.at("end").get<int64_t>();
  if (header_end < 0 || begin < 0 || end < begin) {
    return "invalid byte range [" + std::to_string(begin) + ", " + std::to_string(end) +
           ") with header_end " + std::to_string(header_end) + " for " + file;
  }
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open " + file + ": " + Errno(errno);
  auto read_range = [&](int64_t from, int64_t to, std::string* out) -> std::string {
    out->resize(static_cast<size_t>(to - from));
    size_t done = 0;
    while (done < out->size()) {
      ssize_t n = ::pread(fd, out->data() + done, out->size() - done,
                          static_cast<off_t>(from + static_cast<int64_t>(done)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return "cannot read " + file + ": " + Errno(errno);
      if (n == 0) {
        return file + " is shorter than expected: it ends before byte " + std::to_string(to) +
               " (was it changed during the job?)";
      }
      done += static_cast<size_t>(n);
    }
    return "";
  };
  std::string error = read_range(0, header_end, head);
  if (error.empty()) error = read_range(begin, end, body);
  ::close(fd);
  return error;
}

json Host::Run(const json& req) {
  const double cpu0 = CpuNow();
  const int64_t mb = req.value("mini_batch_id", int64_t{-1});
  const int attempt = req.value("attempt", 0);
  const std::string input_type = req.value("input_type", input_type_);
  const std::string part_file = req.value("part_file", "");
  json reply = {{"event", "result"}};
  auto fail = [&](const std::string& stage, const std::string& error, const std::string& detail,
                  int64_t items, double run_s) {
    AppendErrorLog("mini-batch " + std::to_string(mb) + " attempt " + std::to_string(attempt) +
                       ": RUN_EXCEPTION in " + stage,
                   detail.empty() ? error : detail);
    reply["status"] = "RUN_EXCEPTION";
    reply["items"] = items;
    reply["succeeded"] = 0;
    reply["failed"] = items;
    reply["run_s"] = Round6(run_s);
    reply["cpu_s"] = Round6(CpuNow() - cpu0);
    reply["error"] = stage == "prn_run()" ? FirstLine(error) : stage + ": " + FirstLine(error);
    if (!detail.empty()) reply["detail"] = Truncate(detail);
    return reply;
  };

  // The mini-batch.
  prn_batch batch{};
  batch.mini_batch_id = mb;
  batch.attempt = attempt;
  std::vector<std::string> files;
  std::vector<const char*> file_ptrs;
  std::string table_file, format, head, body;
  try {
    if (input_type == "tabular") {
      batch.kind = PRN_BATCH_TABLE;
      table_file = req.at("file").get<std::string>();
      format = req.value("format", "csv");
      batch.items = req.at("items").get<int64_t>();
      std::string error = ReadTable(req, &head, &body);
      if (!error.empty()) return fail("reading the mini-batch", error, "", batch.items, 0);
      batch.table_path = table_file.c_str();
      batch.format = format.c_str();
      batch.header_end = req.value("header_end", int64_t{0});
      batch.has_header = batch.header_end > 0 ? 1 : 0;
      batch.begin = req.at("begin").get<int64_t>();
      batch.end = req.at("end").get<int64_t>();
      batch.header = head.data();
      batch.header_size = head.size();
      batch.data = body.data();
      batch.data_size = body.size();
    } else {
      batch.kind = PRN_BATCH_FILES;
      files = req.at("files").get<std::vector<std::string>>();
      for (const std::string& f : files) file_ptrs.push_back(f.c_str());
      file_ptrs.push_back(nullptr);
      batch.files = file_ptrs.data();
      batch.items = static_cast<int64_t>(files.size());
    }
  } catch (const json::exception& e) {
    return fail("reading the mini-batch", std::string("malformed run request: ") + e.what(), "", 0,
                0);
  }
  const int64_t items = std::max<int64_t>(batch.items, 0);

  // The call (an empty mini-batch is not worth one: its result is empty).
  RowSink sink(part_file, &known_dirs_);
  prn_result result{};
  result.host = &sink;
  result.emit = RowSink::EmitCallback;
  result.set_error = ResultSetErrorCallback;
  result.succeeded = -1;
  double run_s = 0;
  if (items > 0) {
    SetCrashWhere("prn_run() of " + entry_point_ + ", mini-batch " + std::to_string(mb) +
                  " attempt " + std::to_string(attempt));
    ClearError();
    std::string exception;
    auto t0 = std::chrono::steady_clock::now();
    int rc = Guarded([&] { return run_(&batch, &result); }, &exception);
    run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    SetCrashWhere("the native host, after mini-batch " + std::to_string(mb));
    if (rc != 0) {
      sink.Discard();
      std::string message;
      bool has_message = TakeError(&message) && !message.empty();
      std::string returned = "prn_run() returned " + std::to_string(rc);
      if (!exception.empty()) {
        return fail("prn_run()", exception, has_message ? exception + "\n" + message : exception,
                    items, run_s);
      }
      if (has_message) {
        return fail("prn_run()", message, message + "\n(" + returned + ")", items, run_s);
      }
      std::string sink_error = sink.error();
      if (!sink_error.empty()) {
        return fail("writing the part file " + part_file, sink_error, "", items, run_s);
      }
      return fail("prn_run()",
                  returned + " (it gave no reason: call result->set_error() before returning)", "",
                  items, run_s);
    }
  }
  if (!sink.Finish()) {
    std::string error = sink.error();
    sink.Discard();
    return fail("writing the part file " + part_file, error, "", items, run_s);
  }

  int64_t succeeded = result.succeeded < 0 ? sink.rows() : result.succeeded;
  succeeded = std::clamp<int64_t>(succeeded, 0, items);
  reply["status"] = "RUN_DONE";
  reply["items"] = items;
  reply["succeeded"] = succeeded;
  reply["failed"] = items - succeeded;
  reply["run_s"] = Round6(run_s);
  reply["cpu_s"] = Round6(CpuNow() - cpu0);
  return reply;
}

json Host::Shutdown() {
  json reply = {{"event", "bye"}};
  if (shutdown_ != nullptr) {
    SetCrashWhere("prn_shutdown() of " + entry_point_);
    std::string exception;
    Guarded(
        [&] {
          shutdown_();
          return 0;
        },
        &exception);
    if (!exception.empty()) {
      AppendErrorLog("prn_shutdown(): exception", exception);
      reply["error"] = FirstLine(exception);
    }
  }
  return reply;
}

int Host::Serve() {
  std::string buffer;
  size_t scanned = 0;
  char chunk[1 << 16];
  for (;;) {
    size_t nl = buffer.find('\n', scanned);
    if (nl == std::string::npos) {
      scanned = buffer.size();
      ssize_t n = ::read(ctl_in_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 0;  // the agent is gone
      buffer.append(chunk, static_cast<size_t>(n));
      continue;
    }
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    scanned = 0;

    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!req.is_object() || !req.contains("op") || !req["op"].is_string()) {
      std::fprintf(stderr, "parallelrun-native-host: malformed request %s\n",
                   line.substr(0, 200).c_str());
      return 2;
    }
    const std::string op = req["op"].get<std::string>();
    if (op == "run") {
      json reply;
      try {
        reply = Run(req);
      } catch (const json::exception& e) {
        std::fprintf(stderr, "parallelrun-native-host: malformed run request %s: %s\n",
                     line.substr(0, 200).c_str(), e.what());
        return 2;
      }
      reply["cpu_total_s"] = Round6(CpuNow());
      if (!SendLine(reply)) return 0;  // the agent is gone
    } else if (op == "shutdown") {
      SendLine(Shutdown());
      return 0;
    } else {
      std::fprintf(stderr, "parallelrun-native-host: unknown op \"%s\"\n", op.c_str());
      return 2;
    }
  }
}

int Main(int argc, char** argv) {
  // stdout and stderr are log files: line buffering keeps `tail -f` current.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (std::getenv("PARALLELRUN_CONTROL_IN_FD") == nullptr ||
      std::getenv("PARALLELRUN_CONTROL_OUT_FD") == nullptr) {
    std::fprintf(stderr,
                 "parallelrun-native-host runs a native entry point for a parallelrun agent and "
                 "is started by it (PARALLELRUN_CONTROL_IN_FD and PARALLELRUN_CONTROL_OUT_FD are "
                 "not set)\n");
    return 2;
  }
  // Never destroyed: the context handed to prn_init() must outlive the library's own static
  // destructors, which run after main() returns.
  static Host& host = *new Host(argc, argv);
  // Children of the library must not hold the control pipes (the agent would then miss our exit)
  // nor read the agent's terminal.
  for (const char* var : {"PARALLELRUN_CONTROL_IN_FD", "PARALLELRUN_CONTROL_OUT_FD"}) {
    int fd = std::atoi(std::getenv(var));
    ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
  }
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);
    ::close(null);
  }
  // SIGPIPE keeps its default: a host whose agent is gone may die of it, and the library's own
  // children must not inherit an ignored SIGPIPE (ignored signals survive exec).
  InstallCrashHandler();
  if (!host.Load()) {
    std::fflush(nullptr);
    return 1;
  }
  int code = host.Serve();
  std::fflush(nullptr);
  return code;
}

}  // namespace
}  // namespace parallelrun::rt::native

int main(int argc, char** argv) { return parallelrun::rt::native::Main(argc, argv); }
