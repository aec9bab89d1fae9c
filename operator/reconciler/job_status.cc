#include "operator/reconciler/job_status.h"

#include <cctype>
#include <cstdio>
#include <ctime>

#include "fmt/format.h"

namespace parallelrun::op::reconciler {

using nlohmann::json;

const json& Field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string Str(const json& object, const char* key) {
  const json& v = Field(object, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

namespace {

std::string Join(const std::string& folder, const std::string& name) {
  if (folder.empty() || folder == ".") return name;
  return folder.back() == '/' ? folder + name : folder + "/" + name;
}

std::string Trimmed(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string DescribeFolder(const rt::DataRef& ref) {
  if (ref.volume.empty()) return fmt::format("the output folder {} in the image", ref.path);
  return fmt::format("the output folder \"{}\" on volume \"{}\"", Trimmed(ref.path), ref.volume);
}

const json& Condition(const json& status, const std::string& type) {
  static const json kNull;
  const json& conditions = Field(status, "conditions");
  if (!conditions.is_array()) return kNull;
  for (const json& c : conditions) {
    if (Str(c, "type") == type) return c;
  }
  return kNull;
}

}  // namespace

std::string SecondsPrecision(const std::string& text) {
  int year, month, day, hour, minute, second, used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute,
                  &second, &used) != 6) {
    return "";
  }
  // Fractions are dropped; only UTC ("Z") is written by the coordinator and the operator.
  size_t rest = static_cast<size_t>(used);
  if (rest < text.size() && text[rest] == '.') {
    ++rest;
    while (rest < text.size() && std::isdigit(static_cast<unsigned char>(text[rest]))) ++rest;
  }
  if (text.substr(rest) != "Z") return "";
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return FormatStatusTime(std::chrono::system_clock::from_time_t(timegm(&tm)));
}

std::string FormatStatusTime(rt::SystemTime t) { return rt::FormatUtc(t, "%Y-%m-%dT%H:%M:%SZ"); }

void SetTime(json& status, const char* key, const std::string& text) {
  const std::string t = SecondsPrecision(text);
  if (t.empty()) {
    status.erase(key);
  } else {
    status[key] = t;
  }
}

void SetLocations(const rt::JobSpec& spec, json& status) {
  const std::string folder = Trimmed(spec.output.path);
  json output = {{"path", folder}};
  if (!spec.output.volume.empty()) output["volume"] = spec.output.volume;
  if (spec.output_action == rt::OutputAction::kAppendRow) {
    output["file"] = spec.append_row_file_name;
  }
  json logs = {{"path", Join(folder, "logs")}};
  if (!spec.output.volume.empty()) logs["volume"] = spec.output.volume;
  status["output"] = std::move(output);
  status["logs"] = std::move(logs);
}

void ApplyProgress(const json& p, const rt::JobSpec& spec, bool ended, json& status) {
  for (const char* key : {"miniBatches", "items"}) {
    if (Field(p, key).is_object()) status[key] = p[key];
  }
  if (status.contains("miniBatches") && status["miniBatches"].is_object()) {
    // running is what the coordinator reports while it runs; nothing runs after the end.
    if (ended) status["miniBatches"]["running"] = 0;
  }
  const json& mb = Field(status, "miniBatches");
  const bool planned = Field(p, "planned") == true;
  if (planned && mb.is_object()) {
    status["progress"] =
        fmt::format("{}/{}", mb.value("completed", int64_t{0}), mb.value("total", int64_t{0}));
  } else if (!ended) {
    status["progress"] = "planning";
  } else if (Str(status, "progress") == "planning") {
    status.erase("progress");  // ended before its plan was made (e.g. OutputInUse)
  }
  for (const char* key : {"lastProgressLine", "eta"}) {
    if (!Str(p, key).empty()) status[key] = p[key];
  }
  if (!Str(p, "outputFile").empty()) status["outputFile"] = p["outputFile"];
  if (ended) {
    status.erase("estimatedCompletionTime");
  } else {
    SetTime(status, "estimatedCompletionTime", Str(p, "estimatedCompletionTime"));
  }
  const json& nodes = Field(p, "nodes");
  json& out = status["nodes"];
  const int64_t last_ready =
      Field(out, "ready").is_number_integer() ? out["ready"].get<int64_t>() : int64_t{0};
  out = {{"desired", spec.node_count}, {"ready", last_ready}};
  // The coordinator's summary counts the agents it heard from last; a report without one (it
  // ended before any agent came, or its agents are gone) keeps the last count observed.
  const json& ready = Field(nodes, "ready");
  if (ready.is_number_integer() && (!ended || ready.get<int64_t>() > 0)) out["ready"] = ready;
  SetLocations(spec, status);
}

void SetReason(json& status) {
  const std::string phase = Str(status, "phase");
  std::string reason;
  if (phase == "Succeeded") {
    reason = "Completed";
  } else if (phase == "Failed") {
    reason = Str(Condition(status, "Failed"), "reason");
    if (reason.empty()) reason = "Failed";
  } else if (phase == "Suspended") {
    reason = "Suspended";
  } else if (Str(Condition(status, "Scheduled"), "status") == "False") {
    reason = Str(Condition(status, "Scheduled"), "reason");
  }
  if (reason.empty()) {
    status.erase("reason");
  } else {
    status["reason"] = reason;
  }
}

std::string OwnerUidOf(const std::string& message) {
  const std::string marker = "owner \"";
  const size_t at = message.find(marker);
  if (at == std::string::npos) return "";
  const size_t start = at + marker.size();
  const size_t end = message.find('"', start);
  return end == std::string::npos ? "" : message.substr(start, end - start);
}

std::string OutputInUseMessage(const rt::JobSpec& spec, const std::string& owner,
                               const std::string& owner_uid) {
  const std::string who = owner.empty() ? fmt::format("a deleted job (uid {})", owner_uid)
                                        : fmt::format("job {} (uid {})", owner, owner_uid);
  const std::string delete_owner =
      owner.empty() ? "" : fmt::format(" (deleting job {} does not free it)", owner);
  return fmt::format(
      "{} belongs to {}; nothing was changed in it. Either set spec.output.path to another "
      "folder, or, if that job's output is no longer needed, delete the folder \"{}\"{} and "
      "apply this job again",
      DescribeFolder(spec.output), who, Trimmed(spec.output.path), delete_owner);
}

}  // namespace parallelrun::op::reconciler
