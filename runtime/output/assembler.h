// Assembles the append_row output file (SPEC.md §4.4): the rows of the accepted mini-batches, in
// mini-batch order, concatenated into `<output>/<appendRowFileName>`. A mini-batch's rows come
// from its part file, or (retryFrom) from a byte range of an earlier run's assembled file.
//
// Guarantees:
// - Atomic: rows go to a hidden temporary file in the output folder, which is fsync'd and renamed
//   over the final name (then the folder is fsync'd). Readers see the old file or the whole new
//   one; an interrupted assembly leaves the final name untouched.
// - Streaming: a fixed 1 MiB buffer; never a whole part or the whole output in memory.
// - Rows never merge: a non-empty source that does not end in a newline gets one.
// - Header (appendRowHeader): the header of the first mini-batch, in mini-batch order, that has
//   one is written once at the top.
// - Index (when index_file is set): the output index (runtime/output/output_index.h) of the new
//   file. A stale index is removed before the new file takes the final name and the new index is
//   renamed into place right after, so an index never describes another file than the one next
//   to it (after a crash in between there is no index; the caller assembles again).
// - Verified: a part file with a recorded size and CRC-32 (runtime/output/part_file.h, taken by
//   the agent when the part was written) must still have them; the CRC is computed while the part
//   is copied, so the check costs no extra read. A part that was deleted, truncated or rewritten
//   after its result was accepted fails the assembly naming the file and the mini-batch: the job
//   never ends with fewer rows than it accepted.
// Caveats: only a source with must_exist == false (none that the coordinator makes) may be
// missing: it is counted in AssemblyStats and contributes no rows (nor an index record). A byte
// range that cannot be read whole (its file is missing or shorter) fails the assembly: those rows
// were promised.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

struct AssemblyOptions {
  std::string output_file;  // absolute path of the final file
  bool header = false;      // write a header line (RowSource header fields)
  std::string index_file;   // where to write the output index; "" for none
  // Called after each part with (parts done, bytes written so far); the caller throttles.
  std::function<void(int64_t, int64_t)> on_progress;
  // Checked between parts; when set the assembly stops with Aborted and removes its temp file.
  const std::atomic<bool>* cancel = nullptr;
};

// Where one mini-batch's rows (and its header line) come from.
struct RowSource {
  std::string path;        // "" when the mini-batch has no rows (it failed)
  int64_t offset = 0;      // a byte range of `path`;
  int64_t length = -1;     // -1: the whole file (a part file, which may be missing)
  bool must_exist = true;  // false: a missing whole file is counted instead of failing
  // Whole-file sources: what the part was when its result was accepted (-1 / nullopt: unknown,
  // e.g. a journal written before part checksums existed).
  int64_t expected_bytes = -1;
  std::optional<uint32_t> expected_crc32;
  std::string header_path;  // "" when it has no header; a missing file means none
  int64_t header_offset = 0;
  int64_t header_length = -1;  // -1: the whole file
};

// The part file `path` of an attempt and its `<path>.header`; it must exist.
RowSource PartFileSource(const std::string& path);

struct AssemblyStats {
  int64_t parts = 0;                          // sources copied
  int64_t bytes = 0;                          // bytes in the final file
  int64_t missing_parts = 0;                  // must_exist == false sources that did not exist
  std::vector<std::string> missing_examples;  // the first few missing paths
  bool header_written = false;
};

// `source(i)` for i in [0, count) says where the rows of mini-batch i come from. Called at most
// twice per index (once more when looking for a header).
StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<RowSource(int64_t)>& source);
// The same with `part_path(i)`: the accepted part file of mini-batch i, or "" when it has none.
StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<std::string(int64_t)>& part_path);

}  // namespace parallelrun::rt
