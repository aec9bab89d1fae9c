// What every request of the HTTPS client carries or waits for: the bearer token (re-read when its
// file changes) and the client-side rate limit. Internal to op_kube (http_client.cc).
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <mutex>
#include <string>

#include "operator/kube/client.h"

namespace parallelrun::op::kube {

// The bearer token: fixed, or read from a file again whenever the file changes (projected
// service-account tokens are replaced by an atomic symlink swap, so the inode changes too).
// Thread-safe.
class TokenSource {
 public:
  TokenSource(std::string token, std::string file)
      : token_(std::move(token)), file_(std::move(file)) {}

  // The token; while a file cannot be read, the last token read (an error before the first).
  StatusOr<std::string> Get();

 private:
  std::mutex mu_;
  std::string token_;
  const std::string file_;
  struct stat last_ {};
  bool loaded_ = false;
};

// A token bucket shared by all threads: Acquire() reserves a token and sleeps until it is due.
class RateLimiter {
 public:
  // burst 0 = max(1, qps).
  RateLimiter(double qps, int burst);
  void Acquire();

 private:
  using Clock = std::chrono::steady_clock;
  std::mutex mu_;
  const double qps_;
  const double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace parallelrun::op::kube
