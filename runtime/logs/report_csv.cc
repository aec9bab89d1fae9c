#include "runtime/logs/report_csv.h"

#include <sys/stat.h>

#include <cstdio>

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

Status ReportCsv::AppendFormatted(std::string_view records) {
  if (records.empty()) return Status::Ok();
  return file_.Append(records);
}

}  // namespace parallelrun::rt
