// `logs/sys/job_report/processed_mini-batches.csv` (SPEC.md §5): one row per attempt, written as
// results arrive.
//
// Guarantees: the file starts with exactly kReportCsvHeader; rows are RFC 4180 (fields holding a
// comma, a double quote, CR or LF are quoted, quotes doubled; records end in LF, which every CSV
// reader accepts); each Append is one write(2), so a reader never sees half a batch of rows
// interleaved with another batch, and `tail -f` sees rows at once.
// Caveats: not fsync'd (the journal is the durable record; this is its human view).
// Thread-safety: none; the coordinator serializes calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/status.h"

namespace parallelrun::rt {

inline constexpr const char* kReportCsvHeader =
    "mini_batch_id,attempt,accepted,node,process,start_utc,total,succeeded,failed,elapsed_s,cpu_s,"
    "run_s,status,error,detail";

struct ReportRow {
  int64_t mini_batch_id = 0;
  int attempt = 1;
  bool accepted = false;  // the one attempt whose result counts
  std::string node;
  std::string process;
  std::string start_utc;
  int64_t total = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  double elapsed_s = 0;
  double cpu_s = 0;
  double run_s = 0;
  std::string status;
  std::string error;
  std::string detail;
};

// One RFC 4180 field: as is, or quoted with inner quotes doubled when needed.
std::string CsvField(std::string_view value);
// One record, LF-terminated.
std::string FormatReportRow(const ReportRow& row);

// What ScanReportCsv found in an existing report.
struct ReportScan {
  int64_t rows = 0;         // complete records after the header
  int64_t valid_bytes = 0;  // where the last complete record ends (a torn tail starts there)
  int64_t size = 0;         // the file's size
  int64_t last_id = -1;     // the last complete record's mini_batch_id and attempt
  int last_attempt = 0;
};

// Reads the report at `path` record by record (quoted fields may hold line breaks). A missing
// file is an empty report.
StatusOr<ReportScan> ScanReportCsv(const std::string& path);

class ReportCsv {
 public:
  // Opens `path` for appending (folders created); writes the header when the file is new or empty.
  static StatusOr<std::unique_ptr<ReportCsv>> Open(const std::string& path);
  // Appends the rows in one write.
  Status Append(const std::vector<ReportRow>& rows);
  // Appends already formatted records (FormatReportRow output).
  Status AppendFormatted(std::string_view records);

 private:
  explicit ReportCsv(AppendFile file) : file_(std::move(file)) {}
  AppendFile file_;
};

}  // namespace parallelrun::rt
