// Cuts a job's inputs into mini-batches (SPEC.md §3). Pure and deterministic: the same inputs give
// the same mini-batch ids (integers from 0 in plan order) and contents. Streaming: memory holds
// one folder listing (file inputs) or a fixed read buffer (tabular), never a whole file or tree.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt {

// Tabular with partition keys: the rows of one partition in one file, as byte ranges of whole
// rows (in file order; blank lines between a partition's rows may be inside a range).
struct TableSegment {
  std::string file;  // relative to the input's folder
  TabularFormat format = TabularFormat::kCsv;
  int64_t header_end = 0;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // [begin, end) byte ranges
  int64_t file_size = -1;
  int64_t file_mtime_ns = -1;
};

struct MiniBatch {
  int64_t id = 0;
  int input_index = 0;  // index into spec.inputs
  // file inputs: paths relative to the input's folder, in plan order.
  std::vector<std::string> files;
  // tabular inputs: one file (relative to the input's folder) and a byte range of whole rows.
  std::string file;
  TabularFormat format = TabularFormat::kCsv;  // resolved: never kAuto here
  int64_t header_end = 0;  // bytes [0, header_end) are the csv header row; 0 = none
  int64_t begin = 0;       // first byte of the first row
  int64_t end = 0;         // one past the last byte of the last row
  int64_t items = 0;       // files, or rows
  // tabular: the file's size and mtime (ns since the epoch) when it was cut, so that a file
  // changed after planning is noticed before its ranges are read (-1: unknown, e.g. a plan
  // record written by an older version).
  int64_t file_size = -1;
  int64_t file_mtime_ns = -1;
  // file inputs: each file's size and mtime when planned, in `files` order (empty: not recorded,
  // e.g. a plan record written by an older version; -1 for a file that could not be stat'ed).
  std::vector<int64_t> file_sizes;
  std::vector<int64_t> file_mtimes_ns;
  // With spec.partition_keys: the partition's key values in partitionKeys order, and (tabular)
  // its rows as segments, one per file, in plan order of the files; `file` is empty then.
  std::vector<std::pair<std::string, std::string>> partition_key_value;
  std::vector<TableSegment> segments;
};

class Partitioner {
 public:
  virtual ~Partitioner() = default;
  // The next mini-batch in plan order, nullopt when the inputs are exhausted. An unreadable file
  // or folder is an error naming it.
  virtual StatusOr<std::optional<MiniBatch>> Next() = 0;
  // Warnings about the inputs walked so far, each once: entries left out because they are not
  // regular files (FIFOs, sockets, devices) or are dangling symbolic links, listed by input.
  virtual std::vector<std::string> TakeWarnings() { return {}; }
};

// `input_dirs[i]` is the folder of spec.inputs[i]. A missing input folder is an error naming the
// input (`spec.inputs[0].source`) and the folder. With spec.partition_keys the inputs are
// partitioned by key (key_partitioner.h), spilling to unnamed files in `scratch_dir` (empty:
// $TMPDIR or /tmp).
StatusOr<std::unique_ptr<Partitioner>> MakePartitioner(const JobSpec& spec,
                                                       const std::vector<std::string>& input_dirs,
                                                       const std::string& scratch_dir = "");

// Tabular splitting of one in-memory buffer (used by the file splitter, the fuzzer and tests):
// returns the byte offsets where rows end (one past each row's last byte, newline included),
// honouring CSV quotes when `csv` is true. Blank lines are rows here (the partitioner does not
// count them as items); a last row without a newline ends at data.size().
std::vector<int64_t> RowEnds(std::string_view data, bool csv);

// The plan file `<output>/.parallelrun/plan`: one JSON object per line, then a line `END`.
std::string EncodePlanRecord(const MiniBatch& mb);
StatusOr<MiniBatch> DecodePlanRecord(std::string_view line);

}  // namespace parallelrun::rt
