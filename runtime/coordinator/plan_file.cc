#include "runtime/coordinator/plan_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "runtime/coordinator/line_file.h"

namespace parallelrun::rt {

uint64_t PlanRecordHash(std::string_view record) {
  // Every file fingerprint is left out: tabular ,"sz":N,"mt":N (one per record, or one per
  // segment of a partitioned record) and a file input's ,"fz":[..],"fm":[..]. They guard this
  // run's reads, while retryFrom compares how two runs cut their inputs (as before fingerprints
  // existed, so that plans of older versions still match). The sequences cannot occur inside a
  // JSON string, where quotes are escaped.
  std::string without;
  size_t from = 0;
  const auto skip_int = [&record](size_t i) {
    if (i < record.size() && record[i] == '-') ++i;
    while (i < record.size() && record[i] >= '0' && record[i] <= '9') ++i;
    return i;
  };
  // Past the `]` closing the integer list that starts at i, or npos.
  const auto skip_list = [&record](size_t i) {
    if (i >= record.size() || record[i] != '[') return std::string_view::npos;
    const size_t close = record.find(']', i);
    return close == std::string_view::npos ? close : close + 1;
  };
  for (size_t fp = record.find(",\"sz\":"); fp != std::string_view::npos;
       fp = record.find(",\"sz\":", from)) {
    size_t i = skip_int(fp + 6);
    if (record.substr(i, 6) != ",\"mt\":") break;
    without += record.substr(from, fp - from);
    from = skip_int(i + 6);
  }
  if (size_t fp = record.find(",\"fz\":", from); fp != std::string_view::npos) {
    const size_t i = skip_list(fp + 6);
    if (i != std::string_view::npos && record.substr(i, 6) == ",\"fm\":") {
      if (const size_t j = skip_list(i + 6); j != std::string_view::npos) {
        without += record.substr(from, fp - from);
        from = j;
      }
    }
  }
  if (from == 0) return static_cast<uint64_t>(std::hash<std::string_view>{}(record));
  without += record.substr(from);
  return static_cast<uint64_t>(std::hash<std::string_view>{}(without));
}

StatusOr<std::unique_ptr<PlanWriter>> PlanWriter::Open(const std::string& path,
                                                       int64_t valid_bytes) {
  PR_RETURN_IF_ERROR(MakeDirs(Dirname(path)));
  PR_RETURN_IF_ERROR(TruncateFile(path, valid_bytes));
  PR_ASSIGN_OR_RETURN(AppendFile file, AppendFile::Open(path));
  return std::unique_ptr<PlanWriter>(new PlanWriter(std::move(file), valid_bytes));
}

PlanEntry PlanWriter::Add(const MiniBatch& mb) {
  std::string record = EncodePlanRecord(mb);
  while (!record.empty() && (record.back() == '\n' || record.back() == '\r')) record.pop_back();
  PlanEntry entry;
  entry.plan_offset = size_;
  entry.plan_length = static_cast<uint32_t>(record.size());
  entry.items = mb.items;
  entry.record_hash = PlanRecordHash(record);
  buffer_ += record;
  buffer_ += '\n';
  size_ += static_cast<int64_t>(record.size()) + 1;
  ++buffered_records_;
  return entry;
}

void PlanWriter::AddEnd() {
  buffer_ += kPlanEnd;
  buffer_ += '\n';
  size_ += 4;
}

Status PlanWriter::Flush() {
  if (!buffer_.empty()) {
    PR_RETURN_IF_ERROR(file_.Append(buffer_));
    buffer_.clear();
  }
  buffered_records_ = 0;
  return file_.Sync();
}

PlanReader::~PlanReader() { ::close(fd_); }

StatusOr<std::unique_ptr<PlanReader>> PlanReader::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return InternalError("cannot open " + path + ": " + std::strerror(errno));
  return std::unique_ptr<PlanReader>(new PlanReader(fd, path));
}

StatusOr<std::string> PlanReader::ReadRecord(const PlanEntry& entry) const {
  return ReadSpan(entry.plan_offset, entry.plan_length);
}

StatusOr<std::string> PlanReader::ReadSpan(int64_t offset, size_t length) const {
  std::string bytes(length, '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pread(fd_, bytes.data() + done, bytes.size() - done,
                        static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return InternalError("cannot read " + path_ + ": " + std::strerror(errno));
    }
    if (n == 0) {
      return InternalError("cannot read " + path_ + ": the file ends before offset " +
                           std::to_string(offset + static_cast<int64_t>(length)));
    }
    done += static_cast<size_t>(n);
  }
  return bytes;
}

StatusOr<MiniBatch> PlanReader::Decode(std::string_view record, int64_t offset) const {
  auto mb = DecodePlanRecord(record);
  if (!mb.ok()) return mb.status().WithContext(path_ + " at byte " + std::to_string(offset));
  return mb;
}

StatusOr<MiniBatch> PlanReader::Read(const PlanEntry& entry) const {
  PR_ASSIGN_OR_RETURN(std::string record, ReadRecord(entry));
  return Decode(record, entry.plan_offset);
}

StatusOr<LoadedPlan> LoadPlan(const std::string& path,
                              const std::function<void(const PlanEntry&)>& on_record) {
  LoadedPlan plan;
  int64_t line_no = 0;
  int64_t end_bytes = -1;
  auto valid = ForEachLine(path, [&](std::string_view line, int64_t offset) -> Status {
    ++line_no;
    if (plan.complete) return Status::Ok();  // nothing counts after END
    if (line == kPlanEnd) {
      plan.complete = true;
      end_bytes = offset + static_cast<int64_t>(line.size()) + 1;
      return Status::Ok();
    }
    auto mb = DecodePlanRecord(line);
    if (!mb.ok()) {
      return mb.status().WithContext(path + " line " + std::to_string(line_no));
    }
    if (mb->id != plan.records) {
      return InternalError(path + " line " + std::to_string(line_no) + ": mini-batch id " +
                           std::to_string(mb->id) + ", expected " + std::to_string(plan.records));
    }
    PlanEntry entry;
    entry.plan_offset = offset;
    entry.plan_length = static_cast<uint32_t>(line.size());
    entry.items = mb->items;
    entry.record_hash = PlanRecordHash(line);
    on_record(entry);
    ++plan.records;
    return Status::Ok();
  });
  if (!valid.ok()) return valid.status();
  plan.valid_bytes = plan.complete ? end_bytes : *valid;
  return plan;
}

std::vector<protocol::LeaseSegment> LeaseSegments(const std::string& input_dir,
                                                  const std::vector<TableSegment>& segments) {
  std::vector<protocol::LeaseSegment> out;
  out.reserve(segments.size());
  for (const TableSegment& seg : segments) {
    protocol::LeaseSegment l;
    l.file = JoinPath(input_dir, seg.file);
    l.format = seg.format == TabularFormat::kJsonl ? "jsonl" : "csv";
    l.header_end = seg.header_end;
    l.ranges.reserve(seg.ranges.size());
    for (const auto& [b, e] : seg.ranges) l.ranges.push_back({b, e});
    l.file_size = seg.file_size;
    l.file_mtime_ns = seg.file_mtime_ns;
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace parallelrun::rt
