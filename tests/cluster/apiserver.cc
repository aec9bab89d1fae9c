#include "tests/cluster/apiserver.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <variant>

#include "tests/cluster/apiserver_impl.h"
#include "tests/cluster/patch.h"
#include "tests/cluster/schema.h"
#include "tests/cluster/selector.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Errors and bodies

Json ApiError::ToStatus() const {
  Json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = details;
  return s;
}

ApiError MakeError(int code, const std::string& reason, const std::string& message) {
  return ApiError{code, reason, message, Json()};
}

ApiError BadRequest(const std::string& message) { return MakeError(400, "BadRequest", message); }

ApiError NotFoundError(const ResourceType& type, const std::string& name) {
  ApiError e = MakeError(404, "NotFound", type.QualifiedResource() + " \"" + name + "\" not found");
  e.details = {{"name", name}, {"kind", type.resource}};
  if (!type.group.empty()) e.details["group"] = type.group;
  return e;
}

namespace {

Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json();
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      for (const auto& n : node) arr.push_back(YamlToJson(n));
      return arr;
    }
    case YAML::NodeType::Map: {
      Json obj = Json::object();
      for (const auto& kv : node) obj[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return obj;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = node.Scalar();
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") return s;
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
      if (s == "null" || s == "~" || s == "Null" || s == "NULL" || s.empty()) return Json();
      static const std::regex kInt("^[-+]?[0-9]+$");
      static const std::regex kFloat("^[-+]?([0-9]*\\.[0-9]+|[0-9]+\\.?[0-9]*)([eE][-+]?[0-9]+)?$");
      if (std::regex_match(s, kInt)) {
        try {
          return std::stoll(s);
        } catch (...) {
          return s;
        }
      }
      if (std::regex_match(s, kFloat)) return std::stod(s);
      return s;
    }
  }
  return Json();
}

}  // namespace

bool ParseBody(const std::string& body, Json* out, std::string* error) {
  std::string trimmed = Trim(body);
  if (!trimmed.empty() && (trimmed[0] == '{' || trimmed[0] == '[')) {
    *out = Json::parse(trimmed, nullptr, false);
    if (!out->is_discarded()) return true;
  }
  try {
    *out = YamlToJson(YAML::Load(body));
    return true;
  } catch (const std::exception& e) {
    *error = std::string("the request body is neither JSON nor YAML: ") + e.what();
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Watch

namespace {

class StoreWatch : public WatchStream {
 public:
  StoreWatch(Store* store, ResourceType type, std::string ns, LabelSelector labels,
             FieldSelector fields, int64_t from_rv, const ListOptions& opts)
      : store_(store),
        type_(std::move(type)),
        ns_(std::move(ns)),
        labels_(std::move(labels)),
        fields_(std::move(fields)),
        scan_rv_(from_rv),
        bookmarks_(opts.allow_watch_bookmarks) {
    if (opts.timeout_seconds > 0) {
      deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(opts.timeout_seconds);
    }
    next_bookmark_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  }

  void AddInitial(std::vector<Json> objects, bool end_bookmark) {
    for (Json& o : objects) pending_.push_back({"ADDED", std::move(o)});
    if (end_bookmark) {
      pending_.push_back({"BOOKMARK", Bookmark(true)});
    }
  }

  std::optional<WatchEvent> Next(std::chrono::milliseconds timeout) override {
    if (!pending_.empty()) return Pop();
    if (closed_) return std::nullopt;
    auto until = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(store_->mutex());
    while (true) {
      std::vector<const Store::Event*> events;
      if (!store_->EventsAfter(scan_rv_, &events)) {
        pending_.push_back(
            {"ERROR", ApiError{410, "Expired",
                               "too old resource version: " + std::to_string(scan_rv_) + " (" +
                                   std::to_string(store_->oldest_watchable_rv()) + ")",
                               Json()}
                          .ToStatus()});
        closed_ = true;
        return Pop();
      }
      for (const Store::Event* e : events) {
        scan_rv_ = e->rv;
        if (e->type_key != type_.TypeKey()) continue;
        if (!ns_.empty() && e->ns != ns_) continue;
        bool now = Matches(e->object);
        bool before = !e->previous.is_null() && Matches(e->previous);
        if (e->type == "ADDED" && now) {
          pending_.push_back({"ADDED", e->object});
        } else if (e->type == "MODIFIED") {
          if (now && before) pending_.push_back({"MODIFIED", e->object});
          if (now && !before) pending_.push_back({"ADDED", e->object});
          if (!now && before) pending_.push_back({"DELETED", e->object});
        } else if (e->type == "DELETED" && (now || before)) {
          pending_.push_back({"DELETED", e->object});
        }
      }
      if (!pending_.empty()) return Pop();
      auto clock = std::chrono::steady_clock::now();
      if (deadline_ && clock >= *deadline_) {
        closed_ = true;
        return std::nullopt;
      }
      if (bookmarks_ && (clock >= next_bookmark_ || bookmark_requested_.exchange(false))) {
        next_bookmark_ = clock + std::chrono::seconds(5);
        return WatchEvent{"BOOKMARK", Bookmark(false)};
      }
      if (clock >= until) return std::nullopt;
      auto wake = until;
      if (deadline_) wake = std::min(wake, *deadline_);
      if (bookmarks_) wake = std::min(wake, next_bookmark_);
      store_->WaitForEventAfter(lock, scan_rv_, wake);
    }
  }

  bool Closed() const override { return closed_ && pending_.empty(); }

  void RequestBookmark() override { bookmark_requested_ = true; }

 private:
  Json Bookmark(bool initial_end) const {
    Json md = {{"resourceVersion", std::to_string(scan_rv_)}};
    if (initial_end) md["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    return {{"kind", type_.kind}, {"apiVersion", type_.ApiVersion()}, {"metadata", md}};
  }

  bool Matches(const Json& o) const {
    return labels_.Matches(o["metadata"].value("labels", Json::object())) && fields_.Matches(o);
  }

  WatchEvent Pop() {
    WatchEvent e = std::move(pending_.front());
    pending_.pop_front();
    return e;
  }

  Store* store_;
  ResourceType type_;
  std::string ns_;
  LabelSelector labels_;
  FieldSelector fields_;
  int64_t scan_rv_;
  bool bookmarks_;
  bool closed_ = false;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::chrono::steady_clock::time_point next_bookmark_;
  std::atomic<bool> bookmark_requested_{false};
  std::deque<WatchEvent> pending_;
};

struct Selectors {
  LabelSelector labels;
  FieldSelector fields;
};

std::variant<Selectors, ApiError> ParseSelectors(const ResourceType& t, const ListOptions& o) {
  std::string err;
  auto labels = LabelSelector::Parse(o.label_selector, &err);
  if (!labels) return BadRequest(err);
  auto fields = FieldSelector::Parse(o.field_selector, &err);
  if (!fields) return BadRequest(err);
  for (const std::string& f : fields->Fields()) {
    if (f == "metadata.name" || f == "metadata.namespace") continue;
    if (std::find(t.field_selectors.begin(), t.field_selectors.end(), f) !=
        t.field_selectors.end()) {
      continue;
    }
    return BadRequest("field label not supported: " + f);
  }
  return Selectors{*labels, *fields};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ApiServer

ApiServer::ApiServer(std::string state_dir)
    : state_dir_(std::move(state_dir)),
      store_(state_dir_.empty() ? "" : state_dir_ + "/store"),
      impl_(std::make_unique<Impl>(this)) {}

ApiServer::~ApiServer() { Stop(); }

bool ApiServer::Start(std::string* error) {
  if (!store_.Load(error)) return false;
  int64_t start_rv = 0;
  {
    std::lock_guard<std::mutex> lock(store_.mutex());
    for (const Json* crd : store_.Objects("apiextensions.k8s.io/customresourcedefinitions", "")) {
      registry_.RegisterCrd(*crd);
    }
    impl_->Bootstrap();
    // Tokens of existing service accounts.
    for (const Json* sa : store_.Objects("/serviceaccounts", "")) {
      impl_->TokenLocked((*sa)["metadata"].value("namespace", ""),
                         (*sa)["metadata"].value("name", ""));
    }
    start_rv = store_.current_rv();
  }
  impl_->controller_ = std::thread([this, start_rv] { impl_->ControllerLoop(start_rv); });
  return true;
}

void ApiServer::Stop() {
  if (impl_->stopping_.exchange(true)) return;
  store_.Shutdown();
  if (impl_->controller_.joinable()) impl_->controller_.join();
}

void ApiServer::SetServingAddress(const std::string& host, int port) {
  std::lock_guard<std::mutex> lock(store_.mutex());
  impl_->serving_host_ = host;
  impl_->serving_port_ = port;
  impl_->PublishKubernetesService();
}

std::string ApiServer::ServiceAccountToken(const std::string& ns, const std::string& name) {
  return impl_->TokenLocked(ns, name);
}

std::string ApiServer::ServiceAccountForToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(impl_->token_mu_);
  auto it = impl_->sa_tokens_.find(token);
  return it == impl_->sa_tokens_.end() ? "" : it->second;
}

ApiResult ApiServer::Get(const ResourceRef& ref, const std::string& ns, const std::string& name,
                         const std::string& subresource) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && subresource != "status") {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  const Json* o = store_.Find(type.TypeKey(), impl_->NsFor(type, ns), name);
  if (o == nullptr) return NotFoundError(type, name);
  return ApiResult(*o);
}

ApiResult ApiServer::List(const ResourceRef& ref, const std::string& ns,
                          const ListOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  auto sel = ParseSelectors(type, options);
  if (auto* e = std::get_if<ApiError>(&sel)) return *e;
  const Selectors& s = std::get<Selectors>(sel);
  std::string start_after;
  int64_t list_rv = 0;
  if (!options.continue_token.empty()) {
    auto decoded = Base64Decode(options.continue_token);
    Json tok = decoded ? Json::parse(*decoded, nullptr, false) : Json();
    if (!tok.is_object()) {
      return BadRequest("continue key is not valid: illegal base64 data");
    }
    start_after = tok.value("start", "");
    list_rv = tok.value("rv", int64_t{0});
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  if (options.resource_version_match == "Exact" && !options.resource_version.empty() &&
      std::atoll(options.resource_version.c_str()) != store_.current_rv()) {
    return MakeError(410, "Expired",
                     "too old resource version: " + options.resource_version + " (" +
                         std::to_string(store_.current_rv()) + ")");
  }
  if (list_rv != 0 && list_rv < store_.oldest_watchable_rv()) {
    // As kube-apiserver once etcd compacted the list's snapshot away.
    return MakeError(410, "Expired",
                     "The provided continue parameter is too old to display a consistent list "
                     "result. You can start a new list without the continue parameter.");
  }
  if (list_rv == 0) list_rv = store_.current_rv();
  Json items = Json::array();
  std::string last_key;
  bool more = false;
  int64_t remaining = 0;
  for (const Json* o : store_.Objects(type.TypeKey(), impl_->NsFor(type, ns))) {
    const Json& md = (*o)["metadata"];
    std::string key = md.value("namespace", "") + "/" + md.value("name", "");
    if (!start_after.empty() && key <= start_after) continue;
    if (!s.labels.Matches(md.value("labels", Json::object())) || !s.fields.Matches(*o)) continue;
    if (options.limit > 0 && static_cast<int64_t>(items.size()) >= options.limit) {
      more = true;
      ++remaining;
      continue;
    }
    items.push_back(*o);
    last_key = key;
  }
  Json md = {{"resourceVersion", std::to_string(list_rv)}};
  if (more) {
    md["continue"] = Base64Encode(Json{{"rv", list_rv}, {"start", last_key}}.dump());
    if (s.labels.empty() && s.fields.empty()) md["remainingItemCount"] = remaining;
  }
  return ApiResult(Json{{"kind", type.list_kind},
                        {"apiVersion", type.ApiVersion()},
                        {"metadata", md},
                        {"items", items}});
}

ApiResult ApiServer::Create(const ResourceRef& ref, const std::string& ns, Json object,
                            const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->CreateLocked(std::get<ResourceType>(t), ns, std::move(object), options);
}

ApiResult ApiServer::Update(const ResourceRef& ref, const std::string& ns, const std::string& name,
                            Json object, const std::string& subresource,
                            const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && (subresource != "status" || !type.HasStatus())) {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->UpdateLocked(type, ns, name, std::move(object), subresource, options, true);
}

ApiResult ApiServer::Patch(const ResourceRef& ref, const std::string& ns, const std::string& name,
                           const std::string& content_type, const std::string& body,
                           const std::string& subresource, const WriteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  const ResourceType& type = std::get<ResourceType>(t);
  if (!subresource.empty() && (subresource != "status" || !type.HasStatus())) {
    return MakeError(404, "NotFound", "the server could not find the requested resource");
  }
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->PatchLocked(type, ns, name, content_type, body, subresource, options);
}

ApiResult ApiServer::Delete(const ResourceRef& ref, const std::string& ns, const std::string& name,
                            const DeleteOptions& options) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) return *e;
  std::lock_guard<std::mutex> lock(store_.mutex());
  return impl_->DeleteLocked(std::get<ResourceType>(t), ns, name, options);
}

std::unique_ptr<WatchStream> ApiServer::Watch(const ResourceRef& ref, const std::string& ns,
                                              const ListOptions& options, ApiError* error) {
  auto t = impl_->Resolve(ref);
  if (auto* e = std::get_if<ApiError>(&t)) {
    *error = *e;
    return nullptr;
  }
  const ResourceType& type = std::get<ResourceType>(t);
  auto sel = ParseSelectors(type, options);
  if (auto* e = std::get_if<ApiError>(&sel)) {
    *error = *e;
    return nullptr;
  }
  Selectors& s = std::get<Selectors>(sel);
  std::lock_guard<std::mutex> lock(store_.mutex());
  const std::string& rv = options.resource_version;
  bool initial = rv.empty() || rv == "0" || options.send_initial_events;
  int64_t from = store_.current_rv();
  if (!rv.empty() && rv != "0") {
    char* end = nullptr;
    long long v = std::strtoll(rv.c_str(), &end, 10);
    if (end == nullptr || *end != '\0') {
      *error = BadRequest("resourceVersion: Invalid value: \"" + rv +
                          "\": must be an integer resource version");
      return nullptr;
    }
    if (!options.send_initial_events) {
      if (v < store_.oldest_watchable_rv()) {
        *error = MakeError(410, "Expired",
                           "too old resource version: " + rv + " (" +
                               std::to_string(store_.oldest_watchable_rv()) + ")");
        return nullptr;
      }
      from = std::min<int64_t>(v, store_.current_rv());
    }
  }
  auto w = std::make_unique<StoreWatch>(&store_, type, impl_->NsFor(type, ns), s.labels, s.fields,
                                        from, options);
  if (initial) {
    std::vector<Json> objs;
    for (const Json* o : store_.Objects(type.TypeKey(), impl_->NsFor(type, ns))) {
      if (s.labels.Matches((*o)["metadata"].value("labels", Json::object())) &&
          s.fields.Matches(*o)) {
        objs.push_back(*o);
      }
    }
    w->AddInitial(std::move(objs), options.send_initial_events && options.allow_watch_bookmarks);
  }
  return w;
}

}  // namespace parallelrun::rt::cluster
