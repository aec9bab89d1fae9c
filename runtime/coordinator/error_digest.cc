#include "runtime/coordinator/error_digest.h"

#include <algorithm>

namespace parallelrun::rt {
namespace {

struct Frame {
  std::string file;
  std::string line;
};

// `  File "/code/score.py", line 7, in run` -> {"/code/score.py", "7"}; false for other lines.
bool ParseFrameLine(const std::string& text, Frame* out) {
  const std::string prefix = "File \"";
  size_t start = text.find_first_not_of(' ');
  if (start == std::string::npos || text.compare(start, prefix.size(), prefix) != 0) return false;
  start += prefix.size();
  const std::string mid = "\", line ";
  size_t end = text.find(mid, start);
  if (end == std::string::npos) return false;
  size_t num = end + mid.size();
  size_t num_end = num;
  while (num_end < text.size() && text[num_end] >= '0' && text[num_end] <= '9') ++num_end;
  if (num_end == num) return false;
  out->file = text.substr(start, end - start);
  out->line = text.substr(num, num_end - num);
  return true;
}

bool IsPythonLibrary(const std::string& file) {
  return file.empty() || file[0] == '<' || file.find("/site-packages/") != std::string::npos ||
         file.find("/dist-packages/") != std::string::npos ||
         file.find("/lib/python") != std::string::npos;
}

std::string Clip(const std::string& s, size_t max) {
  std::string out = s.size() > max ? s.substr(0, max) + "..." : s;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

std::string DeepestUserFrame(const std::string& traceback, const std::string& code_dir) {
  const std::string header = "Traceback (most recent call last):";
  size_t begin = traceback.rfind(header);
  if (begin == std::string::npos) return "";
  std::string dir = code_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::vector<Frame> frames;
  size_t pos = begin + header.size();
  while (pos < traceback.size()) {
    size_t end = traceback.find('\n', pos);
    if (end == std::string::npos) end = traceback.size();
    Frame f;
    if (ParseFrameLine(traceback.substr(pos, end - pos), &f)) frames.push_back(std::move(f));
    pos = end + 1;
  }
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    if (!dir.empty() && it->file.size() > dir.size() + 1 && it->file.rfind(dir + "/", 0) == 0) {
      return it->file.substr(dir.size() + 1) + ":" + it->line;
    }
  }
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    if (!IsPythonLibrary(it->file)) return it->file + ":" + it->line;
  }
  return "";
}

void ErrorDigest::Add(const std::string& error, const std::string& detail, int64_t mini_batch_id,
                      int64_t items, const std::string& when) {
  std::string text = Clip(error.empty() ? "(no error text)" : error, kMaxErrorChars);
  std::string location = DeepestUserFrame(detail, code_dir_);
  auto key = std::make_pair(text, location);
  auto it = groups_.find(key);
  if (it == groups_.end()) {
    if (groups_.size() >= kMaxGroups) DropOneGroup();
    it = groups_.emplace(key, Group{}).first;
    it->second.stat.error = text;
    it->second.stat.location = location;
  }
  Group& g = it->second;
  ++g.stat.count;
  g.stat.last_seen = when;
  g.seq = ++seq_;
  if (mini_batch_id >= 0 && g.mini_batches.insert(mini_batch_id).second) {
    ++g.stat.mini_batches;
    g.stat.items += std::max<int64_t>(items, 0);
  }
}

void ErrorDigest::DropOneGroup() {
  auto victim = groups_.begin();
  for (auto it = groups_.begin(); it != groups_.end(); ++it) {
    if (it->second.stat.count < victim->second.stat.count ||
        (it->second.stat.count == victim->second.stat.count &&
         it->second.seq < victim->second.seq)) {
      victim = it;
    }
  }
  if (victim != groups_.end()) groups_.erase(victim);
}

std::vector<ErrorStat> ErrorDigest::Recent(size_t max) const {
  std::vector<const Group*> all;
  all.reserve(groups_.size());
  for (const auto& [key, g] : groups_) all.push_back(&g);
  std::sort(all.begin(), all.end(), [](const Group* a, const Group* b) { return a->seq > b->seq; });
  std::vector<ErrorStat> out;
  for (size_t i = 0; i < all.size() && i < max; ++i) out.push_back(all[i]->stat);
  return out;
}

ErrorStat ErrorDigest::MostFrequent() const {
  const Group* best = nullptr;
  for (const auto& [key, g] : groups_) {
    if (!best || g.stat.count > best->stat.count ||
        (g.stat.count == best->stat.count && g.seq > best->seq)) {
      best = &g;
    }
  }
  return best ? best->stat : ErrorStat{};
}

namespace {

protocol::ErrorCount ToErrorCount(const ErrorStat& s) {
  return protocol::ErrorCount{s.error, s.location, s.count, s.mini_batches, s.items, s.last_seen};
}

}  // namespace

void PutErrors(const ErrorDigest& digest, JobResult* result) {
  result->most_frequent_error = digest.MostFrequent();
  result->recent_errors = digest.Recent(kRecentErrors);
}

void PutErrors(const JobResult& result, protocol::Progress* progress) {
  progress->recentErrors.clear();
  for (const auto& e : result.recent_errors) progress->recentErrors.push_back(ToErrorCount(e));
  progress->mostFrequentError = ToErrorCount(result.most_frequent_error);
}

void PutErrors(const ErrorDigest& digest, protocol::Progress* progress) {
  progress->recentErrors.clear();
  for (const auto& e : digest.Recent(kRecentErrors)) {
    progress->recentErrors.push_back(ToErrorCount(e));
  }
  progress->mostFrequentError = ToErrorCount(digest.MostFrequent());
}

std::string MostFrequentErrorSuffix(const ErrorDigest& digest) {
  if (digest.empty()) return "";
  return "; most frequent error: " + DescribeErrorStat(digest.MostFrequent());
}

}  // namespace parallelrun::rt
