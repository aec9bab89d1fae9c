// An example native entry point for parallelrun: counts the words and bytes of text documents.
//
// Built as libscorer.so (README.md). parallelrun's native host loads it into every worker process
// and calls prn_init() once, prn_run() once per mini-batch of files and prn_shutdown() at the end
// (the ABI is in runtime/hosts/native/parallelrun_native.h). Every document gives one output row,
// "<file name> <words> <bytes>"; a document with fewer than --min-words words gives none, so it
// counts as a failed item, as a missing element of a Python entry script's result would.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "parallelrun_native.h"

namespace {

const prn_context* g_ctx = nullptr;  // valid for the life of the process
long g_min_words = 0;
int64_t g_documents = 0;

void Log(int level, const std::string& message) { g_ctx->log(level, message.c_str()); }

std::string Basename(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Words are runs of non-space bytes, as Python's str.split() sees them for ASCII text.
bool CountFile(const char* path, int64_t* words, int64_t* bytes, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = std::string("cannot open ") + path + ": " + std::strerror(errno);
    return false;
  }
  *words = 0;
  *bytes = 0;
  bool in_word = false;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      bool space = buffer[i] == ' ' || (buffer[i] >= '\t' && buffer[i] <= '\r');
      if (!space && !in_word) ++*words;
      in_word = !space;
    }
    *bytes += in.gcount();
  }
  if (in.bad()) {
    *error = std::string("cannot read ") + path;
    return false;
  }
  return true;
}

}  // namespace

// parallelrun_native.h declares these extern "C" and exported; the definitions inherit both (this
// library is compiled with -fvisibility=hidden, so nothing else leaks out of it).

int prn_abi_version(void) { return PRN_ABI_VERSION; }

int prn_init(const prn_context* ctx) {
  g_ctx = ctx;
  // The job's `arguments`; unknown ones are left alone, like Python's parse_known_args.
  for (int i = 1; i < ctx->argc; ++i) {
    if (std::strcmp(ctx->argv[i], "--min-words") != 0) continue;
    const char* value = i + 1 < ctx->argc ? ctx->argv[++i] : "";
    char* end = nullptr;
    g_min_words = std::strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0' || g_min_words < 0) {
      ctx->set_error(
          (std::string("--min-words: expected a non-negative integer, got \"") + value + "\"")
              .c_str());
      return 1;
    }
  }
  if (std::strcmp(ctx->input_type, "file") != 0) {
    ctx->set_error("this scorer reads file inputs; the job's input is tabular");
    return 1;
  }
  Log(PRN_LOG_INFO, std::string("scorer ready on ") + ctx->node + "/" + ctx->process +
                        " (--min-words " + std::to_string(g_min_words) + ")");
  return 0;
}

int prn_run(const prn_batch* batch, prn_result* result) {
  for (int64_t i = 0; i < batch->items; ++i) {
    const char* path = batch->files[i];
    int64_t words = 0;
    int64_t bytes = 0;
    std::string error;
    if (!CountFile(path, &words, &bytes, &error)) {
      // The whole mini-batch fails (RUN_EXCEPTION) and is retried, as a raised exception would.
      result->set_error(result->host, error.c_str());
      return 1;
    }
    if (words < g_min_words) {
      Log(PRN_LOG_WARNING,
          std::string(path) + " has only " + std::to_string(words) + " words; skipped");
      continue;  // no row: one failed item
    }
    std::string row = Basename(path) + " " + std::to_string(words) + " " + std::to_string(bytes);
    if (result->emit(result->host, row.data(), row.size()) != 0) {
      result->set_error(result->host, "the host could not store an output row");
      return 1;
    }
  }
  // result->succeeded is left alone: the number of rows emitted is the number of successes.
  g_documents += batch->items;
  return 0;
}

void prn_shutdown(void) {
  Log(PRN_LOG_INFO, "shutting down after " + std::to_string(g_documents) + " documents");
}
