#include "tests/cluster/kubelet/event_recorder.h"

#include <chrono>
#include <cstdio>

#include "tests/cluster/kubelet/cluster_view.h"

namespace parallelrun::rt::cluster {
namespace {

constexpr size_t kMaxRemembered = 20000;

}  // namespace

EventRecorder::EventRecorder(Api* api, std::string component, std::string host)
    : api_(api), component_(std::move(component)), host_(std::move(host)) {}

void EventRecorder::Record(const Json& object, const std::string& kind,
                           const std::string& api_version, const std::string& type,
                           const std::string& reason, const std::string& message,
                           const std::string& field_path) {
  const std::string ns = StringAt(object, "metadata.namespace", "default");
  const std::string name = StringAt(object, "metadata.name");
  const std::string uid = StringAt(object, "metadata.uid");
  const std::string now = FormatTimestamp(std::chrono::system_clock::now());
  const std::string key = uid + "\n" + reason + "\n" + message + "\n" + field_path;

  auto it = seen_.find(key);
  if (it != seen_.end()) {
    Json patch = {{"count", it->second.count + 1}, {"lastTimestamp", now}};
    ApiResult r = api_->Patch({"", "events"}, it->second.ns, it->second.name,
                              "application/merge-patch+json", patch.dump());
    if (r.ok()) {
      ++it->second.count;
      return;
    }
    seen_.erase(it);  // deleted meanwhile: write a new one
  }

  // Real event names are "<object>.<hex nanoseconds>"; the sequence keeps them unique.
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), "%llx",
                static_cast<unsigned long long>(nanos) + sequence_++);
  Json involved = {
      {"kind", kind}, {"apiVersion", api_version}, {"namespace", ns}, {"name", name}, {"uid", uid}};
  std::string rv = StringAt(object, "metadata.resourceVersion");
  if (!rv.empty()) involved["resourceVersion"] = rv;
  if (!field_path.empty()) involved["fieldPath"] = field_path;
  Json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", name + "." + suffix}, {"namespace", ns}}},
                {"involvedObject", involved},
                {"reason", reason},
                {"message", message},
                {"type", type},
                {"source", {{"component", component_}, {"host", host_}}},
                {"firstTimestamp", now},
                {"lastTimestamp", now},
                {"count", 1},
                {"eventTime", nullptr},
                {"reportingComponent", component_},
                {"reportingInstance", host_}};
  ApiResult r = api_->Create({"", "events"}, ns, event);
  if (!r.ok()) return;
  if (seen_.size() >= kMaxRemembered) seen_.clear();
  seen_[key] = {ns, name + "." + suffix, 1};
}

}  // namespace parallelrun::rt::cluster
