#include "tests/cluster/kubelet/informer.h"

#include <chrono>

namespace parallelrun::rt::cluster {
namespace {

constexpr auto kRetryDelay = std::chrono::milliseconds(500);
constexpr auto kWatchPoll = std::chrono::milliseconds(200);

}  // namespace

Informer::Informer(Api* api, ResourceRef ref, std::function<void()> notify)
    : api_(api), ref_(std::move(ref)), notify_(std::move(notify)) {}

Informer::~Informer() { Stop(); }

void Informer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Informer::KeyOf(const Json& object) {
  const Json& md = object.contains("metadata") ? object["metadata"] : Json::object();
  return md.value("namespace", "") + "/" + md.value("name", "");
}

std::optional<Json> Informer::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<Json> Informer::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Json> out;
  out.reserve(objects_.size());
  for (const auto& [key, obj] : objects_) out.push_back(obj);
  return out;
}

std::set<std::string> Informer::TakeChanged() {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> out;
  out.swap(changed_);
  return out;
}

std::string Informer::Relist() {
  ApiResult result = api_->List(ref_, "");
  if (!result.ok()) return "";
  std::map<std::string, Json> fresh;
  const Json& items = result.value().contains("items") ? result.value()["items"] : Json::array();
  for (const auto& item : items) fresh[KeyOf(item)] = item;
  std::string rv = result.value().contains("metadata")
                       ? result.value()["metadata"].value("resourceVersion", "")
                       : "";
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, obj] : objects_) {
      auto it = fresh.find(key);
      if (it == fresh.end() || it->second != obj) changed_.insert(key);
    }
    for (const auto& [key, obj] : fresh) {
      if (!objects_.count(key)) changed_.insert(key);
    }
    objects_ = std::move(fresh);
  }
  synced_ = true;
  if (notify_) notify_();
  return rv.empty() ? "0" : rv;
}

void Informer::Apply(const WatchEvent& event) {
  if (event.type != "ADDED" && event.type != "MODIFIED" && event.type != "DELETED") return;
  std::string key = KeyOf(event.object);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (event.type == "DELETED") {
      objects_.erase(key);
    } else {
      objects_[key] = event.object;
    }
    changed_.insert(key);
  }
  if (notify_) notify_();
}

void Informer::Run() {
  auto wait = [this](std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(stop_mu_);
    stop_cv_.wait_for(lock, d, [this] { return stop_.load(); });
  };
  while (!stop_) {
    std::string rv = Relist();
    if (rv.empty()) {
      wait(kRetryDelay);
      continue;
    }
    ListOptions options;
    options.resource_version = rv;
    options.allow_watch_bookmarks = true;
    ApiError error;
    std::unique_ptr<WatchStream> watch = api_->Watch(ref_, "", options, &error);
    if (!watch) {
      wait(kRetryDelay);
      continue;
    }
    while (!stop_ && !watch->Closed()) {
      std::optional<WatchEvent> event = watch->Next(kWatchPoll);
      if (!event) continue;
      if (event->type == "ERROR") break;  // e.g. 410: re-list
      Apply(*event);
    }
  }
}

}  // namespace parallelrun::rt::cluster
