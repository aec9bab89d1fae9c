// Reading the coordinator's append-only line files (the plan and the journal) after a restart.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace parallelrun::rt {

// Calls `on_line(line, offset)` for each complete line of `path` (without its newline), in order,
// streaming through a fixed buffer. A last line with no newline is a torn write and is skipped.
// Returns the number of bytes that hold complete lines (where appending should continue); 0 when
// the file does not exist. Stops at the first error from `on_line`.
StatusOr<int64_t> ForEachLine(const std::string& path,
                              const std::function<Status(std::string_view, int64_t)>& on_line);

// Cuts `path` to `size` bytes (dropping a torn last line) when it is longer.
Status TruncateFile(const std::string& path, int64_t size);

}  // namespace parallelrun::rt
