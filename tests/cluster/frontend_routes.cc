// The resource handlers of Frontend's route table: one per RBAC verb, and the special kinds and
// subresources (access and token reviews, serviceaccounts/token, pods/log).

#include <chrono>
#include <thread>
#include <variant>

#include "tests/cluster/frontend.h"
#include "tests/cluster/frontend_call.h"
#include "tests/cluster/table.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

Json SelfRules(Authorizer& authorizer, const UserInfo& user, const Json& spec) {
  return {{"resourceRules", authorizer.RulesFor(user, spec.value("namespace", ""))},
          {"nonResourceRules",
           Json::array({{{"verbs", {"get"}},
                         {"nonResourceURLs",
                          {"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                           "/openapi/*", "/readyz", "/version", "/version/"}}}})},
          {"incomplete", false}};
}

// What a SubjectAccessReview's spec asks about.
RequestAttributes ReviewAttributes(const Json& spec, const std::string& resource,
                                   const std::string& route_ns) {
  RequestAttributes a;
  if (spec.contains("resourceAttributes")) {
    const Json& ra = spec["resourceAttributes"];
    a.verb = ra.value("verb", "");
    a.group = ra.value("group", "");
    a.resource = ra.value("resource", "");
    a.subresource = ra.value("subresource", "");
    a.ns = resource == "localsubjectaccessreviews" ? route_ns : ra.value("namespace", "");
    a.name = ra.value("name", "");
  } else {
    a.resource_request = false;
    a.verb = spec.value("nonResourceAttributes", Json::object()).value("verb", "");
    a.path = spec.value("nonResourceAttributes", Json::object()).value("path", "");
  }
  return a;
}

// The last `tail` lines of data (all of it when tail < 0).
std::string TailLines(const std::string& data, int64_t tail) {
  if (tail < 0) return data;
  size_t pos = data.size();
  if (pos > 0 && data.back() == '\n') --pos;
  int64_t lines = 0;
  while (pos > 0) {
    if (data[pos - 1] == '\n' && ++lines == tail) break;
    --pos;
  }
  if (tail == 0) pos = data.size();
  return data.substr(pos);
}

Json ContainerState(const Json& pod, const std::string& container) {
  for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
    for (const Json& cs : pod.value("status", Json::object()).value(list, Json::array())) {
      if (cs.value("name", "") == container) return cs.value("state", Json::object());
    }
  }
  return Json::object();
}

// The container a pods/log request reads, or the 400 that says why none.
std::variant<std::string, ApiError> LogContainer(const Json& pod, const std::string& requested,
                                                 const std::string& pod_name) {
  std::vector<std::string> names;
  for (const char* list : {"initContainers", "containers"}) {
    for (const Json& c : pod["spec"].value(list, Json::array()))
      names.push_back(c.value("name", ""));
  }
  std::string container = requested;
  if (container.empty()) {
    container = pod["metadata"]
                    .value("annotations", Json::object())
                    .value("kubectl.kubernetes.io/default-container", "");
  }
  if (container.empty()) {
    if (pod["spec"].value("containers", Json::array()).size() != 1) {
      std::string all;
      for (const std::string& n : names) all += (all.empty() ? "" : " ") + n;
      return BadRequest("a container name must be specified for pod " + pod_name +
                        ", choose one of: [" + all + "]");
    }
    container = pod["spec"]["containers"][0].value("name", "");
  }
  if (std::find(names.begin(), names.end(), container) == names.end()) {
    return BadRequest("container " + container + " is not valid for pod " + pod_name);
  }
  return container;
}

}  // namespace

void Frontend::HandleAccessReview(Call& c) {
  Json body;
  std::string err;
  if (!ParseBody(c.body_text, &body, &err)) {
    c.Fail(BadRequest(err));
    return;
  }
  Json spec = body.value("spec", Json::object());
  Json status;
  if (c.type.resource == "selfsubjectrulesreviews") {
    status = SelfRules(authorizer_, c.user, spec);
  } else {
    UserInfo subject = c.user;
    if (c.type.resource != "selfsubjectaccessreviews") {
      subject = {spec.value("user", ""),
                 spec.value("groups", Json::array()).get<std::vector<std::string>>()};
    }
    bool allowed =
        authorizer_.Allowed(subject, ReviewAttributes(spec, c.type.resource, c.route.ns));
    status = {{"allowed", allowed}};
    if (allowed) status["reason"] = "RBAC: allowed";
  }
  body["apiVersion"] = "authorization.k8s.io/v1";
  body["kind"] = c.type.kind;
  if (!body.contains("metadata")) body["metadata"] = Json::object();
  body["metadata"]["creationTimestamp"] = nullptr;
  body["status"] = status;
  SendJson(c.resp, 201, body);
}

void Frontend::HandleTokenReview(Call& c) {
  Json body;
  std::string err;
  ParseBody(c.body_text, &body, &err);
  if (!body.is_object()) body = Json::object();
  body["apiVersion"] = "authentication.k8s.io/v1";
  body["kind"] = c.type.kind;
  body["metadata"] = {{"creationTimestamp", nullptr}};
  if (c.type.resource == "selfsubjectreviews") {
    body["status"] = {{"userInfo", {{"username", c.user.name}, {"groups", c.user.groups}}}};
  } else {
    UserInfo who;
    bool ok = authorizer_.Authenticate(body.value("spec", Json::object()).value("token", ""), &who);
    body["status"] = {{"authenticated", ok}};
    if (ok) body["status"]["user"] = {{"username", who.name}, {"groups", who.groups}};
  }
  SendJson(c.resp, 201, body);
}

void Frontend::HandleTokenRequest(Call& c) {
  if (c.req.method != "POST") {
    c.Fail(MethodNotAllowed());
    return;
  }
  ApiResult sa = api_->Get(c.ref, c.route.ns, c.route.name);
  if (!sa.ok()) {
    c.Fail(sa.error());
    return;
  }
  Json body;
  std::string err;
  ParseBody(c.body_text, &body, &err);
  if (!body.is_object()) body = Json::object();
  const Json spec = body.value("spec", Json::object());
  int64_t seconds = spec.value("expirationSeconds", int64_t{3600});
  Json out = {
      {"kind", "TokenRequest"},
      {"apiVersion", "authentication.k8s.io/v1"},
      {"metadata",
       {{"name", c.route.name}, {"namespace", c.route.ns}, {"creationTimestamp", NowRfc3339()}}},
      {"spec",
       {{"audiences", spec.value("audiences", Json::array({"https://kubernetes.default.svc"}))},
        {"expirationSeconds", seconds},
        {"boundObjectRef", nullptr}}},
      {"status",
       {{"token", api_->ServiceAccountToken(c.route.ns, c.route.name)},
        {"expirationTimestamp",
         FormatRfc3339(std::chrono::system_clock::now() + std::chrono::seconds(seconds))}}}};
  SendJson(c.resp, 201, out);
}

void Frontend::HandlePodLog(Call& c) {
  ApiResult pod = api_->Get(c.ref, c.route.ns, c.route.name);
  if (!pod.ok()) {
    c.Fail(pod.error());
    return;
  }
  const Json& p = pod.value();
  auto chosen = LogContainer(p, c.q["container"], c.route.name);
  if (auto* e = std::get_if<ApiError>(&chosen)) {
    c.Fail(*e);
    return;
  }
  const std::string container = std::get<std::string>(chosen);
  const bool previous = IsTrue(c.q["previous"]);
  const std::string file = state_dir_ + "/logs/" + c.route.ns + "/" + c.route.name + "/" +
                           container + (previous ? ".previous.log" : ".log");
  auto text = ReadFileText(file);
  if (!text) {
    Json st = ContainerState(p, container);
    if (previous) {
      c.Fail(BadRequest("previous terminated container \"" + container + "\" in pod \"" +
                        c.route.name + "\" not found"));
      return;
    }
    if (st.empty() || st.contains("waiting")) {
      std::string reason = st.contains("waiting")
                               ? st["waiting"].value("reason", std::string("ContainerCreating"))
                               : "ContainerCreating";
      c.Fail(BadRequest("container \"" + container + "\" in pod \"" + c.route.name +
                        "\" is waiting to start: " + reason));
      return;
    }
    text = "";
  }
  std::string data = TailLines(*text, ToInt(c.q["tailLines"], -1));
  int64_t limit = ToInt(c.q["limitBytes"], -1);
  if (limit >= 0 && static_cast<int64_t>(data.size()) > limit) {
    data.resize(static_cast<size_t>(limit));
  }
  if (!IsTrue(c.q["follow"])) {
    c.resp.Send(200, "text/plain", data);
    return;
  }
  if (!c.resp.BeginStream("text/plain")) return;
  c.resp.Write(data);
  if (FollowLog(c, file, container, p["metadata"].value("uid", ""), text->size())) {
    c.resp.EndStream();
  }
}

bool Frontend::FollowLog(Call& c, const std::string& file, const std::string& container,
                         const std::string& uid, size_t offset) {
  while (!stopping_.load() && !c.resp.PeerClosed()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now_text = ReadFileText(file);
    if (now_text && now_text->size() > offset) {
      if (!c.resp.Write(now_text->substr(offset))) return false;
      offset = now_text->size();
      continue;
    }
    ApiResult cur = api_->Get(c.ref, c.route.ns, c.route.name);
    if (!cur.ok()) return true;
    if (cur.value()["metadata"].value("uid", "") != uid) return true;
    if (ContainerState(cur.value(), container).contains("terminated")) {
      auto last = ReadFileText(file);
      if (last && last->size() > offset) c.resp.Write(last->substr(offset));
      return true;
    }
  }
  return true;
}

namespace {

ListOptions ListOptionsFrom(std::map<std::string, std::string>& q) {
  ListOptions lo;
  lo.label_selector = q["labelSelector"];
  lo.field_selector = q["fieldSelector"];
  lo.resource_version = q["resourceVersion"];
  lo.resource_version_match = q["resourceVersionMatch"];
  lo.limit = ToInt(q["limit"], 0);
  lo.continue_token = q["continue"];
  lo.allow_watch_bookmarks = IsTrue(q["allowWatchBookmarks"]);
  lo.send_initial_events = IsTrue(q["sendInitialEvents"]);
  lo.timeout_seconds = ToInt(q["timeoutSeconds"], 0);
  return lo;
}

Json RowsOf(const ResourceType& type, const Json& object) {
  return RenderTable(type, {object},
                     {{"resourceVersion", object["metadata"].value("resourceVersion", "")}});
}

}  // namespace

void Frontend::HandleList(Call& c) {
  ApiResult r = api_->List(c.ref, c.route.ns, ListOptionsFrom(c.q));
  if (!r.ok()) {
    c.Fail(r.error());
    return;
  }
  Json v = r.value();
  AsVersion(v, c.type, c.route.version);
  if (c.table) {
    std::vector<Json> items(v["items"].begin(), v["items"].end());
    SendJson(c.resp, 200, RenderTable(c.type, items, v["metadata"]), kTableType);
  } else {
    SendJson(c.resp, 200, v);
  }
}

void Frontend::HandleWatch(Call& c) {
  ApiError err;
  auto w = api_->Watch(c.ref, c.route.ns, ListOptionsFrom(c.q), &err);
  if (!w) {
    c.Fail(err);
    return;
  }
  if (!c.resp.BeginStream(c.table ? kTableType : kJsonType)) return;
  while (!stopping_.load()) {
    auto ev = w->Next(std::chrono::milliseconds(500));
    if (ev) {
      Json obj = ev->object;
      if (c.table && (ev->type != "ERROR" && ev->type != "BOOKMARK")) {
        AsVersion(obj, c.type, c.route.version);
        obj = RowsOf(c.type, obj);
      } else if (ev->type != "ERROR") {
        AsVersion(obj, c.type, c.route.version);
      }
      if (!c.resp.Write(Json{{"type", ev->type}, {"object", obj}}.dump() + "\n")) return;
      continue;
    }
    if (w->Closed() || c.resp.PeerClosed()) break;
  }
  c.resp.EndStream();
}

void Frontend::HandleGet(Call& c) {
  ApiResult r = api_->Get(c.ref, c.route.ns, c.route.name, c.route.subresource);
  if (r.ok() && c.table) {
    Json v = r.value();
    AsVersion(v, c.type, c.route.version);
    SendJson(c.resp, 200, RowsOf(c.type, v), kTableType);
    return;
  }
  c.Reply(r);
}

void Frontend::AdmitAndWrite(Call& c, const std::string& operation,
                             const std::function<ApiResult(const WriteOptions&)>& write) {
  if (auto denied = admission_.Admit(operation, c.type, c.route.version, c.route.ns, c.route.name,
                                     c.route.subresource, c.user, c.wopts, write)) {
    c.Fail(*denied);
    return;
  }
  c.Reply(write(c.wopts));
}

void Frontend::HandleCreate(Call& c) {
  if (!c.route.name.empty()) {
    c.Fail(MethodNotAllowed());
    return;
  }
  Json body;
  std::string err;
  if (!ParseBody(c.body_text, &body, &err)) {
    c.Fail(BadRequest(err));
    return;
  }
  AdmitAndWrite(c, "CREATE",
                [&](const WriteOptions& o) { return api_->Create(c.ref, c.route.ns, body, o); });
}

void Frontend::HandleUpdate(Call& c) {
  Json body;
  std::string err;
  if (!ParseBody(c.body_text, &body, &err)) {
    c.Fail(BadRequest(err));
    return;
  }
  if (c.route.name.empty()) {
    c.Fail(MethodNotAllowed());
    return;
  }
  AdmitAndWrite(c, "UPDATE", [&](const WriteOptions& o) {
    return api_->Update(c.ref, c.route.ns, c.route.name, body, c.route.subresource, o);
  });
}

void Frontend::HandlePatch(Call& c) {
  AdmitAndWrite(c, "UPDATE", [&](const WriteOptions& o) {
    return api_->Patch(c.ref, c.route.ns, c.route.name, c.req.Header("content-type"), c.body_text,
                       c.route.subresource, o);
  });
}

namespace {

DeleteOptions DeleteOptionsFrom(const std::string& body_text, std::map<std::string, std::string>& q,
                                bool dry_run) {
  DeleteOptions dopts;
  Json body;
  std::string err;
  if (!Trim(body_text).empty() && ParseBody(body_text, &body, &err) && body.is_object()) {
    dopts.propagation_policy = body.value("propagationPolicy", "");
    if (body.contains("gracePeriodSeconds") && body["gracePeriodSeconds"].is_number()) {
      dopts.grace_period_seconds = body["gracePeriodSeconds"].get<int64_t>();
    }
    if (body.value("orphanDependents", false)) dopts.propagation_policy = "Orphan";
    if (body.contains("preconditions") && body["preconditions"].is_object()) {
      dopts.precondition_uid = body["preconditions"].value("uid", "");
      dopts.precondition_resource_version = body["preconditions"].value("resourceVersion", "");
    }
    for (const Json& d : body.value("dryRun", Json::array())) {
      if (d == "All") dopts.dry_run = true;
    }
  }
  if (!q["propagationPolicy"].empty()) dopts.propagation_policy = q["propagationPolicy"];
  if (!q["gracePeriodSeconds"].empty()) {
    dopts.grace_period_seconds = ToInt(q["gracePeriodSeconds"], 30);
  }
  dopts.dry_run = dopts.dry_run || dry_run;
  return dopts;
}

}  // namespace

void Frontend::HandleDelete(Call& c) {
  const DeleteOptions dopts = DeleteOptionsFrom(c.body_text, c.q, c.wopts.dry_run);
  if (!c.route.name.empty()) {
    c.Reply(api_->Delete(c.ref, c.route.ns, c.route.name, dopts));
    return;
  }
  ListOptions lo;
  lo.label_selector = c.q["labelSelector"];
  lo.field_selector = c.q["fieldSelector"];
  ApiResult list = api_->List(c.ref, c.route.ns, lo);
  if (!list.ok()) {
    c.Fail(list.error());
    return;
  }
  Json deleted = Json::array();
  for (const Json& item : list.value()["items"]) {
    ApiResult r = api_->Delete(c.ref, item["metadata"].value("namespace", ""),
                               item["metadata"].value("name", ""), dopts);
    if (r.ok()) deleted.push_back(r.value());
  }
  Json out = list.value();
  out["items"] = deleted;
  AsVersion(out, c.type, c.route.version);
  SendJson(c.resp, 200, out);
}

}  // namespace parallelrun::rt::cluster
