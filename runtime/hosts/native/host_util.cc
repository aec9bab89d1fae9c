// Small helpers of the native host (host_util.h).

#include "runtime/hosts/native/host_util.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace parallelrun::rt::native {

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? v : fallback;
}

double CpuNow() {
  auto seconds = [](const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return seconds(self) + seconds(children);
}

double Round6(double x) { return std::round(x * 1e6) / 1e6; }

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > kMaxErrorLine) line = line.substr(0, kMaxErrorLine) + "...";
  return line;
}

std::string Truncate(const std::string& text) {
  if (text.size() <= kMaxDetail) return text;
  const size_t head = 8 * 1024;
  const size_t tail = kMaxDetail - head;
  return text.substr(0, head) + "\n... (" + std::to_string(text.size() - head - tail) +
         " characters omitted) ...\n" + text.substr(text.size() - tail);
}

std::string Errno(int e) { return std::strerror(e); }

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace parallelrun::rt::native
