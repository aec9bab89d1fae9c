/* parallelrun native entry points: the C ABI between a scoring library and parallelrun.
 *
 * A native entry point is a shared library (`entryScript: libscorer.so`) that exports the
 * functions declared below with C linkage. parallelrun's native host loads it into one worker
 * process (`parallelrun-native-host`), calls prn_init() once, prn_run() once per mini-batch and
 * prn_shutdown() at the end, exactly as the Python host calls init(), run() and shutdown().
 *
 *   exported symbol   required  called
 *   prn_abi_version   yes       first; must return PRN_ABI_VERSION (the one this file defines)
 *   prn_init          no        once, before any prn_run(); non-zero return = init failure
 *   prn_run           yes       once per mini-batch, on the host's main thread
 *   prn_shutdown      no        once, when the worker is shut down in an orderly way
 *
 * Failure semantics (same as a Python entry script):
 *   - prn_init() returns non-zero (or throws): INIT_FAILED; the worker is replaced.
 *   - prn_run() returns non-zero (or throws): RUN_EXCEPTION; the mini-batch is retried, the
 *     worker keeps running.
 *   - prn_run() takes longer than runInvocationTimeout: RUN_TIMEOUT; the process is killed and
 *     replaced, the mini-batch retried.
 *   - The process dies (segfault, abort(), exit(), out of memory): WORKER_DIED with the signal or
 *     exit code; the mini-batch is retried in a new worker. A crash fails the attempt, not the
 *     node. The host prints the signal and a backtrace to the worker's stderr log.
 *   - A library that cannot be loaded, lacks prn_abi_version or prn_run, or reports another ABI
 *     version: INIT_FAILED naming the library and what is wrong.
 *
 * Threads: the host calls every function on its main thread, one call at a time. The library may
 * start its own threads. ctx->log may be called from any thread at any time; the callbacks of a
 * prn_result from any thread, but only while the prn_run() call that received it is running.
 *
 * Output: rows are passed to result->emit(), one row per call; the host writes each as is
 * followed by '\n' to the mini-batch's part file (so a row should not contain '\n'). As with a
 * Python list, rows end up in the job's append_row output file in mini-batch order.
 * printf/std::cout and stderr go to the worker's logs/user/stdout and logs/user/stderr files.
 *
 * Build: any C or C++ compiler producing a shared library for the machine, e.g.
 *   g++ -std=c++17 -O2 -shared -fPIC -I<parallelrun>/runtime/hosts/native scorer.cc -o libscorer.so
 * Libraries the entry point itself links against are found through its RUNPATH: link with
 * -Wl,-rpath,'$ORIGIN' to ship them next to it in sourceDirectory.
 *
 * Versioning: PRN_ABI_VERSION changes whenever a struct below or a function's meaning changes; a
 * host loads only libraries built for its own version. Fields are never reordered within a
 * version.
 */
#ifndef PARALLELRUN_NATIVE_H_
#define PARALLELRUN_NATIVE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PRN_ABI_VERSION 1

/* Log levels (the numbers of Python's logging module). */
#define PRN_LOG_DEBUG 10
#define PRN_LOG_INFO 20
#define PRN_LOG_WARNING 30
#define PRN_LOG_ERROR 40

/* What the worker knows about its job; passed to prn_init(). The struct and every string in it
 * stay valid until the process exits, so the library may keep the pointer. */
typedef struct prn_context {
  int abi_version;         /* PRN_ABI_VERSION of the host */
  int argc;                /* 1 + the number of the job's expanded `arguments` */
  const char* const* argv; /* argv[0]: the library's path; then the arguments; argv[argc] = NULL */
  const char* entry_point; /* absolute path of the library (= argv[0]) */
  const char* node;        /* the node's name (its IP; locally 127.0.0.<i+1>) */
  const char* process;     /* "process000", "process001", ... */
  const char* output_dir;  /* the job's output folder */
  const char* log_dir;     /* <output>/logs/user/entry_script_log/<node>/ (created by the host);
                              prefix file names written there with `process` */
  const char* working_dir; /* a scratch folder private to this worker (exists, writable) */
  const char* input_type;  /* "file" or "tabular" */
  int log_level;           /* PRN_LOG_* of the job's loggingLevel: messages below it are dropped */
  /* Appends `message` to <log_dir>/<process>.log.txt as a `time|LEVEL|pid|thread|message` line
   * (UTC), if `level` >= log_level. Thread-safe; callable at any time until the process exits. */
  void (*log)(int level, const char* message);
  /* Why prn_init() failed: call it before returning non-zero. The first line becomes the
   * error reported for the worker, all of it goes to logs/user/error/. During prn_run() it is
   * the same as result->set_error(). */
  void (*set_error)(const char* message);
} prn_context;

/* Kinds of mini-batch. */
#define PRN_BATCH_FILES 0 /* a list of file paths */
#define PRN_BATCH_TABLE 1 /* a range of rows of one csv or jsonl file */

/* One mini-batch; valid during the prn_run() call only. */
typedef struct prn_batch {
  int64_t mini_batch_id;
  int attempt;   /* 1 for the first try of this mini-batch */
  int kind;      /* PRN_BATCH_FILES or PRN_BATCH_TABLE */
  int64_t items; /* number of files, or of rows in the range */

  /* PRN_BATCH_FILES: `items` absolute paths. NULL for a table. */
  const char* const* files;

  /* PRN_BATCH_TABLE: the rows are bytes [begin, end) of table_path, whole rows only (a quoted csv
   * field may span lines). The host has read them already: `data`/`data_size`; for a csv with a
   * header, bytes [0, header_end) (the header line) are in `header`/`header_size`. Neither is
   * NUL-terminated. NULL and 0 for a file batch. */
  const char* table_path;
  const char* format; /* "csv" or "jsonl" */
  int has_header;     /* csv: 1 when the file's first line is a header (header_end > 0) */
  int64_t header_end;
  int64_t begin;
  int64_t end;
  const char* header;
  size_t header_size;
  const char* data;
  size_t data_size;
} prn_batch;

/* Where prn_run() puts its outcome. */
typedef struct prn_result {
  void* host; /* pass to the callbacks below */
  /* Adds one output row of `len` bytes (need not be NUL-terminated). Returns 0, or non-zero
   * when the row could not be stored (then return non-zero from prn_run()). */
  int (*emit)(void* host, const char* row, size_t len);
  /* Why prn_run() failed: call it before returning non-zero. The first line becomes the attempt's
   * error, all of it goes to logs/user/error/ and the report. */
  void (*set_error)(void* host, const char* message);
  /* Items that succeeded. Starts at -1, meaning "the number of rows emitted" (like len() of a
   * Python result). Clamped to [0, items]; the rest of the items count as failed. */
  int64_t succeeded;
} prn_result;

/* Exported even from a library compiled with -fvisibility=hidden: the definitions inherit the
 * visibility of these declarations. */
#if defined(__GNUC__)
#define PRN_EXPORT __attribute__((visibility("default")))
#else
#define PRN_EXPORT
#endif

/* The functions a library exports (prn_init and prn_shutdown may be left out). A C++ exception
 * escaping prn_init() or prn_run() is caught and reported like a non-zero return, but an
 * exception should not cross a C interface: catch it and call set_error() instead. */
PRN_EXPORT int prn_abi_version(void);
PRN_EXPORT int prn_init(const prn_context* ctx);
PRN_EXPORT int prn_run(const prn_batch* batch, prn_result* result);
PRN_EXPORT void prn_shutdown(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARALLELRUN_NATIVE_H_ */
