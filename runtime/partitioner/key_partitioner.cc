#include "runtime/partitioner/key_partitioner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <utility>

#include "runtime/jobspec/partition_format.h"
#include "runtime/partitioner/file_walker.h"
#include "runtime/partitioner/row_scanner.h"
#include "runtime/partitioner/spill_file.h"

namespace parallelrun::rt::internal {
namespace {

constexpr size_t kReadBufferSize = size_t{1} << 20;
constexpr size_t kNamed = 10;  // names listed in one warning; the rest are counted

std::string InputField(size_t i) { return "spec.inputs[" + std::to_string(i) + "]"; }

Status Errno(const std::string& what) { return InternalError(what + ": " + std::strerror(errno)); }

// One run of consecutive rows of one partition in one file (tabular), or one file (file inputs:
// `a` is the offset of its FileEntry in the names file and `b` the length of its name).
struct RunRecord {
  uint64_t partition = 0;
  uint64_t a = 0;    // tabular: file index
  int64_t b = 0;     // tabular: first byte
  int64_t c = 0;     // tabular: one past the last byte
  int64_t rows = 0;  // items
};

// File inputs: what the names file holds per file, followed by the file's name: its fingerprint
// when planned (-1, -1 when it cannot be stat'ed: the attempt will say it is gone).
struct FileEntry {
  int64_t size = -1;
  int64_t mtime_ns = -1;
};

FileEntry StatFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return FileEntry{};
  return FileEntry{static_cast<int64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

struct TableFile {
  std::string name;
  TabularFormat format = TabularFormat::kCsv;
  int64_t header_end = 0;
  int64_t size = -1;
  int64_t mtime_ns = -1;
};

struct PartitionInfo {
  std::vector<std::string> values;  // in partitionKeys order
  int64_t runs = 0;
  int64_t items = 0;
  int64_t first_slot = 0;  // index of its first run in the grouped file
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

StatusOr<TabularFormat> FileFormat(const Input& input, size_t index, const std::string& rel) {
  if (input.format != TabularFormat::kAuto) return input.format;
  const size_t dot = rel.rfind('.');
  const size_t slash = rel.rfind('/');
  const std::string ext = dot == std::string::npos || (slash != std::string::npos && dot < slash)
                              ? ""
                              : Lower(rel.substr(dot + 1));
  if (ext == "csv") return TabularFormat::kCsv;
  if (ext == "jsonl" || ext == "json" || ext == "ndjson") return TabularFormat::kJsonl;
  const std::string field = InputField(index) + ".format";
  return InvalidArgumentError(field + ": cannot tell the format of " + rel +
                              " from its extension (known: .csv, .jsonl, .json, .ndjson); set " +
                              field + " to csv or jsonl");
}

std::string_view StripLineEnd(std::string_view row) {
  if (row.ends_with("\r\n")) return row.substr(0, row.size() - 2);
  if (row.ends_with('\n') || row.ends_with('\r')) return row.substr(0, row.size() - 1);
  return row;
}

std::string ListNames(const std::vector<std::string>& names, size_t total) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : "") + names[i];
  if (total > names.size()) text += " and " + std::to_string(total - names.size()) + " more";
  return text;
}

class KeyPartitioner;

// Scans one tabular file, calling back with each run of consecutive rows of one partition.
class TableKeyScanner {
 public:
  TableKeyScanner(KeyPartitioner* owner, const std::vector<std::string>& keys, bool header,
                  char* buffer)
      : owner_(owner), keys_(keys), header_(header), buffer_(buffer) {}
  // Scans `path` (shown as `rel` in errors); fills file->header_end, size and mtime.
  Status Scan(const std::string& path, const std::string& rel, uint64_t file_index,
              TableFile* file);

 private:
  bool OnRow(int64_t end, bool blank);
  Status RowValues(std::string_view row, int64_t begin, std::vector<std::string>* values);
  Status HeaderColumns(std::string_view row);
  Status FlushRun();

  KeyPartitioner* owner_;
  const std::vector<std::string>& keys_;
  const bool header_;
  char* buffer_;
  bool csv_ = true;
  std::string rel_;
  uint64_t file_index_ = 0;
  std::string carry_;        // bytes of the row being read that came in earlier buffers
  int64_t buffer_base_ = 0;  // file offset of buffer_[0]
  size_t len_ = 0;
  int64_t row_start_ = 0;
  bool header_pending_ = false;
  int64_t header_end_ = 0;
  std::vector<size_t> columns_;  // csv: field index of each key
  std::optional<RunRecord> run_;
  std::vector<std::string> values_;
  Status error_;
};

class KeyPartitioner : public Partitioner {
 public:
  KeyPartitioner(const JobSpec& spec, std::vector<std::string> dirs, std::string scratch_dir)
      : inputs_(spec.inputs),
        keys_(spec.partition_keys),
        dirs_(std::move(dirs)),
        scratch_(std::move(scratch_dir)) {}

  StatusOr<std::optional<MiniBatch>> Next() override {
    if (!error_.ok()) return error_;
    auto next = Advance();
    if (!next.ok()) error_ = next.status();
    return next;
  }

  std::vector<std::string> TakeWarnings() override {
    std::vector<std::string> out;
    out.swap(warnings_);
    return out;
  }

  // The scanners' way in: the partition of these key values (a new one at the end if unseen).
  uint64_t PartitionOf(const std::vector<std::string>& values) {
    std::string key;
    for (const std::string& v : values) key += std::to_string(v.size()) + ":" + v;
    auto [it, inserted] = index_.try_emplace(std::move(key), partitions_.size());
    if (inserted) partitions_.push_back(PartitionInfo{values, 0, 0, 0});
    return it->second;
  }
  Status AddRun(const RunRecord& run) {
    PartitionInfo& p = partitions_[run.partition];
    ++p.runs;
    p.items += run.rows;
    return runs_->Append(&run, sizeof run);
  }

 private:
  StatusOr<std::optional<MiniBatch>> Advance() {
    while (current_ < inputs_.size()) {
      if (!scanned_) {
        PR_RETURN_IF_ERROR(ScanInput());
        scanned_ = true;
      }
      if (emitted_ < partitions_.size()) {
        PR_ASSIGN_OR_RETURN(MiniBatch mb, Emit(emitted_++));
        return std::optional<MiniBatch>(std::move(mb));
      }
      ResetInput();
      ++current_;
    }
    return std::optional<MiniBatch>();
  }

  void ResetInput() {
    scanned_ = false;
    emitted_ = 0;
    partitions_.clear();
    index_.clear();
    tables_.clear();
    runs_.reset();
    grouped_.reset();
    names_.reset();
  }

  Status ScanInput();
  Status ScanFileInput(FileWalker* walker);
  Status ScanTableInput(FileWalker* walker);
  Status GroupRuns();
  StatusOr<MiniBatch> Emit(size_t p);
  void WarnSkipped(const FileWalker& walker);

  const std::vector<Input> inputs_;
  const std::vector<std::string> keys_;
  const std::vector<std::string> dirs_;
  const std::string scratch_;
  size_t current_ = 0;
  bool scanned_ = false;
  size_t emitted_ = 0;
  int64_t next_id_ = 0;
  Status error_;
  std::vector<PartitionInfo> partitions_;
  std::unordered_map<std::string, uint64_t> index_;
  std::vector<TableFile> tables_;
  std::unique_ptr<SpillFile> runs_;     // RunRecords in scan order
  std::unique_ptr<SpillFile> grouped_;  // the same, grouped by partition
  std::unique_ptr<SpillFile> names_;    // file inputs: the names of the files
  std::unique_ptr<char[]> buffer_;
  std::vector<std::string> warnings_;
};

// ---- scanning ----

Status KeyPartitioner::ScanInput() {
  PR_ASSIGN_OR_RETURN(runs_, SpillFile::Open(scratch_));
  FileWalker walker(dirs_[current_], inputs_[current_].pattern, InputField(current_));
  if (inputs_[current_].type == InputType::kFile) {
    PR_ASSIGN_OR_RETURN(names_, SpillFile::Open(scratch_));
    PR_RETURN_IF_ERROR(ScanFileInput(&walker));
    PR_RETURN_IF_ERROR(names_->Flush());
  } else {
    PR_RETURN_IF_ERROR(ScanTableInput(&walker));
  }
  WarnSkipped(walker);
  PR_RETURN_IF_ERROR(runs_->Flush());
  return GroupRuns();
}

Status KeyPartitioner::ScanFileInput(FileWalker* walker) {
  const Input& input = inputs_[current_];
  const std::string field = InputField(current_) + ".partitionFormat";
  auto format = PartitionFormat::Parse(input.partition_format);
  if (!format.ok()) return InvalidArgumentError(field + ": " + format.status().message());
  std::vector<size_t> capture_of_key;  // index into the captures for each key
  for (const std::string& key : keys_) {
    const auto& names = format->names();
    const auto it = std::find(names.begin(), names.end(), key);
    if (it == names.end()) {
      return InvalidArgumentError(field + ": \"" + input.partition_format +
                                  "\" does not capture {" + key + "} (spec.partitionKeys)");
    }
    capture_of_key.push_back(static_cast<size_t>(it - names.begin()));
  }
  std::vector<std::string> captures, values(keys_.size()), unmatched;
  size_t unmatched_count = 0, files = 0;
  while (true) {
    PR_ASSIGN_OR_RETURN(std::optional<std::string> file, walker->Next());
    if (!file) break;
    ++files;
    if (!format->Match(*file, &captures)) {
      if (unmatched.size() < kNamed) unmatched.push_back(*file);
      ++unmatched_count;
      continue;
    }
    for (size_t k = 0; k < keys_.size(); ++k) values[k] = captures[capture_of_key[k]];
    RunRecord run{PartitionOf(values), static_cast<uint64_t>(names_->size()),
                  static_cast<int64_t>(file->size()), 0, 1};
    const FileEntry entry = StatFile(dirs_[current_] + "/" + *file);
    PR_RETURN_IF_ERROR(names_->Append(&entry, sizeof entry));
    PR_RETURN_IF_ERROR(names_->Append(file->data(), file->size()));
    PR_RETURN_IF_ERROR(AddRun(run));
  }
  if (unmatched_count == 0) return Status::Ok();
  const std::string list = ListNames(unmatched, unmatched_count);
  if (unmatched_count == files) {
    return InvalidArgumentError(field + ": none of the " + std::to_string(files) + " files of " +
                                dirs_[current_] + " matches \"" + input.partition_format +
                                "\" (paths are relative to the input folder): " + list);
  }
  warnings_.push_back(field + ": left out " + std::to_string(unmatched_count) + " file" +
                      (unmatched_count == 1 ? "" : "s") + " of " + dirs_[current_] +
                      " that do not match \"" + input.partition_format + "\": " + list);
  return Status::Ok();
}

Status KeyPartitioner::ScanTableInput(FileWalker* walker) {
  const Input& input = inputs_[current_];
  if (!buffer_) buffer_ = std::make_unique<char[]>(kReadBufferSize);
  while (true) {
    PR_ASSIGN_OR_RETURN(std::optional<std::string> rel, walker->Next());
    if (!rel) return Status::Ok();
    TableFile file;
    PR_ASSIGN_OR_RETURN(file.format, FileFormat(input, current_, *rel));
    file.name = *rel;
    TableKeyScanner scanner(this, keys_, file.format == TabularFormat::kCsv && input.header,
                            buffer_.get());
    PR_RETURN_IF_ERROR(scanner.Scan(dirs_[current_] + "/" + *rel, *rel, tables_.size(), &file));
    tables_.push_back(std::move(file));
  }
}

void KeyPartitioner::WarnSkipped(const FileWalker& walker) {
  const std::vector<std::string>& skipped = walker.skipped();
  if (skipped.empty()) return;
  std::vector<std::string> named(skipped.begin(),
                                 skipped.begin() + std::min(skipped.size(), kNamed));
  warnings_.push_back(InputField(current_) + ": left out " + std::to_string(skipped.size()) +
                      " entr" + (skipped.size() == 1 ? "y" : "ies") + " of " + dirs_[current_] +
                      " that " + (skipped.size() == 1 ? "is" : "are") +
                      " not a regular file: " + ListNames(named, skipped.size()));
}

Status TableKeyScanner::Scan(const std::string& path, const std::string& rel, uint64_t file_index,
                             TableFile* file) {
  csv_ = file->format == TabularFormat::kCsv;
  rel_ = rel;
  file_index_ = file_index;
  header_pending_ = header_;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = Errno("cannot stat " + path);
    ::close(fd);
    return s;
  }
  file->size = st.st_size;
  file->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  RowScanner scanner(csv_);
  auto on_row = [this](int64_t end, bool blank) { return OnRow(end, blank); };
  while (error_.ok()) {
    ssize_t n;
    do {
      n = ::read(fd, buffer_, kReadBufferSize);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      error_ = Errno("cannot read " + path);
      break;
    }
    if (n == 0) {
      bool blank = false;
      if (header_pending_ && scanner.InQuotes()) {
        error_ = InvalidArgumentError(path +
                                      ": the header row has a quote that is never closed, so "
                                      "the file yields no rows; close the quote or set header: "
                                      "false");
      } else if (scanner.PendingRow(&blank)) {
        len_ = 0;
        buffer_base_ = file->size;
        OnRow(file->size, blank);
      }
      break;
    }
    len_ = static_cast<size_t>(n);
    scanner.Scan(buffer_, len_, 0, buffer_base_, on_row);
    // Keep the bytes of the row that is not finished yet.
    if (row_start_ < buffer_base_) {
      carry_.append(buffer_, len_);
    } else {
      carry_.assign(buffer_ + (row_start_ - buffer_base_), len_ - (row_start_ - buffer_base_));
    }
    buffer_base_ += n;
  }
  ::close(fd);
  if (error_.ok()) error_ = FlushRun();
  file->header_end = header_end_;
  return error_;
}

bool TableKeyScanner::OnRow(int64_t end, bool blank) {
  if (!error_.ok()) return false;
  const int64_t begin = row_start_;
  row_start_ = end;
  std::string joined;
  std::string_view row;
  if (begin >= buffer_base_) {
    row = std::string_view(buffer_ + (begin - buffer_base_), static_cast<size_t>(end - begin));
  } else {  // the row began in an earlier buffer
    joined = carry_;
    joined.append(buffer_, static_cast<size_t>(end - buffer_base_));
    row = joined;
    carry_.clear();
  }
  row = StripLineEnd(row);
  if (header_pending_) {
    if (blank) return true;
    header_pending_ = false;
    header_end_ = end;
    error_ = HeaderColumns(row);
    return error_.ok();
  }
  if (blank) {  // pandas skips blank lines: one inside a run stays in it
    if (run_ && run_->c == begin) run_->c = end;
    return true;
  }
  error_ = RowValues(row, begin, &values_);
  if (!error_.ok()) return false;
  const uint64_t p = owner_->PartitionOf(values_);
  if (run_ && run_->partition == p && run_->c == begin) {
    run_->c = end;
    ++run_->rows;
    return true;
  }
  error_ = FlushRun();
  run_ = RunRecord{p, file_index_, begin, end, 1};
  return error_.ok();
}

Status TableKeyScanner::FlushRun() {
  if (!run_) return Status::Ok();
  Status st = owner_->AddRun(*run_);
  run_.reset();
  return st;
}

Status TableKeyScanner::HeaderColumns(std::string_view row) {
  const std::vector<std::string> names = SplitCsvRow(row);
  columns_.clear();
  for (const std::string& key : keys_) {
    const auto it = std::find(names.begin(), names.end(), key);
    if (it == names.end()) {
      std::vector<std::string> shown(names.begin(), names.begin() + std::min(names.size(), kNamed));
      return InvalidArgumentError(
          rel_ + ": has no column \"" + key +
          "\" (spec.partitionKeys); its columns: " + ListNames(shown, names.size()));
    }
    columns_.push_back(static_cast<size_t>(it - names.begin()));
  }
  return Status::Ok();
}

Status TableKeyScanner::RowValues(std::string_view row, int64_t begin,
                                  std::vector<std::string>* values) {
  values->assign(keys_.size(), std::string());
  if (csv_) {
    if (!header_ && columns_.empty()) {  // no header: columns are named 0, 1, ... as in pandas
      for (const std::string& key : keys_) {
        char* end = nullptr;
        const unsigned long index = std::strtoul(key.c_str(), &end, 10);
        if (key.empty() || *end != '\0') {
          return InvalidArgumentError(rel_ +
                                      ": has no header, so its columns are named 0, 1, "
                                      "...; there is no column \"" +
                                      key + "\" (spec.partitionKeys)");
        }
        columns_.push_back(index);
      }
    }
    std::vector<std::string> fields = SplitCsvRow(row);
    for (size_t k = 0; k < keys_.size(); ++k) {
      if (columns_[k] < fields.size()) (*values)[k] = std::move(fields[columns_[k]]);
    }
    return Status::Ok();
  }
  nlohmann::json j = nlohmann::json::parse(row, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgumentError(rel_ + ": the row at byte " + std::to_string(begin) +
                                " is not a JSON object");
  }
  for (size_t k = 0; k < keys_.size(); ++k) {
    auto it = j.find(keys_[k]);
    if (it == j.end()) {
      return InvalidArgumentError(rel_ + ": the row at byte " + std::to_string(begin) +
                                  " has no column \"" + keys_[k] + "\" (spec.partitionKeys)");
    }
    (*values)[k] = it->is_string() ? it->get<std::string>() : it->is_null() ? "" : it->dump();
  }
  return Status::Ok();
}

// ---- grouping and emitting ----

Status KeyPartitioner::GroupRuns() {
  PR_ASSIGN_OR_RETURN(grouped_, SpillFile::Open(scratch_));
  int64_t slot = 0;
  std::vector<int64_t> next(partitions_.size());
  for (size_t p = 0; p < partitions_.size(); ++p) {
    partitions_[p].first_slot = next[p] = slot;
    slot += partitions_[p].runs;
  }
  constexpr size_t kChunk = 4096;
  std::vector<RunRecord> chunk(kChunk);
  const int64_t total = runs_->size() / static_cast<int64_t>(sizeof(RunRecord));
  for (int64_t i = 0; i < total; i += kChunk) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(kChunk, total - i));
    PR_RETURN_IF_ERROR(
        runs_->ReadAt(chunk.data(), n * sizeof(RunRecord), i * int64_t{sizeof(RunRecord)}));
    for (size_t r = 0; r < n; ++r) {
      const int64_t at = next[chunk[r].partition]++ * int64_t{sizeof(RunRecord)};
      PR_RETURN_IF_ERROR(grouped_->WriteAt(&chunk[r], sizeof(RunRecord), at));
    }
  }
  runs_.reset();
  return Status::Ok();
}

StatusOr<MiniBatch> KeyPartitioner::Emit(size_t p) {
  const PartitionInfo& info = partitions_[p];
  MiniBatch mb;
  mb.id = next_id_++;
  mb.input_index = static_cast<int>(current_);
  mb.items = info.items;
  for (size_t k = 0; k < keys_.size(); ++k) {
    mb.partition_key_value.emplace_back(keys_[k], info.values[k]);
  }
  const bool files = inputs_[current_].type == InputType::kFile;
  constexpr int64_t kChunk = 4096;
  std::vector<RunRecord> chunk(kChunk);
  for (int64_t i = 0; i < info.runs; i += kChunk) {
    const size_t n = static_cast<size_t>(std::min(kChunk, info.runs - i));
    PR_RETURN_IF_ERROR(grouped_->ReadAt(chunk.data(), n * sizeof(RunRecord),
                                        (info.first_slot + i) * int64_t{sizeof(RunRecord)}));
    for (size_t r = 0; r < n; ++r) {
      const RunRecord& run = chunk[r];
      if (files) {  // the file's name and its fingerprint, checked before an attempt runs
        FileEntry entry;
        std::string name(static_cast<size_t>(run.b), '\0');
        const auto at = static_cast<int64_t>(run.a);
        PR_RETURN_IF_ERROR(names_->ReadAt(&entry, sizeof entry, at));
        PR_RETURN_IF_ERROR(names_->ReadAt(name.data(), name.size(), at + int64_t{sizeof entry}));
        mb.files.push_back(std::move(name));
        mb.file_sizes.push_back(entry.size);
        mb.file_mtimes_ns.push_back(entry.mtime_ns);
        continue;
      }
      const TableFile& t = tables_[run.a];
      if (mb.segments.empty() || mb.segments.back().file != t.name) {
        mb.segments.push_back(TableSegment{t.name, t.format, t.header_end, {}, t.size, t.mtime_ns});
      }
      mb.segments.back().ranges.emplace_back(run.b, run.c);
    }
  }
  return mb;
}

}  // namespace

std::unique_ptr<Partitioner> MakeKeyPartitioner(const JobSpec& spec, std::vector<std::string> dirs,
                                                std::string scratch_dir) {
  if (scratch_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    scratch_dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  return std::make_unique<KeyPartitioner>(spec, std::move(dirs), std::move(scratch_dir));
}

std::vector<std::string> SplitCsvRow(std::string_view row) {
  std::vector<std::string> fields(1);
  size_t i = 0;
  bool field_start = true;
  while (i < row.size()) {
    const char c = row[i];
    if (c == ',') {
      fields.emplace_back();
      field_start = true;
      ++i;
      continue;
    }
    if (c == '"' && field_start) {  // a quoted part: up to the closing quote, "" is one quote
      ++i;
      while (i < row.size()) {
        if (row[i] == '"') {
          if (i + 1 < row.size() && row[i + 1] == '"') {
            fields.back() += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        fields.back() += row[i++];
      }
      field_start = false;
      continue;
    }
    fields.back() += c;
    field_start = false;
    ++i;
  }
  return fields;
}

}  // namespace parallelrun::rt::internal
