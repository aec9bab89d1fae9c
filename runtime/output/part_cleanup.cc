#include "runtime/output/part_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>
#include <vector>

namespace parallelrun::rt {
namespace {

constexpr size_t kFilesPerThread = 64;
constexpr size_t kBatch = 16;  // names one thread takes at a time

// The names of the entries of the open folder `fd` that are not folders (d_type; a file system
// that does not say is treated as files: unlinkat() then refuses the folders, left for later).
std::vector<std::string> FileNames(int fd) {
  std::vector<std::string> names;
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return names;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return names;
  }
  while (dirent* e = ::readdir(d)) {
    if (e->d_type == DT_DIR) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

}  // namespace

Status RemovePartsFolder(const std::string& dir, int max_threads) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return Status::Ok();
  if (fd >= 0) {
    const std::vector<std::string> names = FileNames(fd);
    std::atomic<size_t> next{0};
    auto unlink_some = [&] {
      for (size_t i = next.fetch_add(kBatch); i < names.size(); i = next.fetch_add(kBatch)) {
        for (size_t j = i; j < std::min(i + kBatch, names.size()); ++j) {
          ::unlinkat(fd, names[j].c_str(), 0);  // a failure is seen by remove_all below
        }
      }
    };
    const size_t threads = std::clamp<size_t>(names.size() / kFilesPerThread, 1,
                                              static_cast<size_t>(std::max(max_threads, 1)));
    std::vector<std::thread> helpers;
    for (size_t t = 1; t < threads; ++t) {
      try {
        helpers.emplace_back(unlink_some);
      } catch (const std::system_error&) {
        break;  // no more threads: the ones there are do it all
      }
    }
    unlink_some();
    for (auto& t : helpers) t.join();
    ::close(fd);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return InternalError("cannot remove " + dir + ": " + ec.message());
  return Status::Ok();
}

}  // namespace parallelrun::rt
