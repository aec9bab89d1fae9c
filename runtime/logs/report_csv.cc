#include "runtime/logs/report_csv.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace parallelrun::rt {
namespace {

void AppendNumber(std::string& out, double v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", v);
  out.append(buf, static_cast<size_t>(n));
}

}  // namespace

std::string CsvField(std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out;
  out.reserve(value.size() + 2);
  out.push_back('"');
  for (char c : value) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string FormatReportRow(const ReportRow& row) {
  std::string out;
  out.reserve(128 + row.error.size() + row.detail.size());
  out += std::to_string(row.mini_batch_id);
  out += ',';
  out += std::to_string(row.attempt);
  out += row.accepted ? ",1," : ",0,";
  out += CsvField(row.node);
  out += ',';
  out += CsvField(row.process);
  out += ',';
  out += CsvField(row.start_utc);
  out += ',';
  out += std::to_string(row.total);
  out += ',';
  out += std::to_string(row.succeeded);
  out += ',';
  out += std::to_string(row.failed);
  out += ',';
  AppendNumber(out, row.elapsed_s);
  out += ',';
  AppendNumber(out, row.cpu_s);
  out += ',';
  AppendNumber(out, row.run_s);
  out += ',';
  out += CsvField(row.status);
  out += ',';
  out += CsvField(row.error);
  out += ',';
  out += CsvField(row.detail);
  out += '\n';
  return out;
}

StatusOr<std::unique_ptr<ReportCsv>> ReportCsv::Open(const std::string& path) {
  PR_ASSIGN_OR_RETURN(AppendFile file, AppendFile::Open(path));
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && st.st_size == 0) {
    PR_RETURN_IF_ERROR(file.Append(std::string(kReportCsvHeader) + "\n"));
  }
  return std::unique_ptr<ReportCsv>(new ReportCsv(std::move(file)));
}

Status ReportCsv::Append(const std::vector<ReportRow>& rows) {
  std::string text;
  for (const auto& row : rows) text += FormatReportRow(row);
  return AppendFormatted(text);
}

StatusOr<ReportScan> ScanReportCsv(const std::string& path) {
  ReportScan scan;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return scan;
    return InternalError("cannot read the report " + path + ": " + std::strerror(errno));
  }
  // One pass: a record ends at an LF outside quotes; its first two fields are the key.
  bool quoted = false, header = true;
  int64_t offset = 0;
  int field = 0;
  std::string first, second;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < n; ++i, ++offset) {
      const char c = buf[i];
      if (c == '"') {
        quoted = !quoted;  // a doubled quote toggles twice
      } else if (quoted) {
        continue;
      } else if (c == ',') {
        ++field;
      } else if (c == '\n') {
        if (!header) {
          ++scan.rows;
          scan.last_id = std::strtoll(first.c_str(), nullptr, 10);
          scan.last_attempt = static_cast<int>(std::strtol(second.c_str(), nullptr, 10));
        }
        header = false;
        scan.valid_bytes = offset + 1;
        field = 0;
        first.clear();
        second.clear();
      } else if (field == 0 && first.size() < 24) {
        first.push_back(c);
      } else if (field == 1 && second.size() < 24) {
        second.push_back(c);
      }
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return InternalError("cannot read the report " + path);
  scan.size = offset;
  return scan;
}

Status ReportCsv::AppendFormatted(std::string_view records) {
  if (records.empty()) return Status::Ok();
  return file_.Append(records);
}

}  // namespace parallelrun::rt
