// Small file-system helpers with Status errors that name the path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace parallelrun::rt {

StatusOr<std::string> ReadFile(const std::string& path);
// Writes `content` to `path` atomically: temporary file in the same folder, fsync, rename, fsync
// of the folder. Readers see the old or the new content, never a mix.
Status WriteFileAtomic(const std::string& path, std::string_view content);
// mkdir -p.
Status MakeDirs(const std::string& path);
// fsync of a folder (after a rename or create inside it).
Status SyncDir(const std::string& path);
bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
std::string JoinPath(std::string_view a, std::string_view b);
std::string Dirname(const std::string& path);
// Absolute, lexically normalized path (no symlink resolution); relative paths are taken from
// `base`.
std::string AbsolutePath(const std::string& path, const std::string& base);

// An append-only file. Every Append is written through (write(2)) so `tail -f` sees it at once;
// Sync() makes what was appended durable. Not thread-safe: callers serialize.
class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;

  // Opens (creating folders and the file as needed) for appending.
  static StatusOr<AppendFile> Open(const std::string& path);
  Status Append(std::string_view data);
  Status Sync();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  void Close();

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace parallelrun::rt
