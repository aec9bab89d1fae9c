// parallelrun-native-host: runs one native entry point (a shared library implementing
// parallelrun_native.h) for the agent.
//
// Started by the agent (runtime/worker/native_worker.cc) as `parallelrun-native-host
// <arguments...>` with the control pipes and the job's folders in PARALLELRUN_* variables; speaks
// the line protocol of runtime/hosts/python/README.md, so the agent drives it exactly like the
// Python host. What is specific to this host is in README.md here. This file holds the host's
// request loop; its parts are crash_handler.h, library_callbacks.h, row_sink.h and host_util.h.

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/time_util.h"
#include "runtime/hosts/native/crash_handler.h"
#include "runtime/hosts/native/host_util.h"
#include "runtime/hosts/native/library_callbacks.h"
#include "runtime/hosts/native/parallelrun_native.h"
#include "runtime/hosts/native/row_sink.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt::native {
namespace {

using json = nlohmann::json;

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
  // What a run request asks for.
  struct RunRequest {
    int64_t mini_batch = -1;
    int attempt = 0;
    std::string input_type;  // "file" or "tabular"
    std::string part_file;   // "" when the rows are only counted
    double cpu0 = 0;         // CpuNow() when the request arrived
  };
  // A run request's mini-batch as the prn_batch the library reads, and the storage its pointers
  // point into (so it is never copied or moved).
  struct Batch {
    Batch() = default;
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    prn_batch c{};
    std::vector<std::string> files;
    std::vector<const char*> file_ptrs;
    std::string table_file, format, head, body;
  };

  // Runs one mini-batch: reads it, calls prn_run(), finishes the part file. The result reply.
  json Run(const json& req);
  // Fills `batch` from the request; "" or why the mini-batch could not be read (then
  // batch->c.items is what the reply counts as failed).
  std::string ReadBatch(const json& req, const std::string& input_type, Batch* batch);
  std::string ReadTableBatch(const json& req, Batch* batch);
  // Reads the table range of a tabular request into `head`/`body`; "" or the reason it failed.
  std::string ReadTable(const json& req, std::string* head, std::string* body);
  // Calls prn_run(); the failure reply when it returned non-zero (the part file discarded).
  std::optional<json> CallRun(const RunRequest& attempt, const prn_batch& batch, int64_t items,
                              prn_result* result, RowSink* sink, double* run_s);
  // The result reply with the counts and timings of the attempt.
  json Reply(const RunRequest& attempt, AttemptStatus status, int64_t items, int64_t succeeded,
             double run_s);
  // A RUN_EXCEPTION reply for a failure in `stage`, also written to the worker's error log.
  json Failed(const RunRequest& attempt, const std::string& stage, const std::string& error,
              const std::string& detail, int64_t items, double run_s);
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
  ConfigureEntryLog(JoinPath(entry_log_dir_, process_ + ".log.txt"), level);

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
  const RunRequest attempt{req.value("mini_batch_id", int64_t{-1}), req.value("attempt", 0),
                           req.value("input_type", input_type_), req.value("part_file", ""), cpu0};
  Batch batch;
  batch.c.mini_batch_id = attempt.mini_batch;
  batch.c.attempt = attempt.attempt;
  std::string error = ReadBatch(req, attempt.input_type, &batch);
  if (!error.empty()) return Failed(attempt, "reading the mini-batch", error, "", batch.c.items, 0);
  const int64_t items = std::max<int64_t>(batch.c.items, 0);

  RowSink sink(attempt.part_file, &known_dirs_);
  prn_result result{};
  result.host = &sink;
  result.emit = RowSink::EmitCallback;
  result.set_error = ResultSetErrorCallback;
  result.succeeded = -1;
  double run_s = 0;
  // An empty mini-batch is not worth a call: its result is empty.
  if (items > 0) {
    if (auto failed = CallRun(attempt, batch.c, items, &result, &sink, &run_s)) return *failed;
  }
  if (!sink.Finish()) {
    error = sink.error();
    sink.Discard();
    return Failed(attempt, "writing the part file " + attempt.part_file, error, "", items, run_s);
  }
  int64_t succeeded = result.succeeded < 0 ? sink.rows() : result.succeeded;
  succeeded = std::clamp<int64_t>(succeeded, 0, items);
  return Reply(attempt, AttemptStatus::kRunDone, items, succeeded, run_s);
}

std::string Host::ReadBatch(const json& req, const std::string& input_type, Batch* batch) {
  try {
    if (input_type == "tabular") return ReadTableBatch(req, batch);
    batch->files = req.at("files").get<std::vector<std::string>>();
    for (const std::string& f : batch->files) batch->file_ptrs.push_back(f.c_str());
    batch->file_ptrs.push_back(nullptr);
    batch->c.kind = PRN_BATCH_FILES;
    batch->c.files = batch->file_ptrs.data();
    batch->c.items = static_cast<int64_t>(batch->files.size());
    return "";
  } catch (const json::exception& e) {
    batch->c.items = 0;
    return std::string("malformed run request: ") + e.what();
  }
}

std::string Host::ReadTableBatch(const json& req, Batch* batch) {
  prn_batch& c = batch->c;
  c.kind = PRN_BATCH_TABLE;
  batch->table_file = req.at("file").get<std::string>();
  batch->format = req.value("format", "csv");
  c.items = req.at("items").get<int64_t>();
  std::string error = ReadTable(req, &batch->head, &batch->body);
  if (!error.empty()) return error;
  c.table_path = batch->table_file.c_str();
  c.format = batch->format.c_str();
  c.header_end = req.value("header_end", int64_t{0});
  c.has_header = c.header_end > 0 ? 1 : 0;
  c.begin = req.at("begin").get<int64_t>();
  c.end = req.at("end").get<int64_t>();
  c.header = batch->head.data();
  c.header_size = batch->head.size();
  c.data = batch->body.data();
  c.data_size = batch->body.size();
  return "";
}

std::optional<json> Host::CallRun(const RunRequest& attempt, const prn_batch& batch, int64_t items,
                                  prn_result* result, RowSink* sink, double* run_s) {
  const std::string mb = std::to_string(attempt.mini_batch);
  SetCrashWhere("prn_run() of " + entry_point_ + ", mini-batch " + mb + " attempt " +
                std::to_string(attempt.attempt));
  ClearError();
  std::string exception;
  auto t0 = std::chrono::steady_clock::now();
  int rc = Guarded([&] { return run_(&batch, result); }, &exception);
  *run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  SetCrashWhere("the native host, after mini-batch " + mb);
  if (rc == 0) return std::nullopt;
  sink->Discard();
  std::string message;
  bool has_message = TakeError(&message) && !message.empty();
  std::string returned = "prn_run() returned " + std::to_string(rc);
  if (!exception.empty()) {
    return Failed(attempt, "prn_run()", exception,
                  has_message ? exception + "\n" + message : exception, items, *run_s);
  }
  if (has_message) {
    return Failed(attempt, "prn_run()", message, message + "\n(" + returned + ")", items, *run_s);
  }
  std::string sink_error = sink->error();
  if (!sink_error.empty()) {
    return Failed(attempt, "writing the part file " + attempt.part_file, sink_error, "", items,
                  *run_s);
  }
  return Failed(attempt, "prn_run()",
                returned + " (it gave no reason: call result->set_error() before returning)", "",
                items, *run_s);
}

json Host::Reply(const RunRequest& attempt, AttemptStatus status, int64_t items, int64_t succeeded,
                 double run_s) {
  json reply = {{"event", "result"}};
  reply["status"] = AttemptStatusName(status);
  reply["items"] = items;
  reply["succeeded"] = succeeded;
  reply["failed"] = items - succeeded;
  reply["run_s"] = Round6(run_s);
  reply["cpu_s"] = Round6(CpuNow() - attempt.cpu0);
  return reply;
}

json Host::Failed(const RunRequest& attempt, const std::string& stage, const std::string& error,
                  const std::string& detail, int64_t items, double run_s) {
  AppendErrorLog("mini-batch " + std::to_string(attempt.mini_batch) + " attempt " +
                     std::to_string(attempt.attempt) + ": " +
                     AttemptStatusName(AttemptStatus::kRunException) + " in " + stage,
                 detail.empty() ? error : detail);
  json reply = Reply(attempt, AttemptStatus::kRunException, items, 0, run_s);
  reply["error"] = stage == "prn_run()" ? FirstLine(error) : stage + ": " + FirstLine(error);
  if (!detail.empty()) reply["detail"] = Truncate(detail);
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
