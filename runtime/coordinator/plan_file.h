// The plan file `<output>/.parallelrun/plan` (SPEC.md §3): one EncodePlanRecord line per
// mini-batch in id order, then a line `END`.
//
// Guarantees: PlanWriter makes records durable in batches (Flush = write + fdatasync) and reports
// where each record lies, so the coordinator leases a mini-batch only once its record is durable
// and can forget the record's contents: PlanReader reads it back by offset when leasing.
// LoadPlan reads a plan written by an earlier coordinator of the same job.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/base/files.h"
#include "runtime/base/status.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/partitioner/partitioner.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

inline constexpr const char* kPlanEnd = "END";

// The PlanEntry::record_hash of an encoded record (without its newline), leaving out a tabular
// record's file fingerprint (size, mtime). Stable within one build; not stored anywhere.
uint64_t PlanRecordHash(std::string_view record);

// Not thread-safe: one planner thread writes.
class PlanWriter {
 public:
  // Appends to `path` from `valid_bytes` on (anything after, a torn last line, is cut).
  static StatusOr<std::unique_ptr<PlanWriter>> Open(const std::string& path, int64_t valid_bytes);
  // Buffers the record of `mb`; returns where it will lie once flushed.
  PlanEntry Add(const MiniBatch& mb);
  void AddEnd();
  // Writes what is buffered and fdatasyncs it.
  Status Flush();
  size_t buffered_records() const { return buffered_records_; }

 private:
  PlanWriter(AppendFile file, int64_t size) : file_(std::move(file)), size_(size) {}
  AppendFile file_;
  int64_t size_;  // bytes in the file plus the buffer
  std::string buffer_;
  size_t buffered_records_ = 0;
};

// Thread-safe (pread).
class PlanReader {
 public:
  ~PlanReader();
  static StatusOr<std::unique_ptr<PlanReader>> Open(const std::string& path);
  StatusOr<MiniBatch> Read(const PlanEntry& entry) const;
  // The encoded record, as it is in the file.
  StatusOr<std::string> ReadRecord(const PlanEntry& entry) const;
  // `length` bytes from `offset` (several records back to back: one pread for a lease's records).
  StatusOr<std::string> ReadSpan(int64_t offset, size_t length) const;
  // Decodes a record read at `offset`; errors name the file and the offset.
  StatusOr<MiniBatch> Decode(std::string_view record, int64_t offset) const;

 private:
  PlanReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// A partitioned tabular record's segments as a lease carries them (paths joined to `input_dir`).
std::vector<protocol::LeaseSegment> LeaseSegments(const std::string& input_dir,
                                                  const std::vector<TableSegment>& segments);

struct LoadedPlan {
  int64_t records = 0;
  bool complete = false;    // the END line is there
  int64_t valid_bytes = 0;  // where appending continues
};

// Reads an existing plan, calling `on_record` for each record in id order. A missing file is an
// empty plan. A record that does not decode, or ids out of order, is an error naming the file and
// the line.
StatusOr<LoadedPlan> LoadPlan(const std::string& path,
                              const std::function<void(const PlanEntry&)>& on_record);

}  // namespace parallelrun::rt
