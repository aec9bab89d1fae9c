#include "runtime/base/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include "runtime/base/files.h"

namespace parallelrun::rt {

namespace {

// spdlog's default prints one "[*** LOG ERROR ***]" line per failed write: hundreds on a full
// disk. One line per process says it instead; the job's own result names the cause.
void OnLogError(const std::string& name, const std::string& path, const std::string& message) {
  static std::atomic<bool> said{false};
  if (said.exchange(true)) return;
  std::fprintf(stderr,
               "parallelrun: cannot write the log file %s (logger %s): %s; further log write "
               "errors of this process are not shown\n",
               path.c_str(), name.c_str(), message.c_str());
}

// %P read once: spdlog's own calls getpid() for every line (glibc no longer caches it), a system
// call per logged attempt. A process that logs after a fork() without exec (none here) would
// print its parent's pid.
class PidFlag final : public spdlog::custom_flag_formatter {
 public:
  PidFlag() : text_(std::to_string(::getpid())) {}
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    dest.append(text_.data(), text_.data() + text_.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PidFlag>(*this);
  }

 private:
  std::string text_;
};

}  // namespace

std::unique_ptr<spdlog::formatter> MakeLogFormatter(const std::string& pattern) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<PidFlag>('P').set_pattern(pattern);
  return formatter;
}

std::shared_ptr<spdlog::logger> MakeFileLogger(const std::string& name, const std::string& path,
                                               const char* pattern) {
  std::shared_ptr<spdlog::logger> logger;
  MakeDirs(Dirname(path)).IgnoreError("the file sink below fails with the reason");
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
    logger = std::make_shared<spdlog::logger>(name, sink);
  } catch (const spdlog::spdlog_ex& e) {
    std::fprintf(stderr, "parallelrun: cannot open log file %s: %s\n", path.c_str(), e.what());
    logger =
        std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::null_sink_mt>());
  }
  logger->set_formatter(MakeLogFormatter(pattern));
  logger->flush_on(spdlog::level::trace);
  logger->set_level(spdlog::level::debug);
  logger->set_error_handler(
      [name, path](const std::string& message) { OnLogError(name, path, message); });
  return logger;
}

std::shared_ptr<spdlog::logger> MakeStderrLogger(const std::string& name) {
  auto logger =
      std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(MakeLogFormatter(kSysLogPattern));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

spdlog::level::level_enum ParseLogLevel(const std::string& level) {
  if (level == "DEBUG") return spdlog::level::debug;
  if (level == "WARNING") return spdlog::level::warn;
  return spdlog::level::info;
}

}  // namespace parallelrun::rt
