// The one spdlog setup. Loggers write through (flush on every line) so `tail -f` works.
#pragma once

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace parallelrun::rt {

// Pattern of the seed's sys logs: `time|LEVEL|pid|thread|message`.
inline constexpr const char* kSysLogPattern = "%Y-%m-%d %H:%M:%S.%e|%l|%P|%t|%v";

// The formatter of `pattern` (UTC times) that MakeFileLogger and MakeStderrLogger use: spdlog's,
// with %P read once per process instead of once per line.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(const std::string& pattern);
// A logger appending to `path` (folders created). Returns a logger that drops everything if the
// file cannot be opened, after printing why to stderr.
std::shared_ptr<spdlog::logger> MakeFileLogger(const std::string& name, const std::string& path,
                                               const char* pattern = kSysLogPattern);
// Logger to stderr with the same pattern (for command-line tools).
std::shared_ptr<spdlog::logger> MakeStderrLogger(const std::string& name);
// INFO / WARNING / DEBUG (the manifest's loggingLevel) to an spdlog level.
spdlog::level::level_enum ParseLogLevel(const std::string& level);

}  // namespace parallelrun::rt
