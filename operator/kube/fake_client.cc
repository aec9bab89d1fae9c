#include "operator/kube/fake_client.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "operator/kube/http_client.h"
#include "operator/kube/http_status.h"
#include "tests/cluster/apiserver.h"

namespace parallelrun::op::kube {
namespace {

namespace cluster = rt::cluster;
using nlohmann::json;

// How long one wait on the server's stream lasts before the client looks at Cancel() and
// CloseAllWatches() again.
constexpr std::chrono::milliseconds kWatchPoll{20};

cluster::ResourceRef Ref(const Resource& r) { return {r.group, r.resource}; }

// The server's answer as the HTTPS client would return it.
Status ErrorOf(const std::string& verb, const std::string& path, const cluster::ApiError& e) {
  return HttpError(verb + " " + path, e.code, e.reason, e.ToStatus().dump());
}

StatusOr<json> ValueOf(const std::string& verb, const std::string& path,
                       cluster::ApiResult result) {
  if (!result.ok()) return ErrorOf(verb, path, result.error());
  return std::move(result.value());
}

cluster::ListOptions ClusterListOptions(const ListOptions& o, bool watch) {
  cluster::ListOptions c;
  c.label_selector = o.label_selector;
  c.field_selector = o.field_selector;
  c.resource_version = o.resource_version;
  if (watch) {
    c.allow_watch_bookmarks = o.allow_watch_bookmarks;
    c.timeout_seconds = o.timeout_seconds;
  } else {
    c.limit = o.limit;
    c.continue_token = o.continue_token;
  }
  return c;
}

// Creates the start-up objects; the first failure, naming the file or namespace.
Status Populate(cluster::ApiServer& server, const FakeClientOptions& options) {
  for (const std::string& file : options.crd_files) {
    std::ifstream in(file);
    if (!in) return rt::InvalidArgumentError("CRD file " + file + ": cannot open it");
    std::stringstream text;
    text << in.rdbuf();
    json crd;
    std::string error;
    if (!cluster::ParseBody(text.str(), &crd, &error)) {
      return rt::InvalidArgumentError("CRD file " + file + ": " + error);
    }
    auto r = server.Create({"apiextensions.k8s.io", "customresourcedefinitions"}, "", crd);
    if (!r.ok()) return ErrorOf("POST", "CRD file " + file, r.error());
  }
  for (const std::string& ns : options.namespaces) {
    auto r = server.Create({"", "namespaces"}, "", json{{"metadata", {{"name", ns}}}});
    if (!r.ok()) return ErrorOf("POST", "/api/v1/namespaces", r.error());
  }
  return Status::Ok();
}

}  // namespace

std::vector<std::string> FakeClientOptions::DefaultCrdFiles() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(PARALLELRUN_SOURCE_DIR "/crds", ec)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// One open watch: the server's stream and what the client side adds (cancel, dropped connection).
struct FakeWatchState {
  FakeWatchState(std::shared_ptr<cluster::ApiServer> s, std::unique_ptr<cluster::WatchStream> st)
      : server(std::move(s)), stream(std::move(st)) {}

  std::shared_ptr<cluster::ApiServer> server;  // outlives the stream
  std::unique_ptr<cluster::WatchStream> stream;
  std::mutex mu;
  bool cancelled = false;
  bool ended = false;  // by CloseAllWatches or the server
  Status end_error;

  bool Open() {
    std::lock_guard<std::mutex> lock(mu);
    return !cancelled && !ended;
  }
  void End(Status error) {
    std::lock_guard<std::mutex> lock(mu);
    if (ended || cancelled) return;
    ended = true;
    end_error = std::move(error);
  }
};

namespace {

class FakeWatchStream : public WatchStream {
 public:
  explicit FakeWatchStream(std::shared_ptr<FakeWatchState> w) : w_(std::move(w)) {}
  ~FakeWatchStream() override { Cancel(); }

  // Only the owner calls Next(), so the server stream is used by one thread at a time.
  StatusOr<std::optional<WatchEvent>> Next() override {
    while (true) {
      if (auto end = Ended()) return *end;
      std::optional<cluster::WatchEvent> e = w_->stream->Next(kWatchPoll);
      if (auto end = Ended()) return *end;  // an event read after the drop is lost with it
      if (e) return std::optional<WatchEvent>(WatchEvent{e->type, std::move(e->object)});
      if (w_->stream->Closed()) {
        w_->End(Status::Ok());
        continue;
      }
    }
  }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(w_->mu);
    w_->cancelled = true;
  }

 private:
  // What Next() returns once the watch is over: nullopt, or the drop's error (once).
  std::optional<StatusOr<std::optional<WatchEvent>>> Ended() {
    std::lock_guard<std::mutex> lock(w_->mu);
    if (w_->cancelled) return StatusOr<std::optional<WatchEvent>>(std::nullopt);
    if (!w_->ended) return std::nullopt;
    Status error = std::exchange(w_->end_error, Status::Ok());
    if (!error.ok()) return StatusOr<std::optional<WatchEvent>>(error);
    return StatusOr<std::optional<WatchEvent>>(std::nullopt);
  }

  std::shared_ptr<FakeWatchState> w_;
};

}  // namespace

FakeClient::FakeClient(FakeClientOptions options)
    : server_(std::make_shared<cluster::ApiServer>("")) {
  std::string error;
  if (!server_->Start(&error)) {
    start_error_ = rt::InternalError("test cluster API server: " + error);
    return;
  }
  start_error_ = Populate(*server_, options).WithContext("FakeClient start");
}

FakeClient::~FakeClient() { CloseAllWatches(); }

Status FakeClient::Enter(const std::string& verb, const Resource& r, const std::string& sub) {
  std::string res = sub.empty() ? r.resource : r.resource + "/" + sub;
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_[ApiCall{verb, r.group, res}];
  if (!start_error_.ok()) return start_error_;
  for (auto it = injections_.begin(); it != injections_.end(); ++it) {
    if ((it->verb == "*" || it->verb == verb) && (it->resource == "*" || it->resource == res)) {
      Status err = it->error;
      if (--it->remaining <= 0) injections_.erase(it);
      return err;
    }
  }
  return Status::Ok();
}

StatusOr<json> FakeClient::Get(const Resource& r, const std::string& ns, const std::string& name) {
  PR_RETURN_IF_ERROR(Enter("get", r, ""));
  return ValueOf("GET", r.ObjectPath(ns, name), server_->Get(Ref(r), ns, name));
}

StatusOr<json> FakeClient::List(const Resource& r, const std::string& ns,
                                const ListOptions& options) {
  PR_RETURN_IF_ERROR(Enter("list", r, ""));
  return ValueOf("GET", r.CollectionPath(ns),
                 server_->List(Ref(r), ns, ClusterListOptions(options, false)));
}

StatusOr<json> FakeClient::Create(const Resource& r, const std::string& ns, const json& object) {
  PR_RETURN_IF_ERROR(Enter("create", r, ""));
  return ValueOf("POST", r.CollectionPath(ns), server_->Create(Ref(r), ns, object));
}

StatusOr<json> FakeClient::CreateDryRun(const Resource& r, const std::string& ns,
                                        const json& object) {
  PR_RETURN_IF_ERROR(Enter("create", r, ""));
  cluster::WriteOptions options;
  options.dry_run = true;
  return ValueOf("POST", r.CollectionPath(ns) + "?dryRun=All",
                 server_->Create(Ref(r), ns, object, options));
}

StatusOr<json> FakeClient::Update(const Resource& r, const std::string& ns, const json& object,
                                  const std::string& subresource) {
  PR_RETURN_IF_ERROR(Enter("update", r, subresource));
  std::string name;
  if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
    name = object["metadata"].value("name", "");
  }
  return ValueOf("PUT", r.ObjectPath(ns, name, subresource),
                 server_->Update(Ref(r), ns, name, object, subresource));
}

StatusOr<json> FakeClient::Patch(const Resource& r, const std::string& ns, const std::string& name,
                                 PatchType type, const json& patch,
                                 const std::string& subresource) {
  PR_RETURN_IF_ERROR(Enter("patch", r, subresource));
  cluster::WriteOptions write;
  if (type == PatchType::kApply) {  // as the HTTPS client sends apply patches
    write.field_manager = kFieldManager;
    write.force = true;
  }
  return ValueOf(
      "PATCH", r.ObjectPath(ns, name, subresource),
      server_->Patch(Ref(r), ns, name, PatchContentType(type), patch.dump(), subresource, write));
}

Status FakeClient::Delete(const Resource& r, const std::string& ns, const std::string& name,
                          const DeleteOptions& options) {
  PR_RETURN_IF_ERROR(Enter("delete", r, ""));
  cluster::DeleteOptions d;
  d.grace_period_seconds = options.grace_period_seconds;
  d.propagation_policy = options.propagation_policy;
  d.precondition_uid = options.precondition_uid;
  d.precondition_resource_version = options.precondition_resource_version;
  return ValueOf("DELETE", r.ObjectPath(ns, name), server_->Delete(Ref(r), ns, name, d)).status();
}

StatusOr<std::unique_ptr<WatchStream>> FakeClient::Watch(const Resource& r, const std::string& ns,
                                                         const ListOptions& options) {
  PR_RETURN_IF_ERROR(Enter("watch", r, ""));
  cluster::ApiError error;
  auto stream = server_->Watch(Ref(r), ns, ClusterListOptions(options, true), &error);
  if (!stream) return ErrorOf("GET", r.CollectionPath(ns) + "?watch=true", error);
  auto w = std::make_shared<FakeWatchState>(server_, std::move(stream));
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(watches_, [](const std::weak_ptr<FakeWatchState>& x) { return x.expired(); });
  watches_.push_back(w);
  return std::unique_ptr<WatchStream>(std::make_unique<FakeWatchStream>(std::move(w)));
}

void FakeClient::InjectError(const std::string& verb, const std::string& resource, Status error,
                             int times) {
  std::lock_guard<std::mutex> lock(mu_);
  injections_.push_back({verb, resource, std::move(error), times});
}

void FakeClient::ClearInjectedErrors() {
  std::lock_guard<std::mutex> lock(mu_);
  injections_.clear();
}

std::map<ApiCall, int> FakeClient::Calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

int FakeClient::CallCount(const std::string& verb, const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [call, count] : calls_) {
    if (call.verb == verb && call.resource == resource) n += count;
  }
  return n;
}

void FakeClient::ResetCalls() {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.clear();
}

void FakeClient::CloseAllWatches(Status error) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& weak : watches_) {
    if (auto w = weak.lock()) w->End(error);
  }
  watches_.clear();
}

void FakeClient::CompactHistory() {
  std::lock_guard<std::mutex> lock(server_->store().mutex());
  server_->store().Compact();
}

void FakeClient::SendBookmarks() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& weak : watches_) {
    if (auto w = weak.lock()) w->stream->RequestBookmark();
  }
}

int FakeClient::OpenWatches() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& weak : watches_) {
    if (auto w = weak.lock(); w && w->Open()) ++n;
  }
  return n;
}

int64_t FakeClient::CurrentResourceVersion() const {
  std::lock_guard<std::mutex> lock(server_->store().mutex());
  return server_->store().current_rv();
}

}  // namespace parallelrun::op::kube
