// KeyPartitioner: mini-batches by partition key (spec.partitionKeys, SPEC.md §3). Internal to
// the partitioner; MakePartitioner() builds it when the spec has partition keys.
//
// Each input in spec order is scanned in full first (every mini-batch must hold all of its
// partition's items), then its partitions come out in order of first appearance in plan order
// (folders walked as FileWalker does, rows in file order). File inputs: a file's key values are
// the captures of the input's partitionFormat in its path relative to the input folder; files
// that do not match are left out with a warning naming them (no file matching is an error).
// Tabular inputs: a row's key values are its columns named by the keys (CSV fields unquoted;
// JSON lines: strings as they are, other values as JSON text), compared as text; a file without
// one of the columns is an error naming the file and the column.
//
// Guarantees (bounded memory): what is held is one entry per distinct key combination (its
// values and two counters), one per tabular file (name, header end, fingerprint), one read
// buffer and at most one row being assembled across buffer refills, never the rows or the file
// list of a file input. Each run of consecutive rows (or each file) of a partition is spilled as
// a fixed-size record to an unnamed temporary file in the scratch folder; once the input is
// scanned the records are scattered into a second such file grouped by partition (counting
// sort: one sequential read, one positioned write each), from which each mini-batch is read in
// turn. The files vanish when the partitioner is destroyed (O_TMPFILE, or unlinked at once).
//
// Caveat: a mini-batch record lists one byte range per run of its rows, so a partition whose
// rows alternate with other partitions' rows row by row makes a record as long as its rows.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/partitioner/partitioner.h"

namespace parallelrun::rt::internal {

// `dirs[i]` is the (existing) folder of spec.inputs[i]; spec.partition_keys is non-empty.
std::unique_ptr<Partitioner> MakeKeyPartitioner(const JobSpec& spec, std::vector<std::string> dirs,
                                                std::string scratch_dir);

// The fields of one CSV row (without its line end), unquoted as pandas' C parser does: a quote
// opens a quoted field only as its first byte, "" inside quotes is one quote, and text after the
// closing quote continues the field.
std::vector<std::string> SplitCsvRow(std::string_view row);

}  // namespace parallelrun::rt::internal
