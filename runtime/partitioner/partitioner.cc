#include "runtime/partitioner/partitioner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "runtime/partitioner/file_walker.h"
#include "runtime/partitioner/key_partitioner.h"
#include "runtime/partitioner/plan_record_scan.h"
#include "runtime/partitioner/row_scanner.h"

namespace parallelrun::rt {
namespace {

// Records a file input's size and mtime as planned (-1 when it cannot be stat'ed now: it
// vanished since the listing, and the attempt will say so).
void AddFingerprint(const std::string& path, MiniBatch& mb) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    mb.file_sizes.push_back(-1);
    mb.file_mtimes_ns.push_back(-1);
    return;
  }
  mb.file_sizes.push_back(static_cast<int64_t>(st.st_size));
  mb.file_mtimes_ns.push_back(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                              st.st_mtim.tv_nsec);
}

using internal::FileWalker;
using internal::RowScanner;

// Large enough that read(2) calls cost nothing next to scanning, small enough to stay in L2/L3.
constexpr size_t kReadBufferSize = size_t{1} << 20;

std::string InputField(size_t i) { return "spec.inputs[" + std::to_string(i) + "]"; }

Status ErrnoStatus(const std::string& msg) {
  int e = errno;
  std::string full = msg + ": " + std::strerror(e);
  if (e == ENOENT) return NotFoundError(full);
  if (e == EACCES || e == EPERM) return PermissionDeniedError(full);
  return InternalError(full);
}

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

StatusOr<TabularFormat> ResolveFormat(const Input& input, size_t index, const std::string& dir,
                                      const std::string& rel) {
  if (input.format != TabularFormat::kAuto) return input.format;
  const size_t slash = rel.rfind('/');
  const std::string base = slash == std::string::npos ? rel : rel.substr(slash + 1);
  const size_t dot = base.rfind('.');
  const std::string ext = dot == std::string::npos ? "" : Lower(base.substr(dot + 1));
  if (ext == "csv") return TabularFormat::kCsv;
  if (ext == "jsonl" || ext == "json" || ext == "ndjson") return TabularFormat::kJsonl;
  const std::string field = InputField(index) + ".format";
  return InvalidArgumentError(field + ": cannot tell the format of " + rel + " (in " + dir +
                              ") from its extension (known: .csv, .jsonl, .json, .ndjson); set " +
                              field + " to csv or jsonl");
}

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t items = 0;
};

// Cuts one tabular file into ranges of whole rows, reading it through a fixed buffer.
class TableSplitter {
 public:
  ~TableSplitter() {
    if (fd_ >= 0) ::close(fd_);
  }
  TableSplitter(const TableSplitter&) = delete;
  TableSplitter& operator=(const TableSplitter&) = delete;

  static StatusOr<std::unique_ptr<TableSplitter>> Open(const std::string& path, bool csv,
                                                       bool header, int64_t batch_bytes,
                                                       char* buffer) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("cannot open " + path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      Status s = ErrnoStatus("cannot stat " + path);
      ::close(fd);
      return s;
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    auto t = std::unique_ptr<TableSplitter>(
        new TableSplitter(fd, path, csv, csv && header, batch_bytes, buffer));
    t->size_ = st.st_size;
    t->mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return t;
  }

  int64_t header_end() const { return header_end_; }
  // The file as it was opened (the fingerprint of its mini-batches).
  int64_t size() const { return size_; }
  int64_t mtime_ns() const { return mtime_ns_; }

  // The next range of this file, nullopt when the file is done.
  StatusOr<std::optional<Range>> Next() {
    while (true) {
      if (pos_ < len_) {
        pos_ = scanner_.Scan(buffer_, len_, pos_, buffer_base_,
                             [this](int64_t end, bool blank) { return OnRow(end, blank); });
        if (ready_) {
          ready_ = false;
          return std::optional<Range>(ready_range_);
        }
        continue;
      }
      if (eof_) return Finish();
      buffer_base_ += static_cast<int64_t>(len_);
      len_ = pos_ = 0;
      ssize_t n;
      do {
        n = ::read(fd_, buffer_, kReadBufferSize);
      } while (n < 0 && errno == EINTR);
      if (n < 0) return ErrnoStatus("cannot read " + path_);
      if (n == 0) {
        eof_ = true;
      } else {
        len_ = static_cast<size_t>(n);
      }
    }
  }

 private:
  TableSplitter(int fd, std::string path, bool csv, bool header, int64_t batch_bytes, char* buffer)
      : fd_(fd),
        path_(std::move(path)),
        scanner_(csv),
        buffer_(buffer),
        batch_bytes_(batch_bytes),
        header_pending_(header),
        target_(Add(0, batch_bytes)) {}

  static int64_t Add(int64_t a, int64_t b) {
    return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max()
                                                       : a + b;
  }

  // Called for every row end in order; false stops the scan because a range is ready.
  bool OnRow(int64_t end, bool blank) {
    if (header_pending_) {
      // The header is the first non-blank row (pandas skips blank lines before it too); blank
      // lines before it go with it, so prepending [0, header_end) gives pandas the same header.
      if (!blank) {
        header_pending_ = false;
        header_end_ = begin_ = end;
        target_ = Add(end, batch_bytes_);
      }
      return true;
    }
    if (!blank) ++items_;
    if (end < target_) return true;
    const bool emit = items_ > 0;  // a range of blank lines only is dropped: nothing to run
    if (emit) {
      ready_range_ = Range{begin_, end, items_};
      ready_ = true;
    }
    begin_ = end;
    target_ = Add(end, batch_bytes_);
    items_ = 0;
    return !emit;
  }

  StatusOr<std::optional<Range>> Finish() {
    if (finished_) return std::optional<Range>();
    finished_ = true;
    const int64_t file_end = buffer_base_ + static_cast<int64_t>(len_);
    bool blank = false;
    if (scanner_.PendingRow(&blank)) {  // last row without a newline
      if (header_pending_ && scanner_.InQuotes()) {
        // The header never ended: the rest of the file would silently vanish into it.
        return InvalidArgumentError(
            path_ +
            ": the header row has a quote that is never closed, so it runs to the end of "
            "the file and the file yields no rows (pandas fails with \"EOF inside "
            "string\"); close the quote or set header: false");
      }
      OnRow(file_end, blank);
    }
    if (ready_) {
      ready_ = false;
      return std::optional<Range>(ready_range_);
    }
    if (items_ == 0) return std::optional<Range>();
    Range last{begin_, file_end, items_};
    items_ = 0;
    return std::optional<Range>(last);
  }

  int fd_;
  std::string path_;
  int64_t size_ = -1;
  int64_t mtime_ns_ = -1;
  RowScanner scanner_;
  char* buffer_;
  const int64_t batch_bytes_;
  size_t len_ = 0;           // bytes in buffer_
  size_t pos_ = 0;           // next byte to scan
  int64_t buffer_base_ = 0;  // file offset of buffer_[0]
  bool eof_ = false;
  bool finished_ = false;
  bool header_pending_;
  int64_t header_end_ = 0;
  int64_t begin_ = 0;  // first byte of the range being built
  int64_t target_;     // the range ends at the first row end at or after this
  int64_t items_ = 0;  // non-blank rows in the range being built
  bool ready_ = false;
  Range ready_range_;
};

class StreamingPartitioner : public Partitioner {
 public:
  StreamingPartitioner(const JobSpec& spec, std::vector<std::string> dirs)
      : inputs_(spec.inputs), dirs_(std::move(dirs)), batch_size_(spec.mini_batch_size) {}

  StatusOr<std::optional<MiniBatch>> Next() override {
    if (!error_.ok()) return error_;
    auto next = Advance();
    if (!next.ok()) error_ = next.status();  // the walk state is unknown now: stay failed
    return next;
  }

  std::vector<std::string> TakeWarnings() override {
    std::vector<std::string> out;
    out.swap(warnings_);
    return out;
  }

 private:
  StatusOr<std::optional<MiniBatch>> Advance() {
    while (current_ < inputs_.size()) {
      const Input& input = inputs_[current_];
      if (!walker_) {
        walker_ =
            std::make_unique<FileWalker>(dirs_[current_], input.pattern, InputField(current_));
      }
      if (input.type == InputType::kFile) {
        MiniBatch mb;
        mb.files.reserve(static_cast<size_t>(std::min<int64_t>(batch_size_, 1024)));
        while (static_cast<int64_t>(mb.files.size()) < batch_size_) {
          PR_ASSIGN_OR_RETURN(std::optional<std::string> file, walker_->Next());
          if (!file) {
            NextInput();
            break;
          }
          AddFingerprint(dirs_[current_] + "/" + *file, mb);
          mb.files.push_back(std::move(*file));
        }
        if (mb.files.empty()) continue;
        mb.input_index = static_cast<int>(&input - inputs_.data());
        mb.items = static_cast<int64_t>(mb.files.size());
        mb.id = next_id_++;
        return std::optional<MiniBatch>(std::move(mb));
      }
      if (!table_) {
        PR_ASSIGN_OR_RETURN(std::optional<std::string> file, walker_->Next());
        if (!file) {
          NextInput();
          continue;
        }
        PR_ASSIGN_OR_RETURN(table_format_, ResolveFormat(input, current_, dirs_[current_], *file));
        if (!buffer_) buffer_ = std::make_unique<char[]>(kReadBufferSize);
        const std::string path = dirs_[current_] + "/" + *file;
        PR_ASSIGN_OR_RETURN(table_, TableSplitter::Open(path, table_format_ == TabularFormat::kCsv,
                                                        input.header, batch_size_, buffer_.get()));
        table_file_ = std::move(*file);
      }
      PR_ASSIGN_OR_RETURN(std::optional<Range> range, table_->Next());
      if (!range) {
        table_.reset();
        continue;
      }
      MiniBatch mb;
      mb.id = next_id_++;
      mb.input_index = static_cast<int>(current_);
      mb.file = table_file_;
      mb.format = table_format_;
      mb.header_end = table_->header_end();
      mb.begin = range->begin;
      mb.end = range->end;
      mb.items = range->items;
      mb.file_size = table_->size();
      mb.file_mtime_ns = table_->mtime_ns();
      return std::optional<MiniBatch>(std::move(mb));
    }
    return std::optional<MiniBatch>();
  }

  // At most this many entries are named in one warning; the rest are counted.
  static constexpr size_t kSkippedNamed = 10;

  void NextInput() {
    const std::vector<std::string>& skipped = walker_->skipped();
    if (!skipped.empty()) {
      std::string text = InputField(current_) + ": left out " + std::to_string(skipped.size()) +
                         " entr" + (skipped.size() == 1 ? "y" : "ies") + " of " + dirs_[current_] +
                         " that " + (skipped.size() == 1 ? "is" : "are") + " not a regular file: ";
      for (size_t i = 0; i < skipped.size() && i < kSkippedNamed; ++i) {
        text += (i ? ", " : "") + skipped[i];
      }
      if (skipped.size() > kSkippedNamed) {
        text += " and " + std::to_string(skipped.size() - kSkippedNamed) + " more";
      }
      warnings_.push_back(std::move(text));
    }
    walker_.reset();
    ++current_;
  }

  const std::vector<Input> inputs_;
  const std::vector<std::string> dirs_;
  const int64_t batch_size_;
  size_t current_ = 0;
  int64_t next_id_ = 0;
  Status error_;
  std::unique_ptr<FileWalker> walker_;
  std::unique_ptr<TableSplitter> table_;
  std::string table_file_;
  TabularFormat table_format_ = TabularFormat::kCsv;
  std::vector<std::string> warnings_;
  std::unique_ptr<char[]> buffer_;  // one read buffer, reused file after file
};

// Plan record helpers: integers must be whole numbers that fit an int64.
bool GetInt(const nlohmann::json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return false;
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return false;
  }
  *out = it->get<int64_t>();
  return *out >= 0;
}

// A list of `n` integers >= -1 (-1: unknown).
bool GetIntList(const nlohmann::json& j, const char* key, size_t n, std::vector<int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != n) return false;
  out->reserve(n);
  for (const auto& v : *it) {
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX)) {
      return false;
    }
    out->push_back(v.get<int64_t>());
    if (out->back() < -1) return false;
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<Partitioner>> MakePartitioner(const JobSpec& spec,
                                                       const std::vector<std::string>& input_dirs,
                                                       const std::string& scratch_dir) {
  if (input_dirs.size() != spec.inputs.size()) {
    return InvalidArgumentError("partitioner: " + std::to_string(spec.inputs.size()) +
                                " inputs in spec.inputs but " + std::to_string(input_dirs.size()) +
                                " input folders");
  }
  if (spec.mini_batch_size <= 0) {
    return InvalidArgumentError("spec.miniBatchSize: got " + std::to_string(spec.mini_batch_size) +
                                ", expected a positive count or size");
  }
  std::vector<std::string> dirs;
  for (size_t i = 0; i < input_dirs.size(); ++i) {
    std::string dir = input_dirs[i];
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const std::string field = InputField(i) + ".source";
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        return NotFoundError(field + ": the input folder " + dir + " does not exist");
      }
      return ErrnoStatus(field + ": cannot read the input folder " + dir);
    }
    if (!S_ISDIR(st.st_mode)) {
      return InvalidArgumentError(field + ": " + dir + " is not a folder");
    }
    dirs.push_back(std::move(dir));
  }
  if (!spec.partition_keys.empty()) {
    return internal::MakeKeyPartitioner(spec, std::move(dirs), scratch_dir);
  }
  return std::unique_ptr<Partitioner>(new StreamingPartitioner(spec, std::move(dirs)));
}

std::vector<int64_t> RowEnds(std::string_view data, bool csv) {
  std::vector<int64_t> ends;
  RowScanner scanner(csv);
  scanner.Scan(data.data(), data.size(), 0, 0, [&ends](int64_t end, bool) {
    ends.push_back(end);
    return true;
  });
  bool blank = false;
  if (scanner.PendingRow(&blank)) ends.push_back(static_cast<int64_t>(data.size()));
  return ends;
}

namespace {

nlohmann::ordered_json EncodeSegments(const std::vector<TableSegment>& segments) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const TableSegment& seg : segments) {
    nlohmann::ordered_json s;
    s["p"] = seg.file;
    s["fmt"] = seg.format == TabularFormat::kJsonl ? "jsonl" : "csv";
    s["h"] = seg.header_end;
    nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
    for (const auto& [b, e] : seg.ranges) ranges.push_back({b, e});
    s["r"] = std::move(ranges);
    s["sz"] = seg.file_size;
    s["mt"] = seg.file_mtime_ns;
    out.push_back(std::move(s));
  }
  return out;
}

// "k": [[key, value], ...] and "s": [{"p", "fmt", "h", "r": [[b, e], ...], "sz", "mt"}, ...].
std::string DecodeKeysAndSegments(const nlohmann::json& j, MiniBatch* mb) {
  if (auto k = j.find("k"); k != j.end()) {
    if (!k->is_array()) return "expected \"k\": a list of [key, value] pairs";
    for (const auto& pair : *k) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
        return "expected \"k\": a list of [key, value] pairs";
      }
      mb->partition_key_value.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    }
  }
  auto s = j.find("s");
  if (s == j.end()) return "";
  const char* shape = "expected \"s\": a non-empty list of {p, fmt, h, r, sz, mt} segments";
  if (!s->is_array() || s->empty()) return shape;
  for (const auto& item : *s) {
    TableSegment seg;
    if (!item.is_object() || !item.contains("p") || !item["p"].is_string()) return shape;
    seg.file = item["p"].get<std::string>();
    seg.format = item.value("fmt", "") == "jsonl" ? TabularFormat::kJsonl : TabularFormat::kCsv;
    auto r = item.find("r");
    if (seg.file.empty() || !GetInt(item, "h", &seg.header_end) ||
        !GetInt(item, "sz", &seg.file_size) || !GetInt(item, "mt", &seg.file_mtime_ns) ||
        r == item.end() || !r->is_array() || r->empty()) {
      return shape;
    }
    for (const auto& range : *r) {
      int64_t b = -1, e = -1;
      if (range.is_array() && range.size() == 2 && range[0].is_number_integer() &&
          range[1].is_number_integer()) {
        b = range[0].get<int64_t>();
        e = range[1].get<int64_t>();
      }
      if (b < seg.header_end || e < b) return "expected ranges with h <= b <= e in \"s\"";
      seg.ranges.emplace_back(b, e);
    }
    mb->segments.push_back(std::move(seg));
  }
  return "";
}

}  // namespace

std::string EncodePlanRecord(const MiniBatch& mb) {
  nlohmann::ordered_json j;
  j["id"] = mb.id;
  j["in"] = mb.input_index;
  if (!mb.partition_key_value.empty()) {
    nlohmann::ordered_json keys = nlohmann::ordered_json::array();
    for (const auto& [key, value] : mb.partition_key_value) keys.push_back({key, value});
    j["k"] = std::move(keys);
  }
  if (!mb.segments.empty()) {
    j["s"] = EncodeSegments(mb.segments);
  } else if (mb.file.empty()) {
    j["f"] = mb.files;
    if (!mb.file_sizes.empty()) {
      j["fz"] = mb.file_sizes;
      j["fm"] = mb.file_mtimes_ns;
    }
  } else {
    j["p"] = mb.file;
    j["fmt"] = mb.format == TabularFormat::kJsonl ? "jsonl" : "csv";
    j["h"] = mb.header_end;
    j["b"] = mb.begin;
    j["e"] = mb.end;
    if (mb.file_size >= 0) {
      j["sz"] = mb.file_size;
      j["mt"] = mb.file_mtime_ns;
    }
  }
  j["n"] = mb.items;
  // File names are checked to be UTF-8 when walked; `replace` only keeps a hand-made MiniBatch
  // from throwing.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

StatusOr<MiniBatch> DecodePlanRecord(std::string_view line) {
  if (auto mb = ScanPlanRecord(line)) return std::move(*mb);
  return DecodePlanRecordDom(line);
}

StatusOr<MiniBatch> DecodePlanRecordDom(std::string_view line) {
  auto bad = [line](const std::string& why) {
    return InvalidArgumentError("plan record " + std::string(line.substr(0, 200)) + ": " + why);
  };
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("expected one JSON object");
  MiniBatch mb;
  int64_t input = 0;
  if (!GetInt(j, "id", &mb.id)) return bad("expected \"id\": an integer >= 0");
  if (!GetInt(j, "in", &input) || input > std::numeric_limits<int>::max()) {
    return bad("expected \"in\": an input index >= 0");
  }
  mb.input_index = static_cast<int>(input);
  if (!GetInt(j, "n", &mb.items)) return bad("expected \"n\": an item count >= 0");
  if (std::string why = DecodeKeysAndSegments(j, &mb); !why.empty()) return bad(why);
  if (!mb.segments.empty()) return mb;
  if (auto f = j.find("f"); f != j.end()) {
    if (!f->is_array() || f->empty()) return bad("expected \"f\": a non-empty list of file names");
    for (const auto& name : *f) {
      if (!name.is_string() || name.get_ref<const std::string&>().empty()) {
        return bad("expected \"f\": a non-empty list of file names");
      }
      mb.files.push_back(name.get<std::string>());
    }
    if (mb.items != static_cast<int64_t>(mb.files.size())) {
      return bad("\"n\" is not the number of files in \"f\"");
    }
    if (j.contains("fz") || j.contains("fm")) {
      if (!GetIntList(j, "fz", mb.files.size(), &mb.file_sizes) ||
          !GetIntList(j, "fm", mb.files.size(), &mb.file_mtimes_ns)) {
        return bad("expected \"fz\" and \"fm\": each file's size and mtime, integers >= -1");
      }
    }
    return mb;
  }
  auto p = j.find("p");
  if (p == j.end()) return bad("expected \"f\" (files) or \"p\" (a tabular file)");
  if (!p->is_string() || p->get_ref<const std::string&>().empty()) {
    return bad("expected \"p\": a file name");
  }
  mb.file = p->get<std::string>();
  auto fmt = j.find("fmt");
  if (fmt != j.end() && *fmt == "csv") {
    mb.format = TabularFormat::kCsv;
  } else if (fmt != j.end() && *fmt == "jsonl") {
    mb.format = TabularFormat::kJsonl;
  } else {
    return bad("expected \"fmt\": \"csv\" or \"jsonl\"");
  }
  if (!GetInt(j, "h", &mb.header_end) || !GetInt(j, "b", &mb.begin) || !GetInt(j, "e", &mb.end)) {
    return bad("expected \"h\", \"b\" and \"e\": byte offsets >= 0");
  }
  if (mb.header_end > mb.begin || mb.begin > mb.end) {
    return bad("expected byte offsets with h <= b <= e");
  }
  if (j.contains("sz") || j.contains("mt")) {
    if (!GetInt(j, "sz", &mb.file_size) || !GetInt(j, "mt", &mb.file_mtime_ns)) {
      return bad("expected \"sz\" and \"mt\": the file's size and mtime, integers >= 0");
    }
  }
  return mb;
}

}  // namespace parallelrun::rt
