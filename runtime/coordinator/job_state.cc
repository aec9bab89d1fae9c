#include "runtime/coordinator/job_state.h"

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace parallelrun::rt {
namespace {

constexpr const char* kOutcomeNames[] = {"completed",  "failed", "retry",
                                         "given_back", "late",   "disrupted"};

}  // namespace

std::optional<Outcome> ParseOutcome(std::string_view name) {
  for (size_t i = 0; i < std::size(kOutcomeNames); ++i) {
    if (name == kOutcomeNames[i]) return static_cast<Outcome>(i);
  }
  return std::nullopt;
}

const char* OutcomeName(Outcome outcome) { return kOutcomeNames[static_cast<size_t>(outcome)]; }

JobState::JobState(int run_max_try)
    : run_max_try_(std::clamp(run_max_try, 1, int{std::numeric_limits<uint16_t>::max() - 1})) {}

int64_t JobState::AddPlanned(const PlanEntry& entry) {
  Entry e;
  e.plan_offset = entry.plan_offset;
  e.plan_length = entry.plan_length;
  e.items = entry.items;
  int64_t id = static_cast<int64_t>(mbs_.size());
  mbs_.push_back(e);
  fresh_.push_back(id);
  ++counts_.total;
  counts_.items_total += entry.items;
  return id;
}

std::vector<LeaseGrant> JobState::Lease(uint32_t node, int max, SteadyTime expiry) {
  std::vector<LeaseGrant> out;
  auto take = [&](std::deque<int64_t>& queue) {
    while (static_cast<int>(out.size()) < max && !queue.empty()) {
      int64_t id = queue.front();
      queue.pop_front();
      Entry& e = mbs_[static_cast<size_t>(id)];
      // Skip ids that completed while queued (a late RUN_DONE of an expired attempt).
      if (e.status != MiniBatchStatus::kPending) continue;
      if (e.attempts < std::numeric_limits<uint16_t>::max()) ++e.attempts;
      e.status = MiniBatchStatus::kRunning;
      running_[id] = Live{e.attempts, node, expiry};
      earliest_expiry_ = std::min(earliest_expiry_, expiry);
      ++counts_.running;
      out.push_back(LeaseGrant{id, e.attempts, e.plan_offset, e.plan_length});
    }
  };
  take(retries_);
  take(fresh_);
  return out;
}

std::optional<uint32_t> JobState::Holder(int64_t id, int attempt) const {
  auto it = running_.find(id);
  if (it == running_.end() || it->second.attempt != attempt) return std::nullopt;
  return it->second.node;
}

bool JobState::Renew(int64_t id, int attempt, uint32_t node, SteadyTime expiry) {
  auto it = running_.find(id);
  if (it == running_.end() || it->second.attempt != attempt) return false;
  if (it->second.node != node && it->second.node != kNoNode) return false;
  it->second.expiry = expiry;
  earliest_expiry_ = std::min(earliest_expiry_, expiry);
  if (it->second.node == kNoNode) it->second.node = node;
  return true;
}

bool JobState::GiveBack(int64_t id, int attempt, uint32_t node) {
  auto it = running_.find(id);
  if (it == running_.end() || it->second.attempt != attempt || it->second.node != node) {
    return false;
  }
  running_.erase(it);
  --counts_.running;
  Requeue(id, mbs_[static_cast<size_t>(id)]);
  return true;
}

void JobState::Requeue(int64_t id, Entry& e) {
  e.status = MiniBatchStatus::kPending;
  retries_.push_front(id);
}

bool JobState::Hold(int64_t id, int attempt, SteadyTime until) {
  Entry& e = mbs_[static_cast<size_t>(id)];
  if (e.status != MiniBatchStatus::kPending || attempt != e.attempts || attempt < 1) return false;
  // Its place in the plan-order queue is skipped while it runs; a give-back queues it again.
  e.status = MiniBatchStatus::kRunning;
  running_[id] = Live{attempt, kNoNode, until};
  earliest_expiry_ = std::min(earliest_expiry_, until);
  ++counts_.running;
  return true;
}

Decision JobState::Complete(Entry& e, int attempt, int64_t succeeded) {
  Decision d;
  d.outcome = Outcome::kCompleted;
  d.accepted = true;
  d.succeeded = std::clamp<int64_t>(succeeded, 0, e.items);
  d.failed = e.items - d.succeeded;
  e.status = MiniBatchStatus::kCompleted;
  e.accepted_attempt = static_cast<uint16_t>(std::min<int>(attempt, 0xffff));
  ++counts_.completed;
  counts_.items_succeeded += d.succeeded;
  counts_.items_failed += d.failed;
  return d;
}

Decision JobState::FailTry(int64_t id, Entry& e) {
  Decision d;
  ++e.failures;
  if (e.failures >= run_max_try_) {
    d.outcome = Outcome::kFailed;
    d.accepted = true;
    d.failed = e.items;
    e.status = MiniBatchStatus::kFailed;
    ++counts_.completed;
    ++counts_.failed;
    counts_.items_failed += e.items;
  } else {
    d.outcome = Outcome::kRetry;
    e.status = MiniBatchStatus::kPending;
    retries_.push_back(id);
    if (e.failures == 1) ++counts_.retried;  // once per mini-batch
  }
  return d;
}

Decision JobState::Apply(int64_t id, int attempt, AttemptStatus status, int64_t succeeded) {
  Entry& e = mbs_[static_cast<size_t>(id)];
  if (e.status == MiniBatchStatus::kCompleted || e.status == MiniBatchStatus::kFailed) {
    return Decision{};
  }
  auto it = running_.find(id);
  // Fencing: an attempt whose lease expired or was dropped (already queued again), one from
  // before a restart that is not held, or one never issued changes nothing.
  if (it == running_.end() || it->second.attempt != attempt) return Decision{};
  running_.erase(it);
  --counts_.running;
  if (status == AttemptStatus::kRunDone) return Complete(e, attempt, succeeded);
  if (status == AttemptStatus::kCancelled) {
    Requeue(id, e);
    Decision d;
    d.outcome = Outcome::kGivenBack;
    return d;
  }
  return FailTry(id, e);
}

Outcome JobState::Disrupt(int64_t id, Entry& e) {
  if (e.disruptions >= kFreeDisruptions) return FailTry(id, e).outcome;
  ++e.disruptions;
  ++counts_.disrupted;
  Requeue(id, e);
  return Outcome::kDisrupted;
}

std::vector<ExpiredLease> JobState::ExpireLeases(SteadyTime now) {
  std::vector<ExpiredLease> out;
  if (now < earliest_expiry_) return out;
  earliest_expiry_ = SteadyTime::max();
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.expiry > now) {
      earliest_expiry_ = std::min(earliest_expiry_, it->second.expiry);
      ++it;
      continue;
    }
    int64_t id = it->first;
    ExpiredLease x;
    x.attempt = RunningAttempt{id, it->second.attempt, it->second.node, it->second.expiry};
    it = running_.erase(it);
    --counts_.running;
    Entry& e = mbs_[static_cast<size_t>(id)];
    if (x.attempt.node == kNoNode) {
      Requeue(id, e);
      x.outcome = Outcome::kGivenBack;
    } else {
      x.outcome = Disrupt(id, e);
    }
    x.items = e.items;
    x.disruptions = e.disruptions;
    out.push_back(x);
  }
  std::sort(out.begin(), out.end(), [](const ExpiredLease& a, const ExpiredLease& b) {
    return a.attempt.id < b.attempt.id;
  });
  return out;
}

std::vector<ExpiredLease> JobState::DropNodeAttempts(
    uint32_t node, const std::vector<std::pair<int64_t, int>>& keep) {
  std::vector<ExpiredLease> out;
  for (auto it = running_.begin(); it != running_.end();) {
    const int64_t id = it->first;
    const Live live = it->second;
    if (live.node != node ||
        std::find(keep.begin(), keep.end(), std::make_pair(id, live.attempt)) != keep.end()) {
      ++it;
      continue;
    }
    it = running_.erase(it);
    --counts_.running;
    Entry& e = mbs_[static_cast<size_t>(id)];
    ExpiredLease x;
    x.attempt = RunningAttempt{id, live.attempt, live.node, live.expiry};
    x.outcome = Disrupt(id, e);
    x.items = e.items;
    x.disruptions = e.disruptions;
    out.push_back(x);
  }
  std::sort(out.begin(), out.end(), [](const ExpiredLease& a, const ExpiredLease& b) {
    return a.attempt.id < b.attempt.id;
  });
  return out;
}

bool JobState::Carry(int64_t id, int64_t succeeded) {
  Entry& e = mbs_[static_cast<size_t>(id)];
  if (e.status != MiniBatchStatus::kPending || e.attempts > 0) return false;
  Complete(e, 0, succeeded);
  e.carried = true;
  ++counts_.carried;
  return true;
}

void JobState::ReplayLease(int64_t id, int attempt) {
  Entry& e = mbs_[static_cast<size_t>(id)];
  if (attempt > e.attempts) e.attempts = static_cast<uint16_t>(std::min(attempt, 0xffff));
}

void JobState::ReplayOutcome(int64_t id, int attempt, Outcome outcome, int64_t succeeded) {
  Entry& e = mbs_[static_cast<size_t>(id)];
  ReplayLease(id, attempt);
  if (e.status == MiniBatchStatus::kCompleted || e.status == MiniBatchStatus::kFailed) return;
  switch (outcome) {
    case Outcome::kCompleted:
      Complete(e, attempt, succeeded);
      break;
    case Outcome::kFailed:
    case Outcome::kRetry: {
      // Replayed tries stay in the plan-order queue where AddPlanned put them.
      ++e.failures;
      if (e.failures >= run_max_try_ || outcome == Outcome::kFailed) {
        e.status = MiniBatchStatus::kFailed;
        ++counts_.completed;
        ++counts_.failed;
        counts_.items_failed += e.items;
      } else if (e.failures == 1) {
        ++counts_.retried;  // once per mini-batch
      }
      break;
    }
    case Outcome::kDisrupted:
      if (e.disruptions < 0xff) ++e.disruptions;
      ++counts_.disrupted;
      break;
    case Outcome::kGivenBack:
    case Outcome::kLate:
      break;
  }
}

std::vector<RunningAttempt> JobState::Running() const {
  std::vector<RunningAttempt> out;
  out.reserve(running_.size());
  for (const auto& [id, live] : running_) {
    out.push_back(RunningAttempt{id, live.attempt, live.node, live.expiry});
  }
  std::sort(out.begin(), out.end(),
            [](const RunningAttempt& a, const RunningAttempt& b) { return a.id < b.id; });
  return out;
}

int64_t JobState::RunningOnWorkers(int per_node, int nodes) const {
  std::unordered_map<uint32_t, int64_t> per;
  for (const auto& [id, live] : running_) ++per[live.node];
  int64_t sum = 0;
  for (const auto& [node, n] : per) sum += std::min<int64_t>(n, std::max(per_node, 1));
  return std::min<int64_t>(sum, int64_t{std::max(per_node, 1)} * std::max(nodes, 1));
}

}  // namespace parallelrun::rt
