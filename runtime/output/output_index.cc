#include "runtime/output/output_index.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string_view>

namespace parallelrun::rt {
namespace {

constexpr size_t kFlushBytes = 1 << 20;

// Parses a decimal integer >= 0 that spans all of `s`.
bool ParseCount(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && *out >= 0;
}

// Splits "a b c" into exactly `n` space-separated fields.
bool Fields(std::string_view line, std::string_view* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    size_t sp = line.find(' ');
    if (i + 1 == n) {
      if (sp != std::string_view::npos) return false;
      out[i] = line;
    } else {
      if (sp == std::string_view::npos) return false;
      out[i] = line.substr(0, sp);
      line.remove_prefix(sp + 1);
    }
  }
  return true;
}

}  // namespace

StatusOr<OutputIndexWriter> OutputIndexWriter::Open(const std::string& path,
                                                    const std::string& file_name) {
  ::unlink(path.c_str());  // AppendFile appends; a stale temporary file must not be kept
  PR_ASSIGN_OR_RETURN(AppendFile file, AppendFile::Open(path));
  OutputIndexWriter w(std::move(file));
  PR_RETURN_IF_ERROR(w.Put(std::string(kOutputIndexMagic) + "\nfile " + file_name));
  return w;
}

Status OutputIndexWriter::Put(std::string line) {
  buffer_ += line;
  buffer_ += '\n';
  if (buffer_.size() < kFlushBytes) return Status::Ok();
  Status st = file_.Append(buffer_);
  buffer_.clear();
  return st;
}

Status OutputIndexWriter::AddHeader(ByteRange range) {
  return Put("header " + std::to_string(range.offset) + " " + std::to_string(range.length));
}

Status OutputIndexWriter::Add(int64_t id, ByteRange range) {
  return Put(std::to_string(id) + " " + std::to_string(range.offset) + " " +
             std::to_string(range.length));
}

Status OutputIndexWriter::Finish(int64_t file_bytes) {
  buffer_ += "end " + std::to_string(file_bytes) + "\n";
  PR_RETURN_IF_ERROR(file_.Append(buffer_));
  buffer_.clear();
  return file_.Sync();
}

StatusOr<OutputIndexInfo> ReadOutputIndex(const std::string& path,
                                          const std::function<void(int64_t, ByteRange)>& on_entry) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!PathExists(path)) return NotFoundError(path + " does not exist");
    return InternalError("cannot open " + path);
  }
  OutputIndexInfo info;
  std::string line;
  int64_t line_no = 0;
  int64_t last_id = -1;
  int64_t max_end = 0;
  bool ended = false;
  auto bad = [&](const std::string& expected) {
    return InvalidArgumentError(path + " line " + std::to_string(line_no) + ": got \"" +
                                line.substr(0, 80) + "\", expected " + expected);
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (ended) return bad("nothing after the end line");
    if (line_no == 1) {
      if (line != kOutputIndexMagic) return bad(std::string("\"") + kOutputIndexMagic + "\"");
      continue;
    }
    if (line_no == 2) {
      if (line.rfind("file ", 0) != 0 || line.size() == 5) return bad("\"file <name>\"");
      info.file_name = line.substr(5);
      continue;
    }
    std::string_view f[3];
    if (line.rfind("end ", 0) == 0) {
      if (!ParseCount(std::string_view(line).substr(4), &info.file_bytes)) {
        return bad("\"end <bytes>\"");
      }
      ended = true;
      continue;
    }
    if (line.rfind("header ", 0) == 0) {
      if (info.has_header || info.entries > 0 || !Fields(line, f, 3) ||
          !ParseCount(f[1], &info.header.offset) || !ParseCount(f[2], &info.header.length)) {
        return bad("one \"header <offset> <length>\" before the mini-batch lines");
      }
      info.has_header = true;
      max_end = std::max(max_end, info.header.offset + info.header.length);
      continue;
    }
    int64_t id = 0;
    ByteRange r;
    if (!Fields(line, f, 3) || !ParseCount(f[0], &id) || !ParseCount(f[1], &r.offset) ||
        !ParseCount(f[2], &r.length)) {
      return bad("\"<mini-batch id> <offset> <length>\"");
    }
    if (id <= last_id) {
      return bad("a mini-batch id greater than " + std::to_string(last_id));
    }
    last_id = id;
    max_end = std::max(max_end, r.offset + r.length);
    ++info.entries;
    on_entry(id, r);
  }
  if (!ended) {
    return InvalidArgumentError(path + ": no \"end <bytes>\" line; the index is incomplete");
  }
  if (max_end > info.file_bytes) {
    return InvalidArgumentError(path + ": a range ends at byte " + std::to_string(max_end) +
                                ", after the end of the file (" + std::to_string(info.file_bytes) +
                                " bytes)");
  }
  return info;
}

}  // namespace parallelrun::rt
