#include "runtime/coordinator/retry_from.h"

#include <sys/stat.h>

#include <algorithm>

#include "runtime/base/files.h"
#include "runtime/coordinator/journal.h"
#include "runtime/output/output_index.h"

namespace parallelrun::rt {
namespace {

constexpr uint8_t kNone = 0;
constexpr uint8_t kCompleted = 1;
constexpr uint8_t kFailed = 2;

std::string PartPath(const std::string& state_dir, int64_t id, int attempt) {
  return JoinPath(JoinPath(state_dir, "parts"), std::to_string(id) + "." + std::to_string(attempt));
}

}  // namespace

std::string DescribeMiniBatch(const MiniBatch& mb, const JobSpec& spec) {
  std::string s = "input ";
  if (mb.input_index >= 0 && mb.input_index < static_cast<int>(spec.inputs.size())) {
    s += "\"" + spec.inputs[static_cast<size_t>(mb.input_index)].name + "\"";
  } else {
    s += "#" + std::to_string(mb.input_index);
  }
  s += ": ";
  if (!mb.files.empty()) {
    s += std::to_string(mb.files.size()) + (mb.files.size() == 1 ? " file " : " files ");
    s += mb.files.front();
    if (mb.files.size() > 1) s += " .. " + mb.files.back();
  } else if (!mb.file.empty()) {
    s += std::to_string(mb.items) + (mb.items == 1 ? " row" : " rows") + " of " + mb.file +
         " (bytes " + std::to_string(mb.begin) + ".." + std::to_string(mb.end) + ")";
  } else {
    s += std::to_string(mb.items) + " items";
  }
  return s;
}

StatusOr<std::unique_ptr<EarlierRun>> EarlierRun::Load(const std::string& dir, bool need_rows) {
  std::unique_ptr<EarlierRun> run(new EarlierRun());
  run->dir_ = dir;
  run->state_dir_ = JoinPath(dir, ".parallelrun");
  run->need_rows_ = need_rows;
  if (!IsDirectory(dir)) return InvalidArgumentError("folder " + dir + " does not exist");
  const std::string plan_path = JoinPath(run->state_dir_, "plan");
  const std::string journal_path = JoinPath(run->state_dir_, "journal");
  for (const std::string& p : {plan_path, journal_path}) {
    if (!PathExists(p)) {
      return InvalidArgumentError(
          "not the output folder of a parallelrun run: " + p +
          " does not exist (expected the plan and journal an earlier run leaves in "
          ".parallelrun/)");
    }
  }
  auto plan = LoadPlan(plan_path, [&](const PlanEntry& e) {
    Mb mb;
    mb.record_hash = e.record_hash;
    mb.plan_offset = e.plan_offset;
    mb.plan_length = e.plan_length;
    mb.items = e.items;
    run->mbs_.push_back(mb);
  });
  if (!plan.ok()) return plan.status();
  run->plan_complete_ = plan->complete;
  PR_ASSIGN_OR_RETURN(run->plan_reader_, PlanReader::Open(plan_path));
  PR_RETURN_IF_ERROR(run->LoadJournal());
  if (need_rows) PR_RETURN_IF_ERROR(run->LoadRows());
  return run;
}

Status EarlierRun::LoadJournal() {
  const std::string path = JoinPath(state_dir_, "journal");
  auto valid = Journal::Replay(path, [&](const JournalRecord& r) -> Status {
    if (r.type == "start" || r.type == "lease") return Status::Ok();
    if (r.mini_batch_id < 0 || r.mini_batch_id >= records()) return Status::Ok();
    Mb& mb = mbs_[static_cast<size_t>(r.mini_batch_id)];
    if (mb.state != kNone) return Status::Ok();  // the first final outcome counts, as there
    if (r.outcome == Outcome::kCompleted) {
      mb.state = kCompleted;
      mb.attempt =
          static_cast<uint16_t>(r.type == "carried" ? 0 : std::clamp(r.attempt, 0, 0xffff));
      mb.succeeded = std::clamp<int64_t>(r.succeeded, 0, mb.items);
      mb.part_bytes = r.type == "carried" ? -1 : r.part_bytes;
      mb.part_crc32 = r.part_crc32;
      ++completed_;
    } else if (r.outcome == Outcome::kFailed) {
      mb.state = kFailed;
      ++failed_;
    }
    return Status::Ok();
  });
  return valid.ok() ? Status::Ok() : valid.status();
}

Status EarlierRun::LoadRows() {
  const std::string index_path = JoinPath(state_dir_, kOutputIndexFile);
  auto info = ReadOutputIndex(index_path, [&](int64_t id, ByteRange range) {
    if (id >= records()) return;
    Mb& mb = mbs_[static_cast<size_t>(id)];
    if (mb.state != kCompleted) return;
    mb.rows = range;
    mb.has_rows = true;
  });
  if (info.ok()) {
    output_file_ = JoinPath(dir_, info->file_name);
    struct stat st;
    if (::stat(output_file_.c_str(), &st) != 0) {
      return InvalidArgumentError("its output file " + output_file_ + " (named in " + index_path +
                                  ") does not exist, so the rows of its completed mini-batches "
                                  "cannot be carried over");
    }
    if (st.st_size != info->file_bytes) {
      return InvalidArgumentError("its output file " + output_file_ + " has " +
                                  std::to_string(st.st_size) + " bytes, but " + index_path +
                                  " says " + std::to_string(info->file_bytes) +
                                  ": the file was changed after that run, so its rows cannot be "
                                  "carried over");
    }
    has_header_ = info->has_header;
    header_ = info->header;
    rows_from_ = "its output index";
  } else if (info.status().code() != StatusCode::kNotFound) {
    return info.status();
  } else if (IsDirectory(JoinPath(state_dir_, "parts"))) {
    // An unfinished run (or one whose assembly failed): the accepted part files are its rows,
    // those that are still there with the size they had when accepted. Any other runs again.
    for (size_t id = 0; id < mbs_.size(); ++id) {
      Mb& mb = mbs_[id];
      if (mb.state != kCompleted || mb.attempt == 0) continue;
      struct stat st;
      const std::string part = PartPath(state_dir_, static_cast<int64_t>(id), mb.attempt);
      mb.has_rows = ::stat(part.c_str(), &st) == 0 &&
                    (mb.part_bytes < 0 || static_cast<int64_t>(st.st_size) == mb.part_bytes);
    }
    rows_from_ = "its part files";
  } else if (completed_ > 0) {
    return InvalidArgumentError(
        std::to_string(completed_) + " mini-batches completed there, but it left neither " +
        index_path + " nor part files in " + JoinPath(state_dir_, "parts") +
        " to take their rows from (was it a summary_only job, or did it finish before output "
        "indexes existed?)");
  }
  for (const Mb& mb : mbs_) {
    if (mb.state == kCompleted && !mb.has_rows) ++without_rows_;
  }
  return Status::Ok();
}

bool EarlierRun::Matches(int64_t id, const PlanEntry& entry) const {
  if (id >= records()) return !plan_complete_;
  const Mb& mb = mbs_[static_cast<size_t>(id)];
  // The hash alone: record lengths differ with the file fingerprints they may carry.
  return mb.record_hash == entry.record_hash;
}

Status EarlierRun::Check(int64_t id, const PlanEntry& entry, const PlanReader& this_plan,
                         const JobSpec& spec) const {
  auto describe_this = [&]() -> std::string {
    auto mb = this_plan.Read(entry);
    return mb.ok() ? DescribeMiniBatch(*mb, spec) : mb.status().message();
  };
  if (id >= records()) {
    if (!plan_complete_) return Status::Ok();
    return InvalidArgumentError("this run plans more mini-batches than the " +
                                std::to_string(records()) + " of the earlier run: mini-batch " +
                                std::to_string(id) + " is " + describe_this());
  }
  if (Matches(id, entry)) return Status::Ok();
  const Mb& mb = mbs_[static_cast<size_t>(id)];
  auto earlier = plan_reader_->Read(PlanEntry{mb.plan_offset, mb.plan_length, mb.items, 0});
  return InvalidArgumentError(
      "mini-batch " + std::to_string(id) + " differs: the earlier run planned " +
      (earlier.ok() ? DescribeMiniBatch(*earlier, spec) : earlier.status().message()) +
      "; this run plans " + describe_this());
}

Status EarlierRun::CheckTotal(int64_t total) const {
  if (total >= records()) return Status::Ok();
  return InvalidArgumentError(
      "this run plans " + std::to_string(total) + " mini-batches, the earlier run planned " +
      std::to_string(records()) + (plan_complete_ ? "" : " (and had not finished planning)"));
}

std::optional<CarriedMiniBatch> EarlierRun::Carried(int64_t id) const {
  if (id < 0 || id >= records()) return std::nullopt;
  const Mb& mb = mbs_[static_cast<size_t>(id)];
  if (mb.state != kCompleted || (need_rows_ && !mb.has_rows)) return std::nullopt;
  return CarriedMiniBatch{mb.attempt, mb.succeeded, mb.items - mb.succeeded};
}

RowSource EarlierRun::RowsOf(int64_t id) const {
  RowSource s;
  if (id < 0 || id >= records()) return s;
  const Mb& mb = mbs_[static_cast<size_t>(id)];
  if (mb.state != kCompleted || !mb.has_rows) return s;
  if (!output_file_.empty()) {
    s.path = output_file_;
    s.offset = mb.rows.offset;
    s.length = mb.rows.length;
    if (has_header_) {
      s.header_path = output_file_;
      s.header_offset = header_.offset;
      s.header_length = header_.length;
    }
    return s;
  }
  s = PartFileSource(PartPath(state_dir_, id, mb.attempt));
  s.must_exist = true;  // it existed at Load: without it, rows counted as succeeded would be lost
  if (mb.part_bytes >= 0) {
    s.expected_bytes = mb.part_bytes;  // verified again as the rows are copied
    s.expected_crc32 = mb.part_crc32;
  }
  return s;
}

}  // namespace parallelrun::rt
