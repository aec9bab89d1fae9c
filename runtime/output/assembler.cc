#include "runtime/output/assembler.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#include "runtime/base/files.h"
#include "runtime/output/output_index.h"
#include "runtime/output/part_file.h"

namespace parallelrun::rt {
namespace {

constexpr size_t kBufferSize = 1 << 20;
constexpr size_t kMaxMissingExamples = 5;

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return InternalError(what + " " + path + ": " + std::strerror(errno));
}

// Buffered writer over a file descriptor.
class Writer {
 public:
  Writer(int fd, std::string path) : fd_(fd), path_(std::move(path)), buf_(new char[kBufferSize]) {}
  Status Write(const char* data, size_t n) {
    bytes_ += static_cast<int64_t>(n);
    if (n > 0) last_ = data[n - 1];
    while (n > 0) {
      size_t take = std::min(n, kBufferSize - used_);
      std::memcpy(buf_.get() + used_, data, take);
      used_ += take;
      data += take;
      n -= take;
      if (used_ == kBufferSize) PR_RETURN_IF_ERROR(Flush());
    }
    return Status::Ok();
  }
  Status Flush() {
    size_t off = 0;
    while (off < used_) {
      ssize_t w = ::write(fd_, buf_.get() + off, used_ - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("cannot write", path_);
      }
      off += static_cast<size_t>(w);
    }
    used_ = 0;
    return Status::Ok();
  }
  int64_t bytes() const { return bytes_; }
  char last() const { return last_; }

 private:
  int fd_;
  std::string path_;
  std::unique_ptr<char[]> buf_;
  size_t used_ = 0;
  int64_t bytes_ = 0;
  char last_ = '\n';
};

// Reads and writes through one file at a time, keeping it open while consecutive sources come
// from the same file (an earlier run's output holds many mini-batches).
class SourceReader {
 public:
  explicit SourceReader(char* buf) : buf_(buf) {}
  ~SourceReader() { Close(); }

  // Copies `src` (its rows) to `out`, ending with a newline. NotFound when a whole-file source
  // does not exist. `with_crc`: also computes the CRC-32 of the bytes read (crc()).
  Status Copy(const std::string& path, int64_t offset, int64_t length, Writer& out,
              bool with_crc = false) {
    with_crc_ = with_crc;
    crc_ = 0;
    if (length < 0) {
      Close();
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT) return NotFoundError(path);
        return ErrnoStatus("cannot open part file", path);
      }
      fd_ = fd;
      path_ = path;
      PR_RETURN_IF_ERROR(CopyRange(0, -1, out));
      Close();
    } else {
      if (fd_ < 0 || path_ != path) {
        Close();
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return ErrnoStatus("cannot open", path);
        fd_ = fd;
        path_ = path;
      }
      PR_RETURN_IF_ERROR(CopyRange(offset, length, out));
    }
    if (copied_ > 0 && out.last() != '\n') return out.Write("\n", 1);
    return Status::Ok();
  }

  // Reads a header: a whole file (NotFound when missing) or a byte range.
  StatusOr<std::string> ReadHeader(const std::string& path, int64_t offset, int64_t length) {
    if (length < 0) return ReadFile(path);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("cannot open", path);
    std::string text(static_cast<size_t>(length), '\0');
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::pread(fd, text.data() + done, text.size() - done,
                          static_cast<off_t>(offset + static_cast<int64_t>(done)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        Status st = n < 0 ? ErrnoStatus("cannot read", path)
                          : InternalError(path + " ends before byte " +
                                          std::to_string(offset + length) + " (its header line)");
        ::close(fd);
        return st;
      }
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    return text;
  }

 private:
  // Copies [offset, offset + length) of the open file (length -1: to its end).
  Status CopyRange(int64_t offset, int64_t length, Writer& out) {
    copied_ = 0;
    while (length < 0 || copied_ < length) {
      size_t want = kBufferSize;
      if (length >= 0) want = static_cast<size_t>(std::min<int64_t>(length - copied_, want));
      ssize_t n = ::pread(fd_, buf_, want, static_cast<off_t>(offset + copied_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("cannot read", path_);
      }
      if (n == 0) {
        if (length < 0) break;
        return InternalError(path_ + " ends at byte " + std::to_string(offset + copied_) +
                             ", before the end of the rows expected at bytes " +
                             std::to_string(offset) + ".." + std::to_string(offset + length) +
                             " (was the file changed?)");
      }
      copied_ += n;
      if (with_crc_) crc_ = Crc32(crc_, buf_, static_cast<size_t>(n));
      PR_RETURN_IF_ERROR(out.Write(buf_, static_cast<size_t>(n)));
    }
    return Status::Ok();
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    path_.clear();
  }

  char* buf_;
  int fd_ = -1;
  std::string path_;
  int64_t copied_ = 0;
  bool with_crc_ = false;
  uint32_t crc_ = 0;

 public:
  int64_t copied() const { return copied_; }  // bytes read by the last Copy
  uint32_t crc() const { return crc_; }       // their CRC-32, when Copy was asked for it
};

// A part file is what it was when its result was accepted: same size, same CRC-32.
Status VerifyPart(int64_t id, const RowSource& src, int64_t bytes, uint32_t crc) {
  if (src.expected_bytes >= 0 && bytes != src.expected_bytes) {
    return FailedPreconditionError(
        "the accepted part file " + src.path + " of mini-batch " + std::to_string(id) + " has " +
        std::to_string(bytes) + " bytes, but had " + std::to_string(src.expected_bytes) +
        " when its result was accepted (changed or truncated since); its rows "
        "cannot be trusted");
  }
  if (src.expected_crc32 && crc != *src.expected_crc32) {
    char want[16], got[16];
    std::snprintf(want, sizeof want, "%08x", *src.expected_crc32);
    std::snprintf(got, sizeof got, "%08x", crc);
    return FailedPreconditionError(
        "the accepted part file " + src.path + " of mini-batch " + std::to_string(id) +
        " has CRC-32 " + got + ", but had " + want +
        " when its result was accepted (rewritten since); its rows cannot be "
        "trusted");
  }
  return Status::Ok();
}

// The header line of the first mini-batch, in mini-batch order, that has one ("" when none has),
// ending with a newline.
StatusOr<std::string> FindHeader(int64_t count, const std::function<RowSource(int64_t)>& source,
                                 SourceReader& reader) {
  for (int64_t i = 0; i < count; ++i) {
    RowSource src = source(i);
    if (src.path.empty() || src.header_path.empty()) continue;
    auto text = reader.ReadHeader(src.header_path, src.header_offset, src.header_length);
    if (text.ok()) {
      std::string header = std::move(*text);
      if (!header.empty() && header.back() != '\n') header.push_back('\n');
      return header;
    }
    if (text.status().code() != StatusCode::kNotFound) return text.status();
  }
  return std::string();
}

// What an assembly writes under temporary names before they take their final ones: the hidden
// output file <dir>/.<name>.assembling and, with an index, <index_file>.writing.
struct PendingFiles {
  std::string dir;  // the output file's folder
  std::string tmp;
  int fd = -1;
  std::string index_tmp;
  std::optional<OutputIndexWriter> index;

  // Closes and removes the temporary files (the final names are untouched); returns `st`.
  Status Abandon(Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    if (index) ::unlink(index_tmp.c_str());
    return st;
  }
};

// Makes the folders and creates the temporary files.
Status OpenPending(const AssemblyOptions& options, PendingFiles* files) {
  files->dir = Dirname(options.output_file);
  PR_RETURN_IF_ERROR(MakeDirs(files->dir));
  std::string base = options.output_file.substr(files->dir.size() + 1);
  files->tmp = JoinPath(files->dir, "." + base + ".assembling");
  if (!options.index_file.empty()) {
    PR_RETURN_IF_ERROR(MakeDirs(Dirname(options.index_file)));
    files->index_tmp = options.index_file + ".writing";
    PR_ASSIGN_OR_RETURN(OutputIndexWriter w, OutputIndexWriter::Open(files->index_tmp, base));
    files->index.emplace(std::move(w));
  }
  files->fd = ::open(files->tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (files->fd < 0) {
    if (files->index) ::unlink(files->index_tmp.c_str());
    return ErrnoStatus("cannot create", files->tmp);
  }
  return Status::Ok();
}

Status WriteHeader(const std::string& header, Writer& out, OutputIndexWriter* index,
                   AssemblyStats* stats) {
  if (header.empty()) return Status::Ok();
  PR_RETURN_IF_ERROR(out.Write(header.data(), header.size()));
  if (index)
    PR_RETURN_IF_ERROR(index->AddHeader(ByteRange{0, static_cast<int64_t>(header.size())}));
  stats->header_written = true;
  return Status::Ok();
}

// Copies the rows of mini-batch `id` from `src`, verifies a part file and indexes the rows; a
// missing part that need not exist is counted in `stats` instead.
Status CopySource(int64_t id, const RowSource& src, SourceReader& reader, Writer& out,
                  OutputIndexWriter* index, AssemblyStats* stats) {
  const int64_t begin = out.bytes();
  const bool verify = src.length < 0 && (src.expected_bytes >= 0 || src.expected_crc32);
  Status st = reader.Copy(src.path, src.offset, src.length, out, src.expected_crc32.has_value());
  if (st.code() == StatusCode::kNotFound && src.must_exist) {
    return NotFoundError("cannot read the rows of mini-batch " + std::to_string(id) + ": " +
                         src.path + " does not exist any more");
  }
  if (st.ok() && verify) st = VerifyPart(id, src, reader.copied(), reader.crc());
  if (st.code() == StatusCode::kNotFound && src.length < 0) {
    ++stats->missing_parts;
    if (stats->missing_examples.size() < kMaxMissingExamples) {
      stats->missing_examples.push_back(src.path);
    }
    return Status::Ok();
  }
  PR_RETURN_IF_ERROR(st);
  ++stats->parts;
  if (index) PR_RETURN_IF_ERROR(index->Add(id, ByteRange{begin, out.bytes() - begin}));
  return Status::Ok();
}

// The rows of every mini-batch in order, with progress reports and cancellation between them.
Status CopyRows(const AssemblyOptions& options, int64_t count,
                const std::function<RowSource(int64_t)>& source, SourceReader& reader, Writer& out,
                OutputIndexWriter* index, AssemblyStats* stats) {
  for (int64_t i = 0; i < count; ++i) {
    if (options.cancel && options.cancel->load()) {
      return AbortedError("output assembly of " + options.output_file + " was interrupted");
    }
    RowSource src = source(i);
    if (src.path.empty()) continue;
    PR_RETURN_IF_ERROR(CopySource(i, src, reader, out, index, stats));
    if (options.on_progress) options.on_progress(stats->parts, out.bytes());
  }
  return Status::Ok();
}

// Makes the temporary files durable and complete, and removes the index they will replace.
Status FinishPending(const AssemblyOptions& options, PendingFiles& files, Writer& out) {
  PR_RETURN_IF_ERROR(out.Flush());
  if (::fsync(files.fd) != 0) return ErrnoStatus("cannot fsync", files.tmp);
  if (files.index) {
    PR_RETURN_IF_ERROR(files.index->Finish(out.bytes()));
    // No index may sit next to a file it does not describe, not even for a moment.
    if (::unlink(options.index_file.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus("cannot remove the old index", options.index_file);
    }
  }
  return Status::Ok();
}

// Renames the finished temporary files to their final names (the output file first) and syncs
// their folders.
Status Publish(const AssemblyOptions& options, PendingFiles& files) {
  ::close(files.fd);
  if (::rename(files.tmp.c_str(), options.output_file.c_str()) != 0) {
    Status e = ErrnoStatus("cannot rename to", options.output_file);
    ::unlink(files.tmp.c_str());
    if (files.index) ::unlink(files.index_tmp.c_str());
    return e;
  }
  PR_RETURN_IF_ERROR(SyncDir(files.dir));
  if (files.index) {
    if (::rename(files.index_tmp.c_str(), options.index_file.c_str()) != 0) {
      Status e = ErrnoStatus("cannot rename to", options.index_file);
      ::unlink(files.index_tmp.c_str());
      return e;
    }
    PR_RETURN_IF_ERROR(SyncDir(Dirname(options.index_file)));
  }
  return Status::Ok();
}

}  // namespace

RowSource PartFileSource(const std::string& path) {
  RowSource s;
  s.path = path;
  if (!path.empty()) s.header_path = path + ".header";
  return s;
}

StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<std::string(int64_t)>& part_path) {
  return AssembleAppendRow(options, count, [&](int64_t i) { return PartFileSource(part_path(i)); });
}

StatusOr<AssemblyStats> AssembleAppendRow(const AssemblyOptions& options, int64_t count,
                                          const std::function<RowSource(int64_t)>& source) {
  std::unique_ptr<char[]> buf(new char[kBufferSize]);
  SourceReader reader(buf.get());
  std::string header;
  if (options.header) {
    PR_ASSIGN_OR_RETURN(header, FindHeader(count, source, reader));
  }
  PendingFiles files;
  PR_RETURN_IF_ERROR(OpenPending(options, &files));
  OutputIndexWriter* index = files.index ? &*files.index : nullptr;
  AssemblyStats stats;
  Writer out(files.fd, files.tmp);
  Status st = WriteHeader(header, out, index, &stats);
  if (st.ok()) st = CopyRows(options, count, source, reader, out, index, &stats);
  if (st.ok()) st = FinishPending(options, files, out);
  if (!st.ok()) return files.Abandon(st);
  PR_RETURN_IF_ERROR(Publish(options, files));
  stats.bytes = out.bytes();
  return stats;
}

}  // namespace parallelrun::rt
