// Assembles the append_row output file (SPEC.md §4.4): the accepted part files, in mini-batch
// order, concatenated into `<output>/<appendRowFileName>`.
//
// Guarantees:
// - Atomic: rows go to a hidden temporary file in the output folder, which is fsync'd and renamed
//   over the final name (then the folder is fsync'd). Readers see the old file or the whole new
//   one; an interrupted assembly leaves the final name untouched.
// - Streaming: a fixed 1 MiB buffer; never a whole part or the whole output in memory.
// - Rows never merge: a non-empty part that does not end in a newline gets one.
// - Header (appendRowHeader): the `<part>.header` file of the first part, in mini-batch order,
//   that has one is written once at the top.
// Caveats: a part that is missing is counted in AssemblyStats (the caller reports it) and
// contributes no rows.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

struct AssemblyOptions {
  std::string output_file;  // absolute path of the final file
  bool header = false;      // look for `<part>.header` files
  // Called after each part with (parts done, bytes written so far); the caller throttles.
  std::function<void(int64_t, int64_t)> on_progress;
  // Checked between parts; when set the assembly stops with Aborted and removes its temp file.
  const std::atomic<bool>* cancel = nullptr;
};

struct AssemblyStats {
  int64_t parts = 0;                          // parts copied
  int64_t bytes = 0;                          // bytes in the final file
  int64_t missing_parts = 0;                  // accepted parts that did not exist
  std::vector<std::string> missing_examples;  // the first few missing paths
  bool header_written = false;
};

// `part_path(i)` for i in [0, count) is the accepted part of mini-batch i, or "" when mini-batch i
// has none (it failed). Called at most twice per index (once more when looking for a header).
StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<std::string(int64_t)>& part_path);

}  // namespace parallelrun::rt
