// retryFrom (SPEC.md §2.1): what an earlier run of the job left in its output folder, read so that
// a new run reruns only the mini-batches that failed or never ran there and carries the rows of
// the others into its own output.
//
// An earlier run is described by `<dir>/.parallelrun/plan` (its mini-batches), `journal` (which
// of them completed, with which attempt and item counts) and, for their rows, either
// `output_index` (runtime/output/output_index.h: byte ranges of its assembled file, written when
// it finished) or, for a run that did not finish, its part files `parts/<id>.<attempt>`.
//
// Guarantees:
// - Read only: nothing under `dir` is created, changed or locked.
// - Memory: about 72 bytes per earlier mini-batch; plan records are compared by hash and read
//   back (by offset) only to describe a difference.
// - A mini-batch is offered for carrying over (Carried) only when it completed in the earlier run
//   and, when rows are needed, its rows were found: listed in the output index, or its accepted
//   part file exists with the size its journal recorded. Anything else runs again, so no row is
//   lost or duplicated. A carried part file must also still have the CRC-32 its journal recorded
//   when its rows are copied (RowsOf), or the assembly fails naming it.
// - The output file named by the index must have the size the index recorded; otherwise the file
//   was changed after that run and Load fails.
// Caveats: an earlier run that is still running is read as it is at the time of Load. A
// mini-batch that an unfinished earlier run had itself carried over (from a third run) has no part
// file there, so it runs again.
// Thread-safety: const methods may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/coordinator/plan_file.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/output/assembler.h"
#include "runtime/output/output_index.h"

namespace parallelrun::rt {

// A mini-batch that completed in the earlier run.
struct CarriedMiniBatch {
  int attempt = 0;  // the earlier run's accepted attempt (0: it had carried it over itself)
  int64_t succeeded = 0;
  int64_t failed = 0;
};

class EarlierRun {
 public:
  // Reads the earlier run in `dir`. `need_rows`: this run writes append_row output, so completed
  // mini-batches need their rows. Errors (the caller prefixes "spec.retryFrom (<dir>): "): `dir`
  // is not a parallelrun output folder (no plan or journal), its plan, journal or index cannot be
  // read, its output file no longer matches its index, or rows are needed and the run left
  // neither an output index nor part files.
  static StatusOr<std::unique_ptr<EarlierRun>> Load(const std::string& dir, bool need_rows);

  const std::string& dir() const { return dir_; }
  int64_t records() const { return static_cast<int64_t>(mbs_.size()); }
  bool plan_complete() const { return plan_complete_; }
  int64_t completed() const { return completed_; }        // completed there (not failed)
  int64_t failed() const { return failed_; }              // failed there after runMaxTry tries
  int64_t without_rows() const { return without_rows_; }  // completed, but rows not found
  // Where the rows come from: "its output index" or "its part files" ("" when not needed).
  const std::string& rows_from() const { return rows_from_; }

  // Whether this run's mini-batch `id` (its plan entry) is the one the earlier run planned as
  // `id` (same record hash and length; an id beyond an incomplete earlier plan matches).
  bool Matches(int64_t id, const PlanEntry& entry) const;
  // OK when this run's mini-batch `id` (its record in `this_plan` at `entry`) is the one the
  // earlier run planned as `id`; otherwise InvalidArgument saying what differs (inputs and file
  // names as `spec`, this run's spec, names them). An id beyond the earlier plan is fine only when
  // that plan was incomplete.
  Status Check(int64_t id, const PlanEntry& entry, const PlanReader& this_plan,
               const JobSpec& spec) const;
  // This run's plan is complete with `total` mini-batches: InvalidArgument when the earlier plan
  // had more.
  Status CheckTotal(int64_t total) const;

  // The earlier outcome of mini-batch `id` when it can be carried over, nullopt when it must run.
  std::optional<CarriedMiniBatch> Carried(int64_t id) const;
  // Where the rows of a carried mini-batch are (its header included).
  RowSource RowsOf(int64_t id) const;

 private:
  struct Mb {
    uint64_t record_hash = 0;
    int64_t plan_offset = 0;
    int64_t succeeded = 0;
    int64_t items = 0;
    ByteRange rows;
    int64_t part_bytes = -1;  // the accepted part file's size as journaled (-1: not recorded)
    uint32_t part_crc32 = 0;  // and its CRC-32
    uint32_t plan_length = 0;
    uint16_t attempt = 0;
    uint8_t state = 0;  // kNone, kCompleted, kFailed
    bool has_rows = false;
  };
  EarlierRun() = default;
  Status LoadJournal();
  Status LoadRows();

  std::string dir_, state_dir_;
  bool need_rows_ = false;
  std::vector<Mb> mbs_;
  bool plan_complete_ = false;
  int64_t completed_ = 0;
  int64_t failed_ = 0;
  int64_t without_rows_ = 0;
  std::string rows_from_;
  std::string output_file_;  // index mode: the earlier assembled file
  bool has_header_ = false;
  ByteRange header_;
  std::unique_ptr<PlanReader> plan_reader_;
};

// "input \"docs\": 2 files f0006.txt .. f0007.txt" (the names relative to the input's folder).
std::string DescribeMiniBatch(const MiniBatch& mb, const JobSpec& spec);

}  // namespace parallelrun::rt
