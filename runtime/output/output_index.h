// The output index `<output>/.parallelrun/output_index`: where each mini-batch's rows lie in an
// assembled append_row file. The assembler writes it next to the file it assembles; a later run
// with `retryFrom` (SPEC.md §2.1) reads it to copy the rows of the mini-batches that completed,
// since the part files are gone once a job has finished.
//
// Format (text, one record per line, ids ascending):
//   parallelrun output index v1
//   file <name of the output file, in the output folder>
//   header <offset> <length>          only when a header line was written
//   <mini-batch id> <offset> <length>  one per mini-batch whose rows are in the file
//   end <bytes in the output file>
//
// Guarantees: the writer streams (a fixed buffer, never the whole index in memory) and Finish
// fsyncs; the reader checks every line (ids ascending, ranges inside the file, the end line
// present) and names the file and line of the first problem. A mini-batch that completed but
// whose part was missing at assembly has no record: it has no rows to reuse.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "runtime/base/files.h"
#include "runtime/base/status.h"

namespace parallelrun::rt {

inline constexpr const char* kOutputIndexFile = "output_index";  // in <output>/.parallelrun/
inline constexpr const char* kOutputIndexMagic = "parallelrun output index v1";

struct ByteRange {
  int64_t offset = 0;
  int64_t length = 0;
};

struct OutputIndexInfo {
  std::string file_name;  // the output file's name, relative to the output folder
  int64_t file_bytes = 0;
  bool has_header = false;
  ByteRange header;
  int64_t entries = 0;
};

class OutputIndexWriter {
 public:
  // Creates (truncates) `path` and writes the first lines.
  static StatusOr<OutputIndexWriter> Open(const std::string& path, const std::string& file_name);
  OutputIndexWriter(OutputIndexWriter&&) = default;
  OutputIndexWriter& operator=(OutputIndexWriter&&) = default;

  Status AddHeader(ByteRange range);
  // Ids must ascend.
  Status Add(int64_t id, ByteRange range);
  // Writes the end line and fsyncs the file.
  Status Finish(int64_t file_bytes);
  const std::string& path() const { return file_.path(); }

 private:
  explicit OutputIndexWriter(AppendFile file) : file_(std::move(file)) {}
  Status Put(std::string line);
  AppendFile file_;
  std::string buffer_;
};

// Reads the index at `path`, calling `on_entry(id, range)` for each mini-batch record in order.
// NotFound when the file does not exist; InvalidArgument naming the line when it is malformed.
StatusOr<OutputIndexInfo> ReadOutputIndex(const std::string& path,
                                          const std::function<void(int64_t, ByteRange)>& on_entry);

}  // namespace parallelrun::rt
