// FileWalker: the files of one input folder in plan order (SPEC.md §3), one at a time. Internal
// to the partitioner.
//
// Order: depth first; in each folder the entries are taken in byte order of their names (strcmp),
// and a subfolder's whole content comes at the subfolder's position among its siblings. Only
// regular files are yielded (symbolic links are followed; a link to a folder is walked like a
// folder unless it leads back into a folder being walked, which would loop). `pattern` is an
// fnmatch glob on the path relative to the input folder in which `*` also matches '/'; empty
// matches everything.
//
// Guarantees: memory is the listings of the folders on the current path (names packed in one
// buffer per folder), never the whole tree. Errors name the folder or file and the input
// (`spec.inputs[0]`); a file name that is not valid UTF-8 is an error, since mini-batches travel
// as JSON.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt::internal {

class FileWalker {
 public:
  // `field` names the input in errors, e.g. "spec.inputs[0]".
  FileWalker(std::string root, std::string pattern, std::string field);

  // The next file's path relative to the root ("a/b.jpg"), or nullopt when the walk is done.
  StatusOr<std::optional<std::string>> Next();

  // Entries matching the pattern that were left out because they are neither regular files nor
  // folders (FIFOs, sockets, devices) or are dangling or looping symbolic links: "a/b (a FIFO)".
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  struct Frame {
    std::string rel;                // "" for the root, else "a/b/"
    std::string names;              // entry names, each followed by '\0'
    std::vector<uint64_t> entries;  // (offset into names << 8) | d_type, sorted by name
    size_t next = 0;
    dev_t dev = 0;
    ino_t ino = 0;
  };

  // Lists and pushes folder `rel` ("" or ending in '/'). A folder already on the stack is skipped.
  Status Push(const std::string& rel);
  bool Matches(const std::string& rel) const;

  std::string root_;
  std::string pattern_;
  std::string field_;
  bool started_ = false;
  std::vector<Frame> stack_;
  std::vector<std::string> skipped_;
};

// True when `s` is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace parallelrun::rt::internal
