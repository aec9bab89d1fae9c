#include "runtime/partitioner/file_walker.h"

#include <dirent.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace parallelrun::rt::internal {
namespace {

Status PathError(const std::string& field, const std::string& what, const std::string& path) {
  int e = errno;
  std::string msg = field + ": cannot " + what + " " + path + ": " + std::strerror(e);
  if (e == ENOENT) return NotFoundError(msg);
  if (e == EACCES || e == EPERM) return PermissionDeniedError(msg);
  return InternalError(msg);
}

// "a/\xff.jpg" with invalid bytes written as \xNN, for error messages.
std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int len;
    unsigned cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p < len) return false;
    for (int i = 1; i < len; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += len;
  }
  return true;
}

FileWalker::FileWalker(std::string root, std::string pattern, std::string field)
    : root_(std::move(root)), pattern_(std::move(pattern)), field_(std::move(field)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

Status FileWalker::Push(const std::string& rel) {
  const std::string path = rel.empty() ? root_ : root_ + "/" + rel;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    // Removed since its parent was listed: it is simply not part of the input any more.
    if (errno == ENOENT && !rel.empty()) return Status::Ok();
    return PathError(field_, "read folder", path);
  }
  struct stat st;
  if (::fstat(::dirfd(dir), &st) != 0) {
    Status s = PathError(field_, "stat folder", path);
    ::closedir(dir);
    return s;
  }
  for (const Frame& f : stack_) {
    if (f.dev == st.st_dev && f.ino == st.st_ino) {  // a link back up the path: walking it loops
      ::closedir(dir);
      return Status::Ok();
    }
  }
  Frame frame;
  frame.rel = rel;
  frame.dev = st.st_dev;
  frame.ino = st.st_ino;
  while (true) {
    errno = 0;
    const dirent* e = ::readdir(dir);
    if (e == nullptr) {
      if (errno != 0) {
        Status s = PathError(field_, "read folder", path);
        ::closedir(dir);
        return s;
      }
      break;
    }
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    frame.entries.push_back((static_cast<uint64_t>(frame.names.size()) << 8) | e->d_type);
    frame.names.append(e->d_name, std::strlen(e->d_name) + 1);
  }
  ::closedir(dir);
  const char* names = frame.names.data();
  std::sort(frame.entries.begin(), frame.entries.end(), [names](uint64_t a, uint64_t b) {
    return std::strcmp(names + (a >> 8), names + (b >> 8)) < 0;
  });
  stack_.push_back(std::move(frame));
  return Status::Ok();
}

bool FileWalker::Matches(const std::string& rel) const {
  return pattern_.empty() || ::fnmatch(pattern_.c_str(), rel.c_str(), 0) == 0;
}

StatusOr<std::optional<std::string>> FileWalker::Next() {
  if (!started_) {
    started_ = true;
    PR_RETURN_IF_ERROR(Push(""));
  }
  while (!stack_.empty()) {
    Frame& frame = stack_.back();
    if (frame.next == frame.entries.size()) {
      stack_.pop_back();
      continue;
    }
    const uint64_t entry = frame.entries[frame.next++];
    std::string rel = frame.rel + (frame.names.data() + (entry >> 8));
    unsigned type = entry & 0xff;
    const bool link = type == DT_LNK;
    if (type == DT_LNK || type == DT_UNKNOWN) {
      const std::string path = root_ + "/" + rel;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) {
        // A dangling or looping link, or a file removed since the listing: not a file to process,
        // but the user hears about a link (a file that vanished is simply gone).
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) {
          if (link && Matches(rel)) {
            skipped_.push_back(rel + (errno == ELOOP ? " (a symbolic link that loops)"
                                                     : " (a dangling symbolic link)"));
          }
          continue;
        }
        return PathError(field_, "stat", path);
      }
      type = S_ISREG(st.st_mode)    ? DT_REG
             : S_ISDIR(st.st_mode)  ? DT_DIR
             : S_ISFIFO(st.st_mode) ? DT_FIFO
             : S_ISSOCK(st.st_mode) ? DT_SOCK
             : S_ISCHR(st.st_mode)  ? DT_CHR
             : S_ISBLK(st.st_mode)  ? DT_BLK
                                    : DT_UNKNOWN;
    }
    if (type == DT_DIR) {
      PR_RETURN_IF_ERROR(Push(rel + "/"));  // invalidates `frame`
      continue;
    }
    if (!Matches(rel)) continue;
    if (type != DT_REG) {
      skipped_.push_back(rel + (type == DT_FIFO   ? " (a FIFO)"
                                : type == DT_SOCK ? " (a socket)"
                                : type == DT_CHR  ? " (a character device)"
                                : type == DT_BLK  ? " (a block device)"
                                                  : " (not a regular file)"));
      continue;
    }
    if (!IsValidUtf8(rel)) {
      return InvalidArgumentError(field_ + ": the file name " + Printable(rel) + " under " + root_ +
                                  " is not valid UTF-8; rename it, or leave it out with " + field_ +
                                  ".pattern");
    }
    return std::optional<std::string>(std::move(rel));
  }
  return std::optional<std::string>();
}

}  // namespace parallelrun::rt::internal
