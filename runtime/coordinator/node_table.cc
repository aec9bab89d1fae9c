#include "runtime/coordinator/node_table.h"

#include <set>

namespace parallelrun::rt {

NodeTable::Registration NodeTable::Register(const std::string& name, int64_t pid, SteadyTime now) {
  Registration r;
  r.known = index_.count(name) > 0;
  r.index = Touch(name, now);
  Node& node = nodes_[r.index];
  r.restarted = r.known && node.pid != pid;
  node.pid = pid;
  if (r.restarted && node.gave_up) {  // a new agent tries again
    node.gave_up = false;
    --gave_up_;
  }
  return r;
}

uint32_t NodeTable::Touch(const std::string& name, SteadyTime now) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    nodes_[it->second].last_seen = now;
    return it->second;
  }
  uint32_t index = static_cast<uint32_t>(nodes_.size());
  Node node;
  node.name = name;
  node.last_seen = now;
  nodes_.push_back(std::move(node));
  index_.emplace(name, index);
  return index;
}

bool NodeTable::MarkGaveUp(uint32_t index) {
  if (nodes_[index].gave_up) return false;
  nodes_[index].gave_up = true;
  ++gave_up_;
  return true;
}

int64_t NodeTable::ReadyCount(SteadyTime now, std::chrono::seconds period) const {
  int64_t n = 0;
  for (const auto& node : nodes_) n += now - node.last_seen <= period ? 1 : 0;
  return n;
}

std::vector<std::string> NodeTable::NotToldTheEnd(SteadyTime now,
                                                  std::chrono::seconds period) const {
  std::vector<std::string> names;
  for (const auto& node : nodes_) {
    if (!node.told_end && now - node.last_seen <= period) names.push_back(node.name);
  }
  return names;
}

size_t NodeTable::Hold(JobState& state, const std::unordered_map<int64_t, HeldAttempt>& open,
                       SteadyTime until) {
  for (const auto& [id, attempt] : open) {
    if (state.Hold(id, attempt.attempt, until)) held_.emplace(id, attempt);
  }
  return held_.size();
}

NodeTable::Reclaim NodeTable::ReclaimFor(JobState& state, const std::string& name, uint32_t index,
                                         const std::vector<protocol::LeaseRef>& has,
                                         SteadyTime expiry) {
  Reclaim out;
  if (held_.empty()) return out;
  std::set<std::pair<int64_t, int>> on_node;
  for (const auto& ref : has) on_node.emplace(ref.mini_batch_id, ref.attempt);
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.node != name) {
      ++it;
      continue;
    }
    const int64_t id = it->first;
    const int attempt = it->second.attempt;
    if (on_node.count({id, attempt})) {
      out.kept += state.Renew(id, attempt, index, expiry) ? 1 : 0;
    } else if (state.GiveBack(id, attempt, kNoNode)) {
      out.released.push_back(protocol::LeaseRef{id, attempt});
    }
    it = held_.erase(it);
  }
  return out;
}

void NodeTable::Unhold(int64_t id, int attempt) {
  if (auto it = held_.find(id); it != held_.end() && it->second.attempt == attempt) {
    held_.erase(it);
  }
}

const std::string& NodeTable::NodeOf(const RunningAttempt& a) const {
  static const std::string kUnknown = "a node of the previous coordinator";
  if (a.node != kNoNode) return nodes_[a.node].name;
  auto it = held_.find(a.id);
  return it == held_.end() ? kUnknown : it->second.node;
}

std::string NodeTable::Fence(const JobState& state, int64_t id, int attempt, uint32_t index,
                             const std::string& name) const {
  if (id < 0 || id >= state.counts().total) return "it is not a planned mini-batch";
  auto holder = state.Holder(id, attempt);
  if (!holder) {
    return state.status(id) == MiniBatchStatus::kCompleted ||
                   state.status(id) == MiniBatchStatus::kFailed
               ? "the mini-batch already ended"
               : "attempt " + std::to_string(attempt) + " is not the one on lease";
  }
  if (*holder == index) return "";
  if (*holder == kNoNode) {
    auto it = held_.find(id);
    if (it != held_.end() && it->second.attempt == attempt && it->second.node == name) return "";
    return "it is held for " + (it == held_.end() ? std::string("another node") : it->second.node);
  }
  return "it is on lease to " + nodes_[*holder].name;
}

}  // namespace parallelrun::rt
