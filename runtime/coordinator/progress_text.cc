#include "runtime/coordinator/progress_text.h"

namespace parallelrun::rt {

std::optional<double> EtaSeconds(const JobCounts& c, bool plan_complete,
                                 std::optional<SteadyTime> first_lease, int64_t completed_at_start,
                                 SteadyTime now) {
  if (!plan_complete || !first_lease) return std::nullopt;
  int64_t done_here = c.completed - c.carried - completed_at_start;
  if (done_here <= 0) return std::nullopt;
  double elapsed = std::chrono::duration<double>(now - *first_lease).count();
  return elapsed * static_cast<double>(c.total - c.completed) / static_cast<double>(done_here);
}

std::string ProgressLine(const ProgressLineInput& in) {
  const JobCounts& c = in.counts;
  std::string s = "Processed " + std::to_string(c.completed) + " of " + std::to_string(c.total) +
                  (in.plan_complete ? "" : "+") + " mini batches in " +
                  FormatDuration(in.elapsed_s);
  if (c.failed > 0) s += " (" + std::to_string(c.failed) + " failed)";
  if (in.final_line && !in.carried_from.empty()) {
    s += ", " + std::to_string(c.carried) + " of them carried over from " + in.carried_from;
  }
  if (!in.final_line && c.completed < c.total && in.eta_s) {
    s += ", estimated " + FormatDuration(*in.eta_s) + " remaining";
  }
  return s;
}

std::string RunningSummary(const std::vector<RunningAttempt>& running,
                           const std::function<std::string(const RunningAttempt&)>& node_of) {
  if (running.empty()) return "none running";
  std::string s;
  size_t n = 0;
  for (const auto& r : running) {
    if (n == kMaxRunningNamed) {
      s += ", and " + std::to_string(running.size() - n) + " more";
      break;
    }
    if (n++) s += ", ";
    s += "mini-batch " + std::to_string(r.id) + " (attempt " + std::to_string(r.attempt) + ") on " +
         node_of(r);
  }
  return "running: " + s;
}

protocol::Progress RunningProgress(const JobCounts& c, bool plan_complete, bool any_node) {
  protocol::Progress p;
  p.phase = any_node ? "Running" : "Pending";
  p.miniBatches.total = c.total;
  p.miniBatches.completed = c.completed;
  p.miniBatches.failed = c.failed;
  p.miniBatches.running = c.running;
  p.miniBatches.retried = c.retried;
  p.items.total = c.items_total;
  p.items.succeeded = c.items_succeeded;
  p.items.failed = c.items_failed;
  p.progress = std::to_string(c.completed) + "/" + std::to_string(c.total);
  p.planned = plan_complete;
  return p;
}

protocol::Progress EndedProgress(const JobResult& r, bool planned) {
  protocol::Progress p;
  p.phase = r.succeeded ? "Succeeded" : "Failed";
  p.reason = r.reason;
  p.message = r.message;
  p.startTime = r.start_time;
  p.completionTime = r.completion_time;
  p.miniBatches.total = r.mini_batches_total;
  p.miniBatches.completed = r.mini_batches_succeeded + r.mini_batches_failed;
  p.miniBatches.failed = r.mini_batches_failed;
  p.miniBatches.retried = r.mini_batches_retried;
  p.items.total = r.items_total;
  p.items.succeeded = r.items_succeeded;
  p.items.failed = r.items_failed;
  p.progress = std::to_string(p.miniBatches.completed) + "/" + std::to_string(p.miniBatches.total);
  p.outputFile = r.output_file;
  p.planned = planned;
  p.exitCode = r.exit_code;
  p.eta = "0:00:00";
  return p;
}

}  // namespace parallelrun::rt
