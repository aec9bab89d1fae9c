#include "runtime/coordinator/planner.h"

#include "runtime/base/files.h"
#include "runtime/coordinator/plan_file.h"
#include "runtime/partitioner/partitioner.h"

namespace parallelrun::rt {

Planner::Planner(PlannerOptions options) : options_(std::move(options)) {}

Planner::~Planner() {
  Cancel();
  if (thread_.joinable()) thread_.join();
}

void Planner::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Planner::Cancel() { cancel_ = true; }

void Planner::Run() {
  Status st = Plan();
  if (cancel_) return;
  if (st.ok()) {
    options_.on_complete();
  } else {
    options_.on_error(st);
  }
}

Status Planner::Plan() {
  PR_ASSIGN_OR_RETURN(auto partitioner, MakePartitioner(options_.spec, options_.input_dirs,
                                                        Dirname(options_.plan_path)));
  // Skip what an earlier coordinator already wrote: the plan is deterministic.
  for (int64_t i = 0; i < options_.existing_records; ++i) {
    if (cancel_) return Status::Ok();
    PR_ASSIGN_OR_RETURN(auto mb, partitioner->Next());
    if (!mb) {
      return FailedPreconditionError("the inputs now give " + std::to_string(i) +
                                     " mini-batches, but " + options_.plan_path +
                                     " already holds " + std::to_string(options_.existing_records) +
                                     ": the inputs changed since the job started");
    }
  }
  PR_ASSIGN_OR_RETURN(auto writer, PlanWriter::Open(options_.plan_path, options_.valid_bytes));
  std::vector<PlanEntry> batch;
  int64_t next_id = options_.existing_records;
  SteadyTime last_flush = options_.clock->SteadyNow();
  auto flush = [&]() -> Status {
    PR_RETURN_IF_ERROR(writer->Flush());
    last_flush = options_.clock->SteadyNow();
    if (!batch.empty()) options_.on_durable(std::move(batch));
    batch.clear();
    return Status::Ok();
  };
  while (!cancel_) {
    PR_ASSIGN_OR_RETURN(auto mb, partitioner->Next());
    if (!mb) break;
    if (mb->id != next_id) {
      return InternalError("the partitioner gave mini-batch id " + std::to_string(mb->id) +
                           ", expected " + std::to_string(next_id));
    }
    ++next_id;
    batch.push_back(writer->Add(*mb));
    if (batch.size() >= kFlushRecords ||
        options_.clock->SteadyNow() - last_flush >= kFlushInterval) {
      PR_RETURN_IF_ERROR(flush());
    }
  }
  if (cancel_) return Status::Ok();
  if (options_.on_warning) {
    for (const std::string& w : partitioner->TakeWarnings()) options_.on_warning(w);
  }
  writer->AddEnd();
  return flush();
}

}  // namespace parallelrun::rt
