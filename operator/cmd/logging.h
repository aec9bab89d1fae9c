// The operator's log output: one JSON object per line ({"ts", "level", "logger", "msg"}) or
// spdlog's text lines, on stderr, at --log-level.
#pragma once

#include "operator/cmd/options.h"

namespace parallelrun::op::cmd {

// Installs the default logger for --log-format and --log-level (already checked by ParseOptions).
void SetUpLogging(const Options& options);

}  // namespace parallelrun::op::cmd
