#include "tests/cluster/store.h"

#include <filesystem>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace fs = std::filesystem;

namespace {
std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }
}  // namespace

Store::Store(std::string dir, size_t history) : dir_(std::move(dir)), history_(history) {}

std::string Store::PathFor(const std::string& type_key, const std::string& ns,
                           const std::string& name) const {
  size_t slash = type_key.find('/');
  std::string group = type_key.substr(0, slash);
  std::string resource = type_key.substr(slash + 1);
  return dir_ + "/" + (group.empty() ? "core" : group) + "/" + resource + "/" +
         (ns.empty() ? "_cluster" : ns) + "/" + name + ".json";
}

bool Store::Load(std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (dir_.empty()) return true;
  if (!MakeDirs(dir_)) {
    *error = "cannot create the store folder " + dir_;
    return false;
  }
  int64_t max_rv = 1;
  if (auto text = ReadFileText(dir_ + "/rv"))
    max_rv = std::max<int64_t>(max_rv, std::atoll(text->c_str()));
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir_, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file() || it->path().extension() != ".json") continue;
    fs::path rel = fs::relative(it->path(), dir_);
    std::vector<std::string> parts;
    for (const auto& p : rel) parts.push_back(p.string());
    if (parts.size() != 4) continue;
    auto text = ReadFileText(it->path().string());
    if (!text) continue;
    Json obj = Json::parse(*text, nullptr, false);
    if (obj.is_discarded()) {
      *error = "the stored object " + it->path().string() + " is not valid JSON";
      return false;
    }
    std::string group = parts[0] == "core" ? "" : parts[0];
    std::string ns = parts[2] == "_cluster" ? "" : parts[2];
    std::string name = obj["metadata"].value("name", "");
    objects_[group + "/" + parts[1]][Key(ns, name)] = obj;
    max_rv = std::max<int64_t>(max_rv,
                               std::atoll(obj["metadata"].value("resourceVersion", "0").c_str()));
  }
  rv_ = max_rv;
  compacted_rv_ = max_rv;
  return true;
}

const Json* Store::Find(const std::string& type_key, const std::string& ns,
                        const std::string& name) const {
  auto t = objects_.find(type_key);
  if (t == objects_.end()) return nullptr;
  auto o = t->second.find(Key(ns, name));
  return o == t->second.end() ? nullptr : &o->second;
}

std::vector<const Json*> Store::Objects(const std::string& type_key, const std::string& ns) const {
  std::vector<const Json*> out;
  auto t = objects_.find(type_key);
  if (t == objects_.end()) return out;
  if (ns.empty()) {
    for (const auto& [k, v] : t->second) out.push_back(&v);
  } else {
    for (auto it = t->second.lower_bound(ns + "/"); it != t->second.end(); ++it) {
      if (it->first.compare(0, ns.size() + 1, ns + "/") != 0) break;
      out.push_back(&it->second);
    }
  }
  return out;
}

std::vector<std::string> Store::TypeKeys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : objects_) {
    if (!v.empty()) out.push_back(k);
  }
  return out;
}

void Store::Persist(const std::string& type_key, const Json& object) {
  if (dir_.empty()) return;
  const Json& md = object["metadata"];
  std::string path = PathFor(type_key, md.value("namespace", ""), md.value("name", ""));
  MakeDirs(fs::path(path).parent_path().string());
  WriteFileAtomic(path, object.dump());
}

int64_t Store::Put(const std::string& type_key, Json object) {
  int64_t rv = ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv);
  const std::string ns = object["metadata"].value("namespace", "");
  const std::string name = object["metadata"].value("name", "");
  Json& slot = objects_[type_key][Key(ns, name)];
  Event ev{rv, type_key, ns, slot.is_null() ? "ADDED" : "MODIFIED", object, slot};
  slot = object;
  Persist(type_key, object);
  if (!dir_.empty()) WriteFileAtomic(dir_ + "/rv", std::to_string(rv));
  events_.push_back(std::move(ev));
  while (events_.size() > history_) {
    compacted_rv_ = events_.front().rv;
    events_.pop_front();
  }
  cv_.notify_all();
  return rv;
}

int64_t Store::Remove(const std::string& type_key, const std::string& ns, const std::string& name) {
  auto t = objects_.find(type_key);
  if (t == objects_.end()) return rv_;
  auto o = t->second.find(Key(ns, name));
  if (o == t->second.end()) return rv_;
  int64_t rv = ++rv_;
  Json last = o->second;
  last["metadata"]["resourceVersion"] = std::to_string(rv);
  t->second.erase(o);
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove(PathFor(type_key, ns, name), ec);
    WriteFileAtomic(dir_ + "/rv", std::to_string(rv));
  }
  events_.push_back(Event{rv, type_key, ns, "DELETED", last, last});
  while (events_.size() > history_) {
    compacted_rv_ = events_.front().rv;
    events_.pop_front();
  }
  cv_.notify_all();
  return rv;
}

bool Store::EventsAfter(int64_t after, std::vector<const Event*>* out) const {
  if (after < compacted_rv_) return false;
  // Events are in rv order; find the first one after `after`.
  auto it = std::lower_bound(events_.begin(), events_.end(), after + 1,
                             [](const Event& e, int64_t rv) { return e.rv < rv; });
  for (; it != events_.end(); ++it) out->push_back(&*it);
  return true;
}

void Store::WaitForEventAfter(std::unique_lock<std::mutex>& lock, int64_t rv,
                              std::chrono::steady_clock::time_point deadline) {
  cv_.wait_until(lock, deadline, [&] { return rv_ > rv || shutdown_; });
}

}  // namespace parallelrun::rt::cluster
