#include "operator/cmd/logging.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "runtime/base/time_util.h"

namespace parallelrun::op::cmd {
namespace {

using nlohmann::json;

std::string Text(spdlog::string_view_t s) { return std::string(s.data(), s.size()); }

// One JSON object per line: {"ts", "level", "logger", "msg"}.
class JsonSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    json line = {{"ts", rt::Iso8601Utc(msg.time)},
                 {"level", Text(spdlog::level::to_string_view(msg.level))},
                 {"logger", Text(msg.logger_name)},
                 {"msg", Text(msg.payload)}};
    std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

}  // namespace

void SetUpLogging(const Options& o) {
  std::shared_ptr<spdlog::logger> logger;
  if (o.log_format == "json") {
    logger = std::make_shared<spdlog::logger>("operator", std::make_shared<JsonSink>());
  } else {
    logger = std::make_shared<spdlog::logger>("operator",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(o.log_level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace parallelrun::op::cmd
