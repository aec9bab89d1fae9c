// The informer's thread runs an explicit state machine:
//
//   kList  ──ok──▶ kWatch ──stream ended──▶ kWatch (from the last resourceVersion)
//     ▲  │                │  └─ERROR 410 / Watch() Gone──▶ kList (diff against the store)
//     │  └─error─▶ backoff ─▶ kList
//     │                 └─error (Watch() or Next())──▶ backoff ─▶ kWatch
//
// Stop() sets `stopping`, cancels the open watch (WatchStream::Cancel) and wakes a backoff
// wait, so it returns promptly in every state (a List in flight finishes first).
#include "operator/informer/informer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <random>
#include <string_view>
#include <thread>
#include <tuple>

#include "runtime/base/mutex.h"

namespace parallelrun::op::informer {
namespace {

using nlohmann::json;

std::string MetaString(const json& obj, const char* field) {
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return "";
  auto it = meta->find(field);
  return it != meta->end() && it->is_string() ? it->get<std::string>() : "";
}

std::string StoreKey(const std::string& ns, const std::string& name) {
  return ns.empty() ? name : ns + "/" + name;
}

// Capped exponential backoff with up to +25 % jitter, so that many informers that failed together
// do not retry together.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), rng_(std::random_device{}()) {}

  std::chrono::milliseconds Next() {
    double base = std::min(static_cast<double>(max_.count()),
                           static_cast<double>(initial_.count()) * (1 << std::min(attempt_, 20)));
    ++attempt_;
    double jittered = base * std::uniform_real_distribution<double>(1.0, 1.25)(rng_);
    return std::chrono::milliseconds(
        static_cast<int64_t>(std::min(jittered, static_cast<double>(max_.count()))));
  }
  void Reset() { attempt_ = 0; }

 private:
  std::chrono::milliseconds initial_, max_;
  int attempt_ = 0;
  std::mt19937 rng_;
};

struct Event {
  std::string type;
  ObjectPtr old;
  ObjectPtr obj;
};

// One stored object, packed as CBOR: about the size of its JSON text, where a parsed
// nlohmann::json takes 5-7 times that in map nodes and small strings (1.3 KB of a cached
// ParallelRunJob held 8.2 KB of heap; SPEC.md section 9 gives the operator 30 MiB for 500 jobs).
// Its labels stay unpacked so that ListByLabels decodes only the objects it returns.
struct Entry {
  std::vector<uint8_t> packed;
  std::vector<std::pair<std::string, std::string>> labels;  // metadata.labels with string values
};

Entry Pack(const json& obj) {
  Entry e;
  e.packed = json::to_cbor(obj);
  e.packed.shrink_to_fit();
  auto meta = obj.find("metadata");
  if (meta != obj.end() && meta->is_object()) {
    auto labels = meta->find("labels");
    if (labels != meta->end() && labels->is_object()) {
      for (const auto& [k, v] : labels->items()) {
        if (v.is_string()) e.labels.emplace_back(k, v.get<std::string>());
      }
    }
  }
  e.labels.shrink_to_fit();
  return e;
}

ObjectPtr Unpack(const Entry& e) { return std::make_shared<const json>(json::from_cbor(e.packed)); }

bool HasLabels(const Entry& e, const std::vector<std::pair<std::string, std::string>>& want) {
  for (const auto& pair : want) {
    if (std::find(e.labels.begin(), e.labels.end(), pair) == e.labels.end()) return false;
  }
  return true;
}

// The namespace part of a store key ("ns/name"; "" for a cluster-scoped "name").
std::string_view NamespaceOf(const std::string& key) {
  const size_t slash = key.find('/');
  return slash == std::string::npos ? std::string_view() : std::string_view(key).substr(0, slash);
}

// How one watch ended.
enum class WatchEnd { kEnded, kGone, kError, kStopped };

// A watch that ends cleanly this fast without an event is treated like an error, so a server that
// keeps closing watches at once is not hammered.
constexpr auto kMinHealthyWatch = std::chrono::seconds(1);
// A backoff wait re-reads the informer's clock at least this often.
constexpr auto kClockRecheck = std::chrono::milliseconds(100);
// As client-go: a random server-side timeout between 5 and 10 minutes spreads re-watches out.
constexpr int kMinWatchTimeoutSeconds = 300;
// Restarts of a paged list whose continue token expired before giving up for this attempt.
constexpr int kMaxListRestarts = 3;

}  // namespace

struct Informer::Impl {
  kube::Client& client;
  InformerOptions options;
  const rt::Clock& clock;
  std::vector<EventHandler> handlers;
  std::string name;  // for logs: "pods", "parallelrunjobs.parallelrun.io"

  mutable rt::SharedMutex store_mu;
  std::map<std::string, Entry> store GUARDED_BY(store_mu);
  std::string last_rv GUARDED_BY(store_mu);

  mutable rt::Mutex mu;
  mutable rt::CondVar cv;
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  bool synced GUARDED_BY(mu) = false;
  kube::WatchStream* current_watch GUARDED_BY(mu) = nullptr;
  std::thread thread;  // started once by Start (under mu); joined by Stop after `stopping`

  std::mt19937 rng{std::random_device{}()};

  Impl(kube::Client& c, InformerOptions o)
      : client(c),
        options(std::move(o)),
        clock(options.clock != nullptr ? *options.clock : rt::RealClock::Get()) {
    const auto& r = options.resource;
    name = r.group.empty() ? r.resource : r.resource + "." + r.group;
  }

  bool Stopping() const EXCLUDES(mu) {
    rt::MutexLock lock(mu);
    return stopping;
  }

  // Waits until the clock reaches `until`, or until Stop(). Backoffs count from the start of the
  // attempt that failed, so a thread that runs late does not shift them.
  void SleepUntil(rt::SteadyTime until) EXCLUDES(mu) {
    using Steady = std::chrono::steady_clock;
    rt::MutexLock lock(mu);
    while (!stopping) {
      const auto gap = until - clock.SteadyNow();
      if (gap <= Steady::duration::zero()) return;
      cv.WaitUntil(mu, Steady::now() + std::min<Steady::duration>(gap, kClockRecheck));
    }
  }

  // Lists never carry kind/apiVersion on built-in items; fill them so every stored object is
  // self-describing, then trim.
  json Prepare(json obj) const {
    if (!obj.contains("apiVersion")) obj["apiVersion"] = options.resource.api_version();
    if (!obj.contains("kind")) obj["kind"] = options.resource.kind;
    if (options.transform) obj = options.transform(std::move(obj));
    return obj;
  }

  // The stored object of `key`, decoded; nullptr when there is none.
  ObjectPtr Find(const std::string& key) const EXCLUDES(store_mu) {
    rt::ReaderLock lock(store_mu);
    auto it = store.find(key);
    return it == store.end() ? nullptr : Unpack(it->second);
  }

  void Dispatch(const std::vector<Event>& events) {
    for (const auto& e : events) {
      for (const auto& h : handlers) {
        try {
          h(e.type, e.old, e.obj);
        } catch (const std::exception& ex) {
          spdlog::error("informer {}: handler threw on {} {}: {}", name, e.type, KeyOf(*e.obj),
                        ex.what());
        }
      }
    }
  }

  kube::ListOptions BaseOptions() const {
    kube::ListOptions o;
    o.label_selector = options.label_selector;
    o.field_selector = options.field_selector;
    return o;
  }

  // All pages of one consistent list, packed. A continue token that expired (410) restarts the
  // list.
  rt::Status ListAll(std::map<std::string, Entry>& out, std::string& rv) {
    for (int restart = 0;; ++restart) {
      out.clear();
      rv.clear();
      kube::ListOptions o = BaseOptions();
      o.limit = options.page_size;
      bool gone = false;
      do {
        auto page = client.List(options.resource, options.ns, o);
        if (!page.ok()) {
          if (kube::IsGone(page.status()) && !o.continue_token.empty() &&
              restart < kMaxListRestarts) {
            spdlog::info("informer {}: list continue token expired, listing again", name);
            gone = true;
            break;
          }
          return page.status();
        }
        if (rv.empty()) rv = MetaString(*page, "resourceVersion");
        for (auto& item : (*page)["items"]) {
          std::string key = KeyOf(item);
          out[key] = Pack(Prepare(std::move(item)));
          item = nullptr;  // the page's full objects go as they are packed
        }
        o.continue_token = MetaString(*page, "continue");
        if (Stopping()) return rt::AbortedError("stopped");
      } while (!o.continue_token.empty());
      if (!gone) return rt::Status::Ok();
    }
  }

  // Lists and replaces the store, emitting the difference: DELETED for what vanished, then ADDED
  // or MODIFIED for every listed object, in key order. Objects are decoded one event at a time,
  // so a list of many objects never holds them all parsed at once.
  rt::Status ListAndReplace() {
    std::map<std::string, Entry> previous;
    std::vector<std::string> keys;
    std::string rv;
    {
      std::map<std::string, Entry> fresh;
      PR_RETURN_IF_ERROR(ListAll(fresh, rv));
      keys.reserve(fresh.size());
      for (const auto& [key, entry] : fresh) keys.push_back(key);
      rt::WriterLock lock(store_mu);
      previous.swap(store);
      store = std::move(fresh);
      last_rv = rv;
    }
    spdlog::debug("informer {}: listed {} objects at resourceVersion {}", name, keys.size(), rv);
    for (const auto& [key, entry] : previous) {
      if (std::binary_search(keys.begin(), keys.end(), key)) continue;
      ObjectPtr gone = Unpack(entry);
      Dispatch({{"DELETED", gone, gone}});
    }
    for (const auto& key : keys) {
      // Only this thread writes the store, so every listed key is still there.
      ObjectPtr obj = Find(key);
      auto old = previous.find(key);
      if (old == previous.end()) {
        Dispatch({{"ADDED", nullptr, obj}});
      } else {
        Dispatch({{"MODIFIED", Unpack(old->second), obj}});
      }
    }
    // Synced only after the handlers saw the first list, so a controller that waits for sync
    // has every existing key queued.
    rt::MutexLock lock(mu);
    synced = true;
    cv.NotifyAll();
    return rt::Status::Ok();
  }

  void Apply(kube::WatchEvent& e) {
    const std::string key = KeyOf(e.object);
    const std::string rv = MetaString(e.object, "resourceVersion");
    auto obj = std::make_shared<const json>(Prepare(std::move(e.object)));
    const bool deleted = e.type == "DELETED";
    Entry entry = deleted ? Entry() : Pack(*obj);
    std::optional<Entry> old;
    {
      rt::WriterLock lock(store_mu);
      auto it = store.find(key);
      if (it != store.end()) {
        old = std::move(it->second);
        if (deleted) {
          store.erase(it);
        } else {
          it->second = std::move(entry);
        }
      } else if (!deleted) {
        store.emplace(key, std::move(entry));
      }
      if (!rv.empty()) last_rv = rv;
    }
    Event event{e.type, old ? Unpack(*old) : nullptr, std::move(obj)};
    if (!deleted) event.type = old ? "MODIFIED" : "ADDED";
    Dispatch({event});
  }

  // Registers the open stream so Stop() can cancel it; false when already stopping.
  bool Register(kube::WatchStream* w) EXCLUDES(mu) {
    rt::MutexLock lock(mu);
    current_watch = stopping ? nullptr : w;
    return !stopping;
  }

  WatchEnd WatchOnce(Backoff& backoff) {
    kube::ListOptions o = BaseOptions();
    {
      rt::ReaderLock lock(store_mu);
      o.resource_version = last_rv;
    }
    o.allow_watch_bookmarks = true;
    o.timeout_seconds = std::uniform_int_distribution<int>(kMinWatchTimeoutSeconds,
                                                           2 * kMinWatchTimeoutSeconds)(rng);
    auto w = client.Watch(options.resource, options.ns, o);
    if (!w.ok()) {
      if (kube::IsGone(w.status())) return WatchEnd::kGone;
      spdlog::warn("informer {}: watch failed: {}", name, w.status().ToString());
      return WatchEnd::kError;
    }
    std::unique_ptr<kube::WatchStream> stream = std::move(*w);
    if (!Register(stream.get())) return WatchEnd::kStopped;
    WatchEnd end = ReadEvents(*stream, backoff);
    Register(nullptr);  // before the stream is destroyed
    return end;
  }

  WatchEnd ReadEvents(kube::WatchStream& stream, Backoff& backoff) {
    const rt::SteadyTime started_at = clock.SteadyNow();
    bool any = false;
    while (true) {
      auto next = stream.Next();
      if (Stopping()) return WatchEnd::kStopped;
      if (!next.ok()) {
        spdlog::warn("informer {}: watch broke: {}", name, next.status().ToString());
        return WatchEnd::kError;
      }
      if (!next->has_value()) {
        bool quick = clock.SteadyNow() - started_at < kMinHealthyWatch;
        return quick && !any ? WatchEnd::kError : WatchEnd::kEnded;
      }
      kube::WatchEvent& e = **next;
      if (e.type == "ERROR") {
        if (e.object.value("code", 0) == 410) {
          spdlog::info("informer {}: watch expired ({}), listing again", name,
                       e.object.value("message", ""));
          return WatchEnd::kGone;
        }
        spdlog::warn("informer {}: watch error: {}", name, e.object.dump());
        return WatchEnd::kError;
      }
      any = true;
      backoff.Reset();
      if (e.type == "BOOKMARK") {
        std::string rv = MetaString(e.object, "resourceVersion");
        rt::WriterLock lock(store_mu);
        if (!rv.empty()) last_rv = rv;
      } else if (e.type == "ADDED" || e.type == "MODIFIED" || e.type == "DELETED") {
        Apply(e);
      } else {
        spdlog::warn("informer {}: ignoring watch event of type {}", name, e.type);
      }
    }
  }

  void Run() {
    Backoff backoff(options.backoff_initial, options.backoff_max);
    bool need_list = true;
    while (!Stopping()) {
      const rt::SteadyTime attempt = clock.SteadyNow();
      if (need_list) {
        rt::Status s = ListAndReplace();
        if (Stopping()) return;
        if (!s.ok()) {
          auto wait = backoff.Next();
          spdlog::warn("informer {}: list failed (retry in {} ms): {}", name, wait.count(),
                       s.ToString());
          SleepUntil(attempt + wait);
          continue;
        }
        backoff.Reset();
        need_list = false;
      }
      const WatchEnd end = WatchOnce(backoff);
      const rt::SteadyTime ended = clock.SteadyNow();
      switch (end) {
        case WatchEnd::kEnded:
          break;
        case WatchEnd::kGone:
          need_list = true;
          break;
        case WatchEnd::kError:
          SleepUntil(ended + backoff.Next());
          break;
        case WatchEnd::kStopped:
          return;
      }
    }
  }

  std::vector<ObjectPtr> Select(const std::string& ns,
                                const std::function<bool(const Entry&)>& keep) const {
    std::vector<ObjectPtr> out;
    rt::ReaderLock lock(store_mu);
    for (const auto& [key, entry] : store) {
      if (!ns.empty() && NamespaceOf(key) != ns) continue;
      if (keep(entry)) out.push_back(Unpack(entry));
    }
    return out;
  }
};

Informer::Informer(kube::Client& client, InformerOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(options))) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandler(EventHandler handler) { impl_->handlers.push_back(std::move(handler)); }

void Informer::Start() {
  rt::MutexLock lock(impl_->mu);
  if (impl_->started || impl_->stopping) return;
  impl_->started = true;
  impl_->thread = std::thread([this] { impl_->Run(); });
}

void Informer::Stop() {
  {
    rt::MutexLock lock(impl_->mu);
    impl_->stopping = true;
    if (impl_->current_watch) impl_->current_watch->Cancel();
    impl_->cv.NotifyAll();
  }
  if (impl_->thread.joinable() && impl_->thread.get_id() != std::this_thread::get_id()) {
    impl_->thread.join();
  }
}

bool Informer::HasSynced() const {
  rt::MutexLock lock(impl_->mu);
  return impl_->synced;
}

bool Informer::WaitForSync(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  rt::MutexLock lock(impl_->mu);
  while (!impl_->synced) {
    if (!impl_->cv.WaitUntil(impl_->mu, deadline)) return impl_->synced;
  }
  return true;
}

ObjectPtr Informer::Get(const std::string& ns, const std::string& name) const {
  return impl_->Find(StoreKey(ns, name));
}

std::vector<ObjectPtr> Informer::List(const std::string& ns) const {
  return impl_->Select(ns, [](const Entry&) { return true; });
}

std::vector<ObjectPtr> Informer::ListByLabels(
    const std::string& ns, const std::vector<std::pair<std::string, std::string>>& labels) const {
  return impl_->Select(ns, [&labels](const Entry& entry) { return HasLabels(entry, labels); });
}

size_t Informer::Size() const {
  rt::ReaderLock lock(impl_->store_mu);
  return impl_->store.size();
}

std::string Informer::LastResourceVersion() const {
  rt::ReaderLock lock(impl_->store_mu);
  return impl_->last_rv;
}

std::string KeyOf(const nlohmann::json& object) {
  return StoreKey(MetaString(object, "namespace"), MetaString(object, "name"));
}

}  // namespace parallelrun::op::informer
