#include "runtime/agent/user_log_echo.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

namespace parallelrun::rt {
namespace {

constexpr size_t kMaxTracebacksShown = 100;
constexpr size_t kMaxReadPerPoll = 1 << 20;  // a flood is copied over several polls
constexpr size_t kMaxLine = 16 * 1024;       // a longer line without a newline is cut there

// The regular files directly in `dir`, sorted; none when it does not exist yet.
std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "process000" from ".../process000.stdout.txt".
std::string ProcessOf(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  return name.substr(0, name.find('.'));
}

}  // namespace

UserLogEcho::UserLogEcho(std::string log_dir, std::string node, std::FILE* out,
                         std::chrono::milliseconds period)
    : log_dir_(std::move(log_dir)), node_(std::move(node)), out_(out), period_(period) {}

UserLogEcho::~UserLogEcho() { Stop(); }

void UserLogEcho::Start() {
  MutexLock lock(mu_);
  if (started_) return;
  started_ = true;
  for (const char* stream : {"stdout", "stderr"}) {
    for (const auto& path : FilesIn(log_dir_ + "/user/" + stream + "/" + node_)) {
      std::error_code ec;
      auto size = std::filesystem::file_size(path, ec);
      files_[path].offset = ec ? 0 : static_cast<int64_t>(size);
    }
  }
  thread_ = std::thread([this] {
    MutexLock lock(mu_);
    for (;;) {
      cv_.WaitFor(mu_, period_, [this]() REQUIRES(mu_) { return stop_; });
      PollLocked(stop_);  // the last poll, after Stop(), copies what is left
      if (stop_) return;
    }
  });
}

void UserLogEcho::Stop() {
  {
    MutexLock lock(mu_);
    if (stop_) return;
    stop_ = true;
    if (!started_) return;
  }
  cv_.NotifyAll();
  if (thread_.joinable()) thread_.join();
}

void UserLogEcho::Poll() {
  MutexLock lock(mu_);
  PollLocked(false);
}

void UserLogEcho::PollLocked(bool final) {
  for (const char* stream : {"stdout", "stderr"}) {
    for (const auto& path : FilesIn(log_dir_ + "/user/" + stream + "/" + node_)) {
      FollowLocked(path, "[" + ProcessOf(path) + " " + stream + "] ", final);
    }
  }
  std::fflush(out_);
}

void UserLogEcho::FollowLocked(const std::string& path, const std::string& prefix, bool final) {
  Followed& f = files_[path];
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  in.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(in.tellg());
  if (size < f.offset) f.offset = 0;  // truncated or replaced
  const size_t want = static_cast<size_t>(std::min<int64_t>(size - f.offset, kMaxReadPerPoll));
  std::string chunk(want, '\0');
  in.seekg(f.offset);
  in.read(chunk.data(), static_cast<std::streamsize>(want));
  chunk.resize(static_cast<size_t>(in.gcount()));
  f.offset += static_cast<int64_t>(chunk.size());
  f.partial += chunk;
  size_t start = 0;
  for (size_t nl; (nl = f.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    WriteLocked(prefix + f.partial.substr(start, nl - start) + "\n");
  }
  f.partial.erase(0, start);
  if (f.partial.size() > kMaxLine || (final && !f.partial.empty())) {
    WriteLocked(prefix + f.partial + "\n");
    f.partial.clear();
  }
}

void UserLogEcho::WriteLocked(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), out_);
}

void UserLogEcho::Failed(int64_t mini_batch_id, int attempt, const std::string& process,
                         const std::string& status, const std::string& error,
                         const std::string& detail) {
  std::string line = mini_batch_id >= 0 ? "mini-batch " + std::to_string(mini_batch_id) +
                                              " attempt " + std::to_string(attempt) + " failed"
                                        : std::string("init() failed");
  line += " (" + process + "): " + status;
  if (!error.empty()) line += ": " + error;
  if (!process.empty()) line += " (traceback: logs/user/error/" + node_ + "/" + process + ".txt)";
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  line += "\n";
  MutexLock lock(mu_);
  // The user's output so far first, so that what run() printed comes before its failure.
  if (started_ && !stop_) PollLocked(false);
  if (!detail.empty() && tracebacks_shown_.size() < kMaxTracebacksShown &&
      tracebacks_shown_.insert(error).second) {
    size_t start = 0;
    while (start < detail.size()) {
      size_t end = detail.find('\n', start);
      if (end == std::string::npos) end = detail.size();
      line += "    " + detail.substr(start, end - start) + "\n";
      start = end + 1;
    }
  }
  WriteLocked(line);
  std::fflush(out_);
}

}  // namespace parallelrun::rt
