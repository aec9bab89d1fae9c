#include "operator/kube/http_credentials.h"

#include <algorithm>
#include <cctype>
#include <thread>

#include "runtime/base/files.h"

namespace parallelrun::op::kube {

StatusOr<std::string> TokenSource::Get() {
  if (file_.empty()) return token_;
  std::lock_guard<std::mutex> lock(mu_);
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    // A rotation in progress; the last token read is still the best guess.
    if (loaded_) return token_;
    return rt::UnauthenticatedError("token file " + file_ + ": cannot read it");
  }
  if (!loaded_ || st.st_ino != last_.st_ino || st.st_size != last_.st_size ||
      st.st_mtim.tv_sec != last_.st_mtim.tv_sec || st.st_mtim.tv_nsec != last_.st_mtim.tv_nsec) {
    auto text = rt::ReadFile(file_);
    if (!text.ok()) {
      if (loaded_) return token_;
      return rt::UnauthenticatedError("token file " + file_ + ": " + text.status().message());
    }
    std::string token = *text;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    token_ = std::move(token);
    last_ = st;
    loaded_ = true;
  }
  return token_;
}

RateLimiter::RateLimiter(double qps, int burst)
    : qps_(qps),
      burst_(burst > 0 ? burst : std::max(1.0, qps)),
      tokens_(burst_),
      last_(Clock::now()) {}

void RateLimiter::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto now = Clock::now();
  tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * qps_);
  last_ = now;
  tokens_ -= 1;
  if (tokens_ >= 0) return;
  const auto wait = std::chrono::duration<double>(-tokens_ / qps_);
  lock.unlock();
  std::this_thread::sleep_for(wait);
}

}  // namespace parallelrun::op::kube
