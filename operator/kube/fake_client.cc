#include "operator/kube/fake_client.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <optional>
#include <random>

namespace parallelrun::op::kube {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// --- Errors shaped like the real client's ---

Status ApiError(const std::string& method, const std::string& path, int code,
                const std::string& reason, const std::string& message) {
  std::string text =
      method + " " + path + ": " + std::to_string(code) + " " + reason + ": " + message;
  switch (code) {
    case 404:
      return rt::NotFoundError(text);
    case 409:
      return reason == "AlreadyExists" ? rt::AlreadyExistsError(text) : rt::AbortedError(text);
    case 410:
      return rt::GoneError(text);
    case 504:
      return rt::DeadlineExceededError(text);
    default:
      return rt::InvalidArgumentError(text);  // 400, 415, 422
  }
}

// "pods" or "parallelrunjobs.parallelrun.io", as the server names a resource in messages.
std::string QualifiedName(const Resource& r) {
  return r.group.empty() ? r.resource : r.resource + "." + r.group;
}

// Custom resources are those of an API group with a dot that Kubernetes does not own.
bool IsCustom(const Resource& r) {
  const std::string suffix = ".k8s.io";
  if (r.group.find('.') == std::string::npos) return false;
  return !(r.group.size() >= suffix.size() &&
           r.group.compare(r.group.size() - suffix.size(), suffix.size(), suffix) == 0);
}

// DNS-1123 subdomain: what most object names must be.
bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
      return false;
    }
  }
  auto alnum = [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c));
  };
  return alnum(name.front()) && alnum(name.back());
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Splits at commas outside parentheses.
std::vector<std::string> SplitTopLevel(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

bool IsLabelKey(const std::string& k) {
  if (k.empty()) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
           c == '/';
  });
}

bool IsLabelValue(const std::string& v) {
  return std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

// --- Label selectors ---

struct LabelRequirement {
  enum Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists };
  std::string key;
  Op op;
  std::set<std::string> values;
};

StatusOr<LabelRequirement> ParseSetRequirement(const std::string& part) {
  size_t open = part.find('(');
  size_t close = part.rfind(')');
  if (close == std::string::npos || close < open || !Trim(part.substr(close + 1)).empty()) {
    return rt::InvalidArgumentError("unbalanced parentheses in \"" + part + "\"");
  }
  std::string head = Trim(part.substr(0, open));
  size_t space = head.find_last_of(" \t");
  if (space == std::string::npos) {
    return rt::InvalidArgumentError("expected `key in (...)` in \"" + part + "\"");
  }
  LabelRequirement req;
  req.key = Trim(head.substr(0, space));
  std::string op = head.substr(space + 1);
  if (op == "in") {
    req.op = LabelRequirement::kIn;
  } else if (op == "notin") {
    req.op = LabelRequirement::kNotIn;
  } else {
    return rt::InvalidArgumentError("unknown set operator \"" + op + "\"");
  }
  std::string inner = part.substr(open + 1, close - open - 1);
  size_t start = 0;
  while (true) {
    size_t comma = inner.find(',', start);
    std::string v =
        Trim(inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (!IsLabelValue(v)) return rt::InvalidArgumentError("invalid label value \"" + v + "\"");
    req.values.insert(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (!IsLabelKey(req.key))
    return rt::InvalidArgumentError("invalid label key \"" + req.key + "\"");
  return req;
}

StatusOr<LabelRequirement> ParseLabelRequirement(const std::string& raw) {
  std::string part = Trim(raw);
  LabelRequirement req;
  if (part.find('(') != std::string::npos) return ParseSetRequirement(part);
  if (!part.empty() && part[0] == '!') {
    req.key = Trim(part.substr(1));
    req.op = LabelRequirement::kNotExists;
  } else if (size_t p = part.find("!="); p != std::string::npos) {
    req.key = Trim(part.substr(0, p));
    req.op = LabelRequirement::kNotEquals;
    req.values.insert(Trim(part.substr(p + 2)));
  } else if (size_t p2 = part.find('='); p2 != std::string::npos) {
    size_t len = part.compare(p2, 2, "==") == 0 ? 2 : 1;
    req.key = Trim(part.substr(0, p2));
    req.op = LabelRequirement::kEquals;
    req.values.insert(Trim(part.substr(p2 + len)));
  } else {
    req.key = part;
    req.op = LabelRequirement::kExists;
  }
  if (!IsLabelKey(req.key))
    return rt::InvalidArgumentError("invalid label key \"" + req.key + "\"");
  for (const auto& v : req.values) {
    if (!IsLabelValue(v)) return rt::InvalidArgumentError("invalid label value \"" + v + "\"");
  }
  return req;
}

StatusOr<std::vector<LabelRequirement>> ParseLabelSelector(const std::string& selector) {
  std::vector<LabelRequirement> reqs;
  if (Trim(selector).empty()) return reqs;
  for (const auto& part : SplitTopLevel(selector)) {
    PR_ASSIGN_OR_RETURN(auto req, ParseLabelRequirement(part));
    reqs.push_back(std::move(req));
  }
  return reqs;
}

bool LabelsMatch(const std::vector<LabelRequirement>& reqs, const json& obj) {
  static const json kEmpty = json::object();
  const json* labels = &kEmpty;
  auto meta = obj.find("metadata");
  if (meta != obj.end() && meta->contains("labels") && (*meta)["labels"].is_object()) {
    labels = &(*meta)["labels"];
  }
  for (const auto& req : reqs) {
    auto it = labels->find(req.key);
    bool has = it != labels->end() && it->is_string();
    std::string value = has ? it->get<std::string>() : "";
    bool ok = false;
    switch (req.op) {
      case LabelRequirement::kEquals:
      case LabelRequirement::kIn:
        ok = has && req.values.count(value) > 0;
        break;
      case LabelRequirement::kNotEquals:
      case LabelRequirement::kNotIn:
        ok = !has || req.values.count(value) == 0;
        break;
      case LabelRequirement::kExists:
        ok = has;
        break;
      case LabelRequirement::kNotExists:
        ok = !has;
        break;
    }
    if (!ok) return false;
  }
  return true;
}

// --- Field selectors ---

struct FieldRequirement {
  std::vector<std::string> path;
  bool equals;
  std::string value;
};

StatusOr<std::vector<FieldRequirement>> ParseFieldSelector(const std::string& selector) {
  std::vector<FieldRequirement> reqs;
  if (Trim(selector).empty()) return reqs;
  for (const auto& raw : SplitTopLevel(selector)) {
    std::string part = Trim(raw);
    FieldRequirement req;
    size_t p = part.find("!=");
    size_t len = 2;
    req.equals = p == std::string::npos;
    if (req.equals) {
      p = part.find('=');
      if (p == std::string::npos) {
        return rt::InvalidArgumentError("invalid field selector \"" + part + "\"");
      }
      len = part.compare(p, 2, "==") == 0 ? 2 : 1;
    }
    std::string field = Trim(part.substr(0, p));
    req.value = Trim(part.substr(p + len));
    if (field.empty()) return rt::InvalidArgumentError("empty field in \"" + part + "\"");
    size_t start = 0;
    while (true) {
      size_t dot = field.find('.', start);
      req.path.push_back(field.substr(start, dot == std::string::npos ? dot : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    reqs.push_back(std::move(req));
  }
  return reqs;
}

std::string FieldValue(const json& obj, const std::vector<std::string>& path) {
  const json* cur = &obj;
  for (const auto& p : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(p);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_null()) return "";
  return cur->dump();
}

bool FieldsMatch(const std::vector<FieldRequirement>& reqs, const json& obj) {
  for (const auto& req : reqs) {
    if ((FieldValue(obj, req.path) == req.value) != req.equals) return false;
  }
  return true;
}

// --- Object helpers ---

std::string MetaString(const json& obj, const char* field) {
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return "";
  auto it = meta->find(field);
  return it != meta->end() && it->is_string() ? it->get<std::string>() : "";
}

std::vector<std::string> Finalizers(const json& obj) {
  std::vector<std::string> out;
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->contains("finalizers")) return out;
  for (const auto& f : (*meta)["finalizers"]) {
    if (f.is_string()) out.push_back(f.get<std::string>());
  }
  return out;
}

// Everything that counts for metadata.generation: all but .metadata and .status.
json GenerationRelevant(json obj) {
  if (obj.is_object()) {
    obj.erase("metadata");
    obj.erase("status");
  }
  return obj;
}

struct Filter {
  std::string rkey;
  std::string ns;  // "" = all
  bool namespaced = true;
  std::vector<LabelRequirement> labels;
  std::vector<FieldRequirement> fields;

  bool Matches(const json& obj) const {
    if (namespaced && !ns.empty() && MetaString(obj, "namespace") != ns) return false;
    return LabelsMatch(labels, obj) && FieldsMatch(fields, obj);
  }
};

struct HistoryEntry {
  int64_t rv;
  std::string rkey;
  std::string type;  // ADDED, MODIFIED, DELETED
  json old;          // null for ADDED
  json obj;          // the new state (the last state with the deletion's version for DELETED)
};

// The shared state of one watch: the client pushes, the stream pops.
struct WatchState {
  Filter filter;
  bool bookmarks = false;
  std::string kind;
  std::string api_version;
  std::optional<SteadyClock::time_point> deadline;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<WatchEvent> queue;
  bool ended = false;  // the server ended it; Next() drains `queue` first
  Status end_error;
  bool cancelled = false;

  void Push(WatchEvent event) {
    std::lock_guard<std::mutex> lock(mu);
    if (ended || cancelled) return;
    queue.push_back(std::move(event));
    cv.notify_all();
  }
  void End(Status error, bool drop_pending) {
    std::lock_guard<std::mutex> lock(mu);
    if (drop_pending) queue.clear();
    ended = true;
    end_error = std::move(error);
    cv.notify_all();
  }
  bool Open() {
    std::lock_guard<std::mutex> lock(mu);
    if (ended || cancelled) return false;
    return !deadline || SteadyClock::now() < *deadline;
  }
};

class FakeWatchStream : public WatchStream {
 public:
  explicit FakeWatchStream(std::shared_ptr<WatchState> state) : state_(std::move(state)) {}
  ~FakeWatchStream() override { Cancel(); }

  StatusOr<std::optional<WatchEvent>> Next() override {
    WatchState& w = *state_;
    std::unique_lock<std::mutex> lock(w.mu);
    while (true) {
      if (w.cancelled) return std::optional<WatchEvent>();
      if (!w.queue.empty()) {
        WatchEvent e = std::move(w.queue.front());
        w.queue.pop_front();
        return std::optional<WatchEvent>(std::move(e));
      }
      if (w.ended) {
        Status err = std::move(w.end_error);
        w.end_error = Status::Ok();
        if (!err.ok()) return err;
        return std::optional<WatchEvent>();
      }
      if (w.deadline) {
        if (SteadyClock::now() >= *w.deadline) {
          w.ended = true;
          continue;
        }
        w.cv.wait_until(lock, *w.deadline);
      } else {
        w.cv.wait(lock);
      }
    }
  }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->cancelled = true;
    state_->cv.notify_all();
  }

 private:
  std::shared_ptr<WatchState> state_;
};

// The event a watch with `filter` sees for `e`, if any.
std::optional<WatchEvent> EventFor(const Filter& filter, const HistoryEntry& e) {
  if (filter.rkey != e.rkey) return std::nullopt;
  if (e.type == "DELETED") {
    if (!filter.Matches(e.obj)) return std::nullopt;
    return WatchEvent{"DELETED", e.obj};
  }
  bool was = !e.old.is_null() && filter.Matches(e.old);
  bool is = filter.Matches(e.obj);
  if (is) return WatchEvent{was ? "MODIFIED" : "ADDED", e.obj};
  if (was) return WatchEvent{"DELETED", e.obj};
  return std::nullopt;
}

struct Injection {
  std::string verb;
  std::string resource;
  Status error;
  int remaining;
};

constexpr char kNameAlphabet[] = "bcdfghjklmnpqrstvwxz2456789";

}  // namespace

struct FakeClient::State {
  FakeClientOptions options;
  mutable std::mutex mu;
  int64_t rv = 0;
  int64_t compacted_rv = 0;  // watching from an older resourceVersion is 410 Gone
  // resource key ("group/resource") → object key ("ns/name") → object.
  std::map<std::string, std::map<std::string, json>> objects;
  std::deque<HistoryEntry> history;
  std::vector<std::weak_ptr<WatchState>> watches;
  std::map<ApiCall, int> calls;
  std::vector<Injection> injections;
  std::mt19937_64 rng{std::random_device{}()};

  static std::string RKey(const Resource& r) { return r.group + "/" + r.resource; }
  static std::string OKey(const Resource& r, const std::string& ns, const std::string& name) {
    return (r.namespaced ? ns : "") + "/" + name;
  }
  bool HasStatus(const Resource& r) const { return options.without_status.count(r.resource) == 0; }
  std::string Now() const { return rt::FormatUtc(options.clock->Now(), "%Y-%m-%dT%H:%M:%SZ"); }

  // Records the call and returns an injected error, if one is due.
  Status Enter(const std::string& verb, const Resource& r, const std::string& sub) {
    std::string res = sub.empty() ? r.resource : r.resource + "/" + sub;
    ++calls[ApiCall{verb, r.group, res}];
    for (auto it = injections.begin(); it != injections.end(); ++it) {
      if ((it->verb == "*" || it->verb == verb) && (it->resource == "*" || it->resource == res)) {
        Status err = it->error;
        if (--it->remaining <= 0) injections.erase(it);
        return err;
      }
    }
    return Status::Ok();
  }

  std::string Uid() {
    std::uniform_int_distribution<int> hex(0, 15);
    std::string uid;
    for (int i = 0; i < 32; ++i) {
      if (i == 8 || i == 12 || i == 16 || i == 20) uid += '-';
      int v = hex(rng);
      if (i == 12) v = 4;            // version 4
      if (i == 16) v = 8 | (v & 3);  // variant 10xx
      uid += "0123456789abcdef"[v];
    }
    return uid;
  }

  std::string RandomSuffix() {
    std::uniform_int_distribution<size_t> pick(0, sizeof(kNameAlphabet) - 2);
    std::string s;
    for (int i = 0; i < 5; ++i) s += kNameAlphabet[pick(rng)];
    return s;
  }

  void Record(HistoryEntry entry) {
    for (auto it = watches.begin(); it != watches.end();) {
      auto w = it->lock();
      if (!w || !w->Open()) {
        it = watches.erase(it);
        continue;
      }
      if (auto ev = EventFor(w->filter, entry)) w->Push(std::move(*ev));
      ++it;
    }
    history.push_back(std::move(entry));
    while (history.size() > options.history_window) {
      compacted_rv = history.front().rv;
      history.pop_front();
    }
  }

  // Stores `obj` (new resourceVersion) and emits `type`.
  json Store(const std::string& rkey, const std::string& okey, json obj, const std::string& type,
             json old) {
    obj["metadata"]["resourceVersion"] = std::to_string(++rv);
    objects[rkey][okey] = obj;
    Record({rv, rkey, type, std::move(old), obj});
    return obj;
  }

  // Removes the object for good (DELETED), then collects its dependents.
  json Remove(const std::string& rkey, const std::string& okey, const std::string& propagation) {
    json obj = std::move(objects[rkey][okey]);
    objects[rkey].erase(okey);
    json old = obj;
    obj["metadata"]["resourceVersion"] = std::to_string(++rv);
    Record({rv, rkey, "DELETED", std::move(old), obj});
    if (options.garbage_collection) CollectDependents(MetaString(obj, "uid"), propagation);
    return obj;
  }

  // Sets deletionTimestamp once (an object with finalizers), bumping generation.
  json MarkDeleting(const std::string& rkey, const std::string& okey) {
    json obj = objects[rkey][okey];
    if (obj["metadata"].contains("deletionTimestamp")) return obj;
    json old = obj;
    obj["metadata"]["deletionTimestamp"] = Now();
    obj["metadata"]["deletionGracePeriodSeconds"] = 0;
    obj["metadata"]["generation"] = obj["metadata"].value("generation", 0) + 1;
    return Store(rkey, okey, std::move(obj), "MODIFIED", std::move(old));
  }

  // The garbage collector's part: drop references to `uid`; delete dependents left ownerless
  // unless orphaning.
  void CollectDependents(const std::string& uid, const std::string& propagation) {
    if (uid.empty()) return;
    std::vector<std::pair<std::string, std::string>> dependents;
    for (const auto& [rkey, objs] : objects) {
      for (const auto& [okey, obj] : objs) {
        auto meta = obj.find("metadata");
        if (meta == obj.end() || !meta->contains("ownerReferences")) continue;
        for (const auto& ref : (*meta)["ownerReferences"]) {
          if (ref.value("uid", "") == uid) {
            dependents.emplace_back(rkey, okey);
            break;
          }
        }
      }
    }
    for (const auto& [rkey, okey] : dependents) {
      auto it = objects[rkey].find(okey);
      if (it == objects[rkey].end()) continue;  // removed by an earlier cascade
      json obj = it->second;
      json refs = json::array();
      for (const auto& ref : obj["metadata"]["ownerReferences"]) {
        if (ref.value("uid", "") != uid) refs.push_back(ref);
      }
      if (!refs.empty() || propagation == "Orphan") {
        json old = obj;
        if (refs.empty()) {
          obj["metadata"].erase("ownerReferences");
        } else {
          obj["metadata"]["ownerReferences"] = refs;
        }
        Store(rkey, okey, std::move(obj), "MODIFIED", std::move(old));
      } else if (!Finalizers(obj).empty()) {
        MarkDeleting(rkey, okey);
      } else {
        Remove(rkey, okey, "Background");
      }
    }
  }

  // The common end of Update and Patch: finalizer rules, generation, no-op detection, store.
  StatusOr<json> CommitUpdate(const Resource& r, const std::string& method, const std::string& path,
                              const std::string& okey, const json& existing, json proposed) {
    const std::string rkey = RKey(r);
    const json& old_meta = existing["metadata"];
    if (old_meta.contains("deletionTimestamp")) {
      auto before = Finalizers(existing);
      std::vector<std::string> added;
      for (const auto& f : Finalizers(proposed)) {
        if (std::find(before.begin(), before.end(), f) == before.end()) added.push_back(f);
      }
      if (!added.empty()) {
        return ApiError(method, path, 422, "Invalid",
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                        "object is being deleted, found new finalizers " +
                            json(added).dump());
      }
    }
    int64_t generation = old_meta.value("generation", int64_t{1});
    if (GenerationRelevant(existing) != GenerationRelevant(proposed)) ++generation;
    proposed["metadata"]["generation"] = generation;
    proposed["metadata"]["resourceVersion"] = old_meta.value("resourceVersion", "");
    if (proposed == existing) return existing;  // a no-op write stores nothing
    if (old_meta.contains("deletionTimestamp") && Finalizers(proposed).empty()) {
      objects[rkey][okey] = proposed;
      return Remove(rkey, okey, "Background");
    }
    return Store(rkey, okey, std::move(proposed), "MODIFIED", existing);
  }

  // The fields of `existing` that only the server sets survive a write of `proposed`.
  void KeepSystemFields(const Resource& r, const json& existing, json& proposed) const {
    proposed["apiVersion"] = r.api_version();
    proposed["kind"] = r.kind;
    json& meta = proposed["metadata"];
    const json& old = existing["metadata"];
    for (const char* f : {"name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"}) {
      if (old.contains(f)) {
        meta[f] = old[f];
      } else {
        meta.erase(f);
      }
    }
    if (HasStatus(r)) {
      if (existing.contains("status")) {
        proposed["status"] = existing["status"];
      } else {
        proposed.erase("status");
      }
    }
  }

  // A status write changes only .status.
  static json WithStatusOf(const json& existing, const json& source) {
    json out = existing;
    if (source.contains("status")) {
      out["status"] = source["status"];
    } else {
      out.erase("status");
    }
    return out;
  }

  // Reconstructs the objects of `rkey` as they were at `at` (needs at >= compacted_rv).
  std::map<std::string, json> Snapshot(const std::string& rkey, int64_t at) const {
    auto it = objects.find(rkey);
    std::map<std::string, json> out =
        it == objects.end() ? std::map<std::string, json>{} : it->second;
    for (auto h = history.rbegin(); h != history.rend() && h->rv > at; ++h) {
      if (h->rkey != rkey) continue;
      std::string okey = MetaString(h->obj, "namespace") + "/" + MetaString(h->obj, "name");
      if (h->old.is_null()) {
        out.erase(okey);
      } else {
        out[okey] = h->old;
      }
    }
    return out;
  }

  // Create without the bookkeeping of a call (shared by Create and apply patches).
  StatusOr<json> CreateLocked(const Resource& r, const std::string& ns, const json& object,
                              const std::string& method);

  StatusOr<Filter> MakeFilter(const Resource& r, const std::string& ns,
                              const ListOptions& options) const {
    Filter f;
    f.rkey = RKey(r);
    f.ns = ns;
    f.namespaced = r.namespaced;
    PR_ASSIGN_OR_RETURN(f.labels, ParseLabelSelector(options.label_selector));
    PR_ASSIGN_OR_RETURN(f.fields, ParseFieldSelector(options.field_selector));
    return f;
  }
};

namespace {

StatusOr<int64_t> ParseResourceVersion(const std::string& s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c); }) ||
      s.size() > 18) {
    return rt::InvalidArgumentError("invalid resourceVersion \"" + s + "\"");
  }
  return std::stoll(s);
}

// The namespace a request acts in: the body's must agree with the URL's.
StatusOr<std::string> EffectiveNamespace(const Resource& r, const std::string& ns,
                                         const json& object) {
  if (!r.namespaced) return std::string();
  std::string body_ns = MetaString(object, "namespace");
  if (!body_ns.empty() && !ns.empty() && body_ns != ns) {
    return rt::InvalidArgumentError(
        "the namespace of the provided object does not match the namespace sent on the request");
  }
  std::string eff = ns.empty() ? body_ns : ns;
  if (eff.empty()) return rt::InvalidArgumentError("a namespaced object needs a namespace");
  return eff;
}

}  // namespace

FakeClient::FakeClient(FakeClientOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
}

FakeClient::~FakeClient() { CloseAllWatches(); }

StatusOr<json> FakeClient::Get(const Resource& r, const std::string& ns, const std::string& name) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("get", r, ""));
  auto& objs = s.objects[State::RKey(r)];
  auto it = objs.find(State::OKey(r, ns, name));
  if (it == objs.end()) {
    return ApiError("GET", r.ObjectPath(ns, name), 404, "NotFound",
                    QualifiedName(r) + " \"" + name + "\" not found");
  }
  return it->second;
}

StatusOr<json> FakeClient::List(const Resource& r, const std::string& ns,
                                const ListOptions& options) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("list", r, ""));
  const std::string path = r.CollectionPath(ns);
  auto bad = [&](const std::string& m) { return ApiError("GET", path, 400, "BadRequest", m); };
  auto filter = s.MakeFilter(r, ns, options);
  if (!filter.ok()) return bad(filter.status().message());

  int64_t at = s.rv;
  std::string after;  // object key the previous page ended with
  if (!options.continue_token.empty()) {
    if (!options.resource_version.empty()) {
      return bad("specifying resource version is not allowed when using continue");
    }
    size_t bar = options.continue_token.find('|');
    auto token_rv = ParseResourceVersion(options.continue_token.substr(0, bar));
    if (bar == std::string::npos || !token_rv.ok()) return bad("invalid continue token");
    at = *token_rv;
    after = options.continue_token.substr(bar + 1);
    if (at < s.compacted_rv) {
      return ApiError("GET", path, 410, "Gone",
                      "the provided continue parameter is too old to display a consistent list "
                      "result; start a new list without the continue parameter");
    }
  } else if (options.limit > 0 && !options.resource_version.empty() &&
             options.resource_version != "0") {
    auto exact = ParseResourceVersion(options.resource_version);
    if (!exact.ok()) return bad(exact.status().message());
    at = *exact;
    if (at < s.compacted_rv) {
      return ApiError("GET", path, 410, "Gone",
                      "too old resource version: " + options.resource_version + " (" +
                          std::to_string(s.compacted_rv) + ")");
    }
    if (at > s.rv) {
      return ApiError("GET", path, 504, "Timeout",
                      "Too large resource version: " + options.resource_version +
                          ", current: " + std::to_string(s.rv));
    }
  }

  std::map<std::string, json> snapshot =
      at == s.rv ? s.objects[State::RKey(r)] : s.Snapshot(State::RKey(r), at);
  json items = json::array();
  std::string continue_token;
  for (auto it = snapshot.upper_bound(after); it != snapshot.end(); ++it) {
    if (!filter->Matches(it->second)) continue;
    if (options.limit > 0 && static_cast<int64_t>(items.size()) == options.limit) {
      continue_token =
          std::to_string(at) + "|" +
          State::OKey(r, MetaString(items.back(), "namespace"), MetaString(items.back(), "name"));
      break;
    }
    items.push_back(it->second);
  }
  json list = {{"apiVersion", r.api_version()},
               {"kind", r.kind + "List"},
               {"metadata", {{"resourceVersion", std::to_string(at)}}},
               {"items", std::move(items)}};
  if (!continue_token.empty()) list["metadata"]["continue"] = continue_token;
  return list;
}

StatusOr<json> FakeClient::State::CreateLocked(const Resource& r, const std::string& ns,
                                               const json& object, const std::string& method) {
  State& s = *this;
  const std::string path = r.CollectionPath(ns);
  if (!object.is_object())
    return ApiError(method, path, 400, "BadRequest", "body is not an object");
  auto eff_ns = EffectiveNamespace(r, ns, object);
  if (!eff_ns.ok()) return ApiError(method, path, 400, "BadRequest", eff_ns.status().message());
  if (!MetaString(object, "resourceVersion").empty()) {
    return ApiError(method, path, 400, "BadRequest",
                    "resourceVersion should not be set on objects to be created");
  }
  if ((object.contains("kind") && object["kind"] != r.kind) ||
      (object.contains("apiVersion") && object["apiVersion"] != r.api_version())) {
    return ApiError(
        method, path, 400, "BadRequest",
        "the object's apiVersion/kind does not match " + r.api_version() + " " + r.kind);
  }
  json obj = object;
  std::string name = MetaString(obj, "name");
  const std::string rkey = State::RKey(r);
  if (name.empty()) {
    std::string prefix = MetaString(obj, "generateName");
    if (prefix.empty()) {
      return ApiError(method, path, 422, "Invalid",
                      "metadata.name: Required value: name or generateName is required");
    }
    do {
      name = prefix + s.RandomSuffix();
    } while (s.objects[rkey].count(State::OKey(r, *eff_ns, name)));
  }
  if (!IsValidName(name)) {
    return ApiError(method, path, 422, "Invalid",
                    "metadata.name: Invalid value: \"" + name +
                        "\": a lowercase RFC 1123 subdomain must consist of lower case "
                        "alphanumeric characters, '-' or '.'");
  }
  const std::string okey = State::OKey(r, *eff_ns, name);
  if (s.objects[rkey].count(okey)) {
    return ApiError(method, path, 409, "AlreadyExists",
                    QualifiedName(r) + " \"" + name + "\" already exists");
  }
  obj["apiVersion"] = r.api_version();
  obj["kind"] = r.kind;
  json& meta = obj["metadata"];
  meta["name"] = name;
  if (r.namespaced)
    meta["namespace"] = *eff_ns;
  else
    meta.erase("namespace");
  meta.erase("deletionTimestamp");
  meta.erase("deletionGracePeriodSeconds");
  meta["uid"] = s.Uid();
  meta["creationTimestamp"] = s.Now();
  meta["generation"] = 1;
  if (s.HasStatus(r)) obj.erase("status");
  return s.Store(rkey, okey, std::move(obj), "ADDED", json());
}

StatusOr<json> FakeClient::Create(const Resource& r, const std::string& ns, const json& object) {
  std::lock_guard<std::mutex> lock(state_->mu);
  PR_RETURN_IF_ERROR(state_->Enter("create", r, ""));
  return state_->CreateLocked(r, ns, object, "POST");
}

StatusOr<json> FakeClient::Update(const Resource& r, const std::string& ns, const json& object,
                                  const std::string& subresource) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("update", r, subresource));
  const std::string name = MetaString(object, "name");
  const std::string path = r.ObjectPath(ns, name, subresource);
  if (!object.is_object() || name.empty()) {
    return ApiError("PUT", path, 422, "Invalid", "metadata.name: Required value");
  }
  auto eff_ns = EffectiveNamespace(r, ns, object);
  if (!eff_ns.ok()) return ApiError("PUT", path, 400, "BadRequest", eff_ns.status().message());
  if (!subresource.empty() && (subresource != "status" || !s.HasStatus(r))) {
    return ApiError("PUT", path, 404, "NotFound",
                    "the server could not find the requested resource");
  }
  const std::string okey = State::OKey(r, *eff_ns, name);
  auto& objs = s.objects[State::RKey(r)];
  auto it = objs.find(okey);
  if (it == objs.end()) {
    return ApiError("PUT", path, 404, "NotFound", QualifiedName(r) + " \"" + name + "\" not found");
  }
  const json existing = it->second;
  const std::string given_rv = MetaString(object, "resourceVersion");
  if (given_rv.empty() && IsCustom(r)) {
    return ApiError("PUT", path, 422, "Invalid",
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an "
                    "update");
  }
  if (!given_rv.empty() && given_rv != MetaString(existing, "resourceVersion")) {
    return ApiError("PUT", path, 409, "Conflict",
                    "Operation cannot be fulfilled on " + QualifiedName(r) + " \"" + name +
                        "\": the object has been modified; please apply your changes to the "
                        "latest version and try again");
  }
  json proposed;
  if (subresource == "status") {
    proposed = State::WithStatusOf(existing, object);
  } else {
    proposed = object;
    s.KeepSystemFields(r, existing, proposed);
  }
  return s.CommitUpdate(r, "PUT", path, okey, existing, std::move(proposed));
}

StatusOr<json> FakeClient::Patch(const Resource& r, const std::string& ns, const std::string& name,
                                 PatchType type, const json& patch,
                                 const std::string& subresource) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("patch", r, subresource));
  const std::string path = r.ObjectPath(ns, name, subresource);
  if (type == PatchType::kStrategicMerge) {
    return ApiError("PATCH", path, 415, "UnsupportedMediaType",
                    "strategic merge patch is not supported by the fake client; use a merge or "
                    "JSON patch");
  }
  if (!subresource.empty() && (subresource != "status" || !s.HasStatus(r))) {
    return ApiError("PATCH", path, 404, "NotFound",
                    "the server could not find the requested resource");
  }
  const std::string rkey = State::RKey(r);
  const std::string okey = State::OKey(r, ns, name);
  auto it = s.objects[rkey].find(okey);
  if (it == s.objects[rkey].end()) {
    if (type == PatchType::kApply && subresource.empty()) {
      // Server-side apply of a missing object creates it (the patch is the whole object).
      json obj = patch;
      if (!obj.is_object()) obj = json::object();
      obj["metadata"]["name"] = name;
      return s.CreateLocked(r, ns, obj, "PATCH");
    }
    return ApiError("PATCH", path, 404, "NotFound",
                    QualifiedName(r) + " \"" + name + "\" not found");
  }
  const json existing = it->second;
  json patched = existing;
  try {
    if (type == PatchType::kJson) {
      patched = existing.patch(patch);
    } else {
      if (!patch.is_object()) throw std::invalid_argument("a merge patch must be an object");
      patched.merge_patch(patch);
    }
  } catch (const std::exception& e) {
    return ApiError("PATCH", path, 422, "Invalid",
                    std::string("the server rejected our request due to an error in our "
                                "request: ") +
                        e.what());
  }
  if (!patched.is_object() || !patched.contains("metadata") || !patched["metadata"].is_object()) {
    return ApiError("PATCH", path, 422, "Invalid", "the patch removed metadata");
  }
  const std::string given_rv = MetaString(patched, "resourceVersion");
  if (!given_rv.empty() && given_rv != MetaString(existing, "resourceVersion")) {
    return ApiError("PATCH", path, 409, "Conflict",
                    "Operation cannot be fulfilled on " + QualifiedName(r) + " \"" + name +
                        "\": the object has been modified; please apply your changes to the "
                        "latest version and try again");
  }
  json proposed;
  if (subresource == "status") {
    proposed = State::WithStatusOf(existing, patched);
  } else {
    proposed = std::move(patched);
    s.KeepSystemFields(r, existing, proposed);
  }
  return s.CommitUpdate(r, "PATCH", path, okey, existing, std::move(proposed));
}

Status FakeClient::Delete(const Resource& r, const std::string& ns, const std::string& name,
                          const DeleteOptions& options) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("delete", r, ""));
  const std::string path = r.ObjectPath(ns, name);
  const std::string rkey = State::RKey(r);
  const std::string okey = State::OKey(r, ns, name);
  auto it = s.objects[rkey].find(okey);
  if (it == s.objects[rkey].end()) {
    return ApiError("DELETE", path, 404, "NotFound",
                    QualifiedName(r) + " \"" + name + "\" not found");
  }
  const json& obj = it->second;
  if (!options.precondition_uid.empty() && options.precondition_uid != MetaString(obj, "uid")) {
    return ApiError("DELETE", path, 409, "Conflict",
                    "Precondition failed: UID in precondition: " + options.precondition_uid +
                        ", UID in object meta: " + MetaString(obj, "uid"));
  }
  if (!options.precondition_resource_version.empty() &&
      options.precondition_resource_version != MetaString(obj, "resourceVersion")) {
    return ApiError("DELETE", path, 409, "Conflict",
                    "Precondition failed: ResourceVersion in precondition: " +
                        options.precondition_resource_version +
                        ", ResourceVersion in object meta: " + MetaString(obj, "resourceVersion"));
  }
  if (!Finalizers(obj).empty()) {
    s.MarkDeleting(rkey, okey);
  } else {
    s.Remove(rkey, okey, options.propagation_policy);
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<WatchStream>> FakeClient::Watch(const Resource& r, const std::string& ns,
                                                         const ListOptions& options) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  PR_RETURN_IF_ERROR(s.Enter("watch", r, ""));
  const std::string path = r.CollectionPath(ns);
  auto filter = s.MakeFilter(r, ns, options);
  if (!filter.ok()) return ApiError("GET", path, 400, "BadRequest", filter.status().message());
  auto w = std::make_shared<WatchState>();
  w->filter = std::move(*filter);
  w->bookmarks = options.allow_watch_bookmarks;
  w->kind = r.kind;
  w->api_version = r.api_version();
  if (options.timeout_seconds > 0) {
    w->deadline = SteadyClock::now() + std::chrono::seconds(options.timeout_seconds);
  }
  const std::string& from = options.resource_version;
  if (from.empty() || from == "0") {
    for (const auto& [okey, obj] : s.objects[State::RKey(r)]) {
      if (w->filter.Matches(obj)) w->queue.push_back({"ADDED", obj});
    }
  } else {
    auto n = ParseResourceVersion(from);
    if (!n.ok()) return ApiError("GET", path, 400, "BadRequest", n.status().message());
    if (*n < s.compacted_rv) {
      w->queue.push_back({"ERROR",
                          {{"kind", "Status"},
                           {"apiVersion", "v1"},
                           {"metadata", json::object()},
                           {"status", "Failure"},
                           {"message", "too old resource version: " + from + " (" +
                                           std::to_string(s.compacted_rv) + ")"},
                           {"reason", "Expired"},
                           {"code", 410}}});
      w->ended = true;
      return std::unique_ptr<WatchStream>(std::make_unique<FakeWatchStream>(w));
    }
    for (const auto& entry : s.history) {
      if (entry.rv <= *n) continue;
      if (auto ev = EventFor(w->filter, entry)) w->queue.push_back(std::move(*ev));
    }
  }
  s.watches.push_back(w);
  return std::unique_ptr<WatchStream>(std::make_unique<FakeWatchStream>(w));
}

void FakeClient::InjectError(const std::string& verb, const std::string& resource, Status error,
                             int times) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->injections.push_back({verb, resource, std::move(error), times});
}

void FakeClient::ClearInjectedErrors() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->injections.clear();
}

std::map<ApiCall, int> FakeClient::Calls() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->calls;
}

int FakeClient::CallCount(const std::string& verb, const std::string& resource) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  int n = 0;
  for (const auto& [call, count] : state_->calls) {
    if (call.verb == verb && call.resource == resource) n += count;
  }
  return n;
}

void FakeClient::ResetCalls() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->calls.clear();
}

void FakeClient::CloseAllWatches(Status error) {
  std::lock_guard<std::mutex> lock(state_->mu);
  for (auto& weak : state_->watches) {
    if (auto w = weak.lock()) w->End(error, /*drop_pending=*/true);
  }
  state_->watches.clear();
}

void FakeClient::CompactHistory() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->history.clear();
  state_->compacted_rv = state_->rv;
}

void FakeClient::SendBookmarks() {
  std::lock_guard<std::mutex> lock(state_->mu);
  for (auto& weak : state_->watches) {
    auto w = weak.lock();
    if (!w || !w->bookmarks) continue;
    w->Push({"BOOKMARK",
             {{"kind", w->kind},
              {"apiVersion", w->api_version},
              {"metadata", {{"resourceVersion", std::to_string(state_->rv)}}}}});
  }
}

int FakeClient::OpenWatches() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  int n = 0;
  for (const auto& weak : state_->watches) {
    if (auto w = weak.lock(); w && w->Open()) ++n;
  }
  return n;
}

int64_t FakeClient::CurrentResourceVersion() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->rv;
}

}  // namespace parallelrun::op::kube
