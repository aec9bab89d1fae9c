#include "operator/status/event_recorder.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <iterator>

#include "fmt/format.h"

namespace parallelrun::op::status {

namespace {

// Unique per process and time: "<object>.<nanoseconds since epoch in hex><counter>", as
// client-go names events "<object>.<unix nanos hex>".
std::string EventName(const std::string& object_name, rt::SystemTime now) {
  static std::atomic<uint32_t> counter{0};
  const auto nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  return fmt::format("{}.{:x}{:x}", object_name, nanos, counter++ & 0xfff);
}

}  // namespace

KubeEventRecorder::KubeEventRecorder(kube::Client& client, const rt::Clock& clock,
                                     std::string component)
    : client_(client), clock_(clock), component_(std::move(component)) {}

bool KubeEventRecorder::Bump(const std::string& ns, Seen& seen, const std::string& stamp) {
  nlohmann::json patch = {{"count", seen.count + 1}, {"lastTimestamp", stamp}};
  auto patched =
      client_.Patch(kube::resources::kEvents, ns, seen.name, kube::PatchType::kMerge, patch);
  if (patched.ok()) {
    ++seen.count;
    return true;
  }
  if (!kube::IsNotFound(patched.status())) {
    spdlog::warn("event {}/{} not updated: {}", ns, seen.name, patched.status().ToString());
    return true;  // not written, but not gone either: no duplicate
  }
  return false;
}

void KubeEventRecorder::Remember(const std::string& key, std::string name) {
  auto it = seen_.find(key);
  if (it != seen_.end()) {
    order_.erase(it->second.age);
    seen_.erase(it);
  }
  order_.push_back(key);
  seen_[key] = Seen{std::move(name), 1, std::prev(order_.end())};
  if (seen_.size() > kMaxRemembered) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
}

void KubeEventRecorder::Record(const ObjectRef& object, const std::string& type,
                               const std::string& reason, const std::string& message) {
  const rt::SystemTime now = clock_.Now();
  const std::string stamp = rt::FormatUtc(now, "%Y-%m-%dT%H:%M:%SZ");
  const std::string key =
      object.ns + '\n' + object.uid + '\n' + type + '\n' + reason + '\n' + message;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = seen_.find(key); it != seen_.end() && Bump(object.ns, it->second, stamp)) return;
  nlohmann::json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", EventName(object.name, now)}, {"namespace", object.ns}}},
      {"involvedObject",
       {{"apiVersion", object.api_version},
        {"kind", object.kind},
        {"namespace", object.ns},
        {"name", object.name},
        {"uid", object.uid}}},
      {"type", type},
      {"reason", reason},
      {"message", message.size() > 1024 ? message.substr(0, 1021) + "..." : message},
      {"source", {{"component", component_}}},
      {"reportingComponent", "parallelrun.io/operator"},
      {"reportingInstance", component_},
      {"firstTimestamp", stamp},
      {"lastTimestamp", stamp},
      {"count", 1},
  };
  if (!object.resource_version.empty()) {
    event["involvedObject"]["resourceVersion"] = object.resource_version;
  }
  auto created = client_.Create(kube::resources::kEvents, object.ns, event);
  if (!created.ok()) {
    spdlog::warn("event {} {} for {}/{} not recorded: {}", type, reason, object.ns, object.name,
                 created.status().ToString());
    return;
  }
  Remember(key, event["metadata"]["name"].get<std::string>());
}

}  // namespace parallelrun::op::status
