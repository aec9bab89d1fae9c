// A native entry point for runtime/worker/native_worker_test.cc. What prn_run() does is chosen by
// the name of the first file of the mini-batch (see Run below); prn_init() by the arguments.
// It exercises the ABI, so it is written as a user would write one: only parallelrun_native.h.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallelrun_native.h"

namespace {

const prn_context* g_ctx = nullptr;
int g_init_calls = 0;

std::string Basename(const std::string& path) { return path.substr(path.rfind('/') + 1); }

bool HasArg(const char* arg) {
  for (int i = 1; i < g_ctx->argc; ++i) {
    if (std::strcmp(g_ctx->argv[i], arg) == 0) return true;
  }
  return false;
}

void AppendTo(const std::string& name, const std::string& text) {
  std::ofstream(std::string(g_ctx->output_dir) + "/" + name, std::ios::app) << text;
}

int Emit(prn_result* result, const std::string& row) {
  return result->emit(result->host, row.data(), row.size());
}

// A real segmentation fault, also in sanitizer builds (where UBSan would stop the null store
// itself and exit 1).
__attribute__((no_sanitize("address", "undefined"))) void WriteNull() {
  volatile int* p = nullptr;
  *p = 1;
}

// Overflows the stack long before depth wraps around; each frame keeps a buffer alive across the
// call, so it cannot become a loop.
int Recurse(int depth) {
  if (depth < 0) return 0;
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  return Recurse(depth + 1) + frame[0];
}

int RunTable(const prn_batch* b, prn_result* r) {
  Emit(r, std::string("format=") + b->format + " has_header=" + std::to_string(b->has_header) +
              " range=" + std::to_string(b->begin) + "-" + std::to_string(b->end) +
              " items=" + std::to_string(b->items) + " file=" + Basename(b->table_path));
  Emit(r, "header=" + std::string(b->header, b->header_size));
  std::string data(b->data, b->data_size);
  size_t start = 0;
  while (start < data.size()) {
    size_t nl = data.find('\n', start);
    if (nl == std::string::npos) nl = data.size();
    Emit(r, "row=" + data.substr(start, nl - start));
    start = nl + 1;
  }
  r->succeeded = b->items;
  return 0;
}

}  // namespace

extern "C" int prn_abi_version(void) { return PRN_ABI_VERSION; }

extern "C" int prn_init(const prn_context* ctx) {
  g_ctx = ctx;
  ++g_init_calls;
  AppendTo("init_count", "init\n");
  if (HasArg("--fail-init")) {
    ctx->set_error("model not found: /models/missing.bin\nsearched /models");
    return 7;
  }
  if (HasArg("--fail-init-silently")) return 2;
  if (HasArg("--throw-in-init")) throw std::runtime_error("cannot parse the model");
  if (HasArg("--crash-in-init")) raise(SIGSEGV);
  if (HasArg("--hang-in-init")) std::this_thread::sleep_for(std::chrono::hours(1));
  ctx->log(PRN_LOG_INFO, "initialised");
  ctx->log(PRN_LOG_DEBUG, "hidden at INFO");
  return 0;
}

// The first file's name picks the behaviour:
//   error*   set_error + non-zero        throw*   a C++ exception escapes
//   segv*    null-pointer write          abort*   abort()
//   overflow* unbounded recursion
//   exit*    _exit(3)                    loop*    never returns
//   few*     succeeded = 1               threads* rows emitted from 4 threads
//   context* the context's fields        args*    the arguments
//   log*     entry-script log lines      print*   stdout and stderr
//   else     one "<name> <init calls>" row per file
extern "C" int prn_run(const prn_batch* batch, prn_result* result) {
  if (batch->kind == PRN_BATCH_TABLE) return RunTable(batch, result);
  const std::string first = Basename(batch->files[0]);
  if (first.rfind("error", 0) == 0) {
    result->set_error(result->host, ("bad item " + first + "\nsecond line of the reason").c_str());
    return 3;
  }
  if (first.rfind("throw", 0) == 0) throw std::runtime_error("out of range: " + first);
  if (first.rfind("segv", 0) == 0) WriteNull();
  if (first.rfind("abort", 0) == 0) std::abort();
  if (first.rfind("overflow", 0) == 0) return Recurse(0);
  if (first.rfind("exit", 0) == 0) _exit(3);
  if (first.rfind("loop", 0) == 0) {
    AppendTo("running", "");
    volatile unsigned long spins = 0;
    for (;;) {
      spins = spins + 1;
    }
  }
  if (first.rfind("few", 0) == 0) {
    for (int64_t i = 0; i < batch->items; ++i) Emit(result, Basename(batch->files[i]));
    result->succeeded = 1;
    return 0;
  }
  if (first.rfind("threads", 0) == 0) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([=] {
        for (int i = 0; i < 250; ++i) Emit(result, "t" + std::to_string(t));
      });
    }
    for (auto& t : threads) t.join();
    return 0;
  }
  if (first.rfind("context", 0) == 0) {
    char cwd[4096];
    Emit(result, g_ctx->node);
    Emit(result, g_ctx->process);
    Emit(result, g_ctx->output_dir);
    Emit(result, g_ctx->log_dir);
    Emit(result, g_ctx->working_dir);
    Emit(result, g_ctx->input_type);
    Emit(result, getcwd(cwd, sizeof cwd) != nullptr ? cwd : "?");
    Emit(result, Basename(g_ctx->entry_point));
    return 0;
  }
  if (first.rfind("args", 0) == 0) {
    Emit(result, Basename(g_ctx->argv[0]));
    for (int i = 1; i < g_ctx->argc; ++i) Emit(result, g_ctx->argv[i]);
    Emit(result, g_ctx->argv[g_ctx->argc] == nullptr ? "NULL" : "not NULL");
    return 0;
  }
  if (first.rfind("log", 0) == 0) {
    g_ctx->log(PRN_LOG_WARNING, ("scored " + std::to_string(batch->items) + " files").c_str());
    g_ctx->log(PRN_LOG_DEBUG, "hidden at INFO");
    std::thread([] { g_ctx->log(PRN_LOG_ERROR, "from a thread"); }).join();
    return 0;
  }
  if (first.rfind("print", 0) == 0) {
    std::printf("scoring %lld files\n", static_cast<long long>(batch->items));
    std::fprintf(stderr, "careful\n");
    return 0;
  }
  for (int64_t i = 0; i < batch->items; ++i) {
    if (Emit(result, Basename(batch->files[i]) + " " + std::to_string(g_init_calls)) != 0) {
      result->set_error(result->host, "emit failed");
      return 1;
    }
  }
  return 0;
}

extern "C" void prn_shutdown(void) { AppendTo("shutdown_marker", "bye"); }
