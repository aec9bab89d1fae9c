#include "operator/reconciler/job_status.h"

#include <optional>

#include "fmt/format.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;

namespace {

std::string Join(const std::string& folder, const std::string& name) {
  if (folder.empty() || folder == ".") return name;
  return folder.back() == '/' ? folder + name : folder + "/" + name;
}

std::string Trimmed(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string DescribeFolder(const rt::DataRef& ref) {
  if (ref.volume.empty()) return fmt::format("the output folder {} in the image", ref.path);
  return fmt::format("the output folder \"{}\" on volume \"{}\"", Trimmed(ref.path), ref.volume);
}

}  // namespace

std::string SecondsPrecision(const std::string& text) {
  auto t = rt::ParseRfc3339(text);
  return t.ok() ? rt::FormatRfc3339(*t) : std::string();
}

namespace {

// The coordinator stamps lastSeen in milliseconds; the status holds every time in seconds.
api::RecentError ToStatus(const rt::protocol::ErrorCount& e) {
  return {e.error, e.location, e.count, e.miniBatches, e.items, SecondsPrecision(e.lastSeen)};
}

}  // namespace

std::optional<CoordinatorReport> ParseSummary(const std::string& message) {
  const json summary = json::parse(message, nullptr, /*allow_exceptions=*/false);
  if (!summary.is_object()) return std::nullopt;
  CoordinatorReport report;
  try {
    report.progress = summary.get<rt::protocol::Progress>();
  } catch (const std::exception&) {
  }
  report.has_mini_batches = summary.contains("miniBatches") && summary["miniBatches"].is_object();
  report.has_items = summary.contains("items") && summary["items"].is_object();
  return report;
}

void SetLocations(const rt::JobSpec& spec, api::JobStatus& status) {
  const std::string folder = Trimmed(spec.output.path);
  const bool append_row = spec.output_action == rt::OutputAction::kAppendRow;
  status.output = api::VolumeLocation{spec.output.volume, folder,
                                      append_row ? spec.append_row_file_name : std::string()};
  status.logs = api::VolumeLocation{spec.output.volume, Join(folder, "logs"), ""};
}

void ApplyProgress(const CoordinatorReport& report, const rt::JobSpec& spec, bool ended,
                   api::JobStatus& status) {
  const rt::protocol::Progress& p = report.progress;
  if (report.has_mini_batches) {
    const auto& mb = p.miniBatches;
    status.mini_batches =
        api::MiniBatchCounts{mb.total, mb.completed, mb.failed, mb.running, mb.retried};
  }
  if (report.has_items)
    status.items = api::ItemCounts{p.items.total, p.items.succeeded, p.items.failed};
  // running is what the coordinator reports while it runs; nothing runs after the end.
  if (ended && status.mini_batches) status.mini_batches->running = 0;
  if (p.planned && status.mini_batches) {
    status.progress =
        fmt::format("{}/{}", status.mini_batches->completed, status.mini_batches->total);
  } else if (!ended) {
    status.progress = "planning";
  } else if (status.progress == "planning") {
    status.progress.clear();  // ended before its plan was made (e.g. OutputInUse)
  }
  if (!p.lastProgressLine.empty()) status.last_progress_line = p.lastProgressLine;
  if (!p.eta.empty()) status.eta = p.eta;
  if (!p.outputFile.empty()) status.output_file = p.outputFile;
  status.estimated_completion_time = ended ? "" : SecondsPrecision(p.estimatedCompletionTime);
  // The coordinator's summary counts the agents it heard from last; a report without one (it
  // ended before any agent came, or its agents are gone) keeps the last count observed.
  const int64_t last_ready = status.nodes ? status.nodes->ready : 0;
  status.nodes = api::NodeCounts{spec.node_count, last_ready};
  if (!ended || p.nodes.ready > 0) status.nodes->ready = p.nodes.ready;
  if (!p.recentErrors.empty()) {
    status.recent_errors.clear();
    for (const auto& e : p.recentErrors) status.recent_errors.push_back(ToStatus(e));
  }
  SetLocations(spec, status);
}

void SetReason(api::JobStatus& status) {
  const api::Condition* failed = api::FindCondition(status, api::kConditionFailed);
  const api::Condition* scheduled = api::FindCondition(status, api::kConditionScheduled);
  std::string reason;
  if (status.phase == api::kPhaseSucceeded) {
    reason = rt::reason::kCompleted;
  } else if (status.phase == api::kPhaseFailed) {
    reason = failed != nullptr && !failed->reason.empty() ? failed->reason : api::kReasonFailed;
  } else if (status.phase == api::kPhaseSuspended) {
    reason = api::kReasonSuspended;
  } else if (scheduled != nullptr && scheduled->status == api::kConditionFalse) {
    reason = scheduled->reason;
  }
  status.reason = reason;
}

std::string OwnerUidOf(const std::string& message) {
  const std::string marker = "owner \"";
  const size_t at = message.find(marker);
  if (at == std::string::npos) return "";
  const size_t start = at + marker.size();
  const size_t end = message.find('"', start);
  return end == std::string::npos ? "" : message.substr(start, end - start);
}

std::string OutputInUseMessage(const rt::JobSpec& spec, const std::string& owner,
                               const std::string& owner_uid) {
  const std::string who = owner.empty() ? fmt::format("a deleted job (uid {})", owner_uid)
                                        : fmt::format("job {} (uid {})", owner, owner_uid);
  const std::string delete_owner =
      owner.empty() ? "" : fmt::format(" (deleting job {} does not free it)", owner);
  return fmt::format(
      "{} belongs to {}; nothing was changed in it. Either set spec.output.path to another "
      "folder, or, if that job's output is no longer needed, delete the folder \"{}\"{} and "
      "apply this job again",
      DescribeFolder(spec.output), who, Trimmed(spec.output.path), delete_owner);
}

}  // namespace parallelrun::op::reconciler
