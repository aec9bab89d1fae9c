#include "tests/cluster/frontend.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/cluster/discovery.h"
#include "tests/cluster/protobuf.h"
#include "tests/cluster/table.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

const char* kJson = "application/json";
const char* kTable = "application/json;as=Table;v=v1;g=meta.k8s.io";

void SendJson(HttpResponder& resp, int code, const Json& body, const char* type = kJson) {
  resp.Send(code, type, body.dump());
}

void SendError(HttpResponder& resp, const ApiError& e) { SendJson(resp, e.code, e.ToStatus()); }

bool WantsTable(const HttpRequest& req) {
  return req.Header("accept").find("as=Table") != std::string::npos;
}

std::string BearerToken(const HttpRequest& req) {
  std::string h = req.Header("authorization");
  if (h.size() > 7 && ToLower(h.substr(0, 7)) == "bearer ") return Trim(h.substr(7));
  return "";
}

struct Route {
  std::string group;
  std::string version;
  std::string ns;
  std::string resource;
  std::string name;
  std::string subresource;
};

// Parses /api/v1/... and /apis/<g>/<v>/... resource paths.
std::optional<Route> ParseRoute(const std::vector<std::string>& seg) {
  Route r;
  size_t i;
  if (seg.size() >= 3 && seg[0] == "api") {
    r.version = seg[1];
    i = 2;
  } else if (seg.size() >= 4 && seg[0] == "apis") {
    r.group = seg[1];
    r.version = seg[2];
    i = 3;
  } else {
    return std::nullopt;
  }
  std::vector<std::string> rest(seg.begin() + static_cast<long>(i), seg.end());
  if (rest.size() >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize") {
    r.ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  }
  if (rest.empty() || rest.size() > 3) return std::nullopt;
  r.resource = rest[0];
  if (rest.size() >= 2) r.name = rest[1];
  if (rest.size() == 3) r.subresource = rest[2];
  return r;
}

// Sets apiVersion to the requested version (CRDs may serve several).
void AsVersion(Json& o, const ResourceType& t, const std::string& version) {
  if (t.version == version || !o.is_object()) return;
  std::string av = t.group.empty() ? version : t.group + "/" + version;
  o["apiVersion"] = av;
  if (o.contains("items")) {
    for (Json& item : o["items"]) item["apiVersion"] = av;
  }
}

// Booleans in queries: the Python client sends "True".
bool IsTrue(const std::string& s) { return ToLower(s) == "true" || s == "1"; }

int64_t ToInt(const std::string& s, int64_t fallback) {
  if (s.empty()) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  return (end != nullptr && *end == '\0') ? v : fallback;
}

}  // namespace

Frontend::Frontend(ApiServer* api, std::string admin_token, std::string state_dir)
    : api_(api), authorizer_(api, std::move(admin_token)), state_dir_(std::move(state_dir)) {}

void Frontend::Audit(const UserInfo& user, const RequestAttributes& attrs, bool allowed) {
  if (user.name.rfind("system:serviceaccount:", 0) != 0) return;
  const Json line = {{"user", user.name},
                     {"verb", attrs.verb},
                     {"group", attrs.group},
                     {"resource", attrs.resource},
                     {"subresource", attrs.subresource},
                     {"namespace", attrs.ns},
                     {"allowed", allowed}};
  const std::string text = line.dump() + "\n";
  std::lock_guard<std::mutex> lock(audit_mu_);
  if (FILE* f = std::fopen((state_dir_ + "/audit.log").c_str(), "a")) {
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
}

void Frontend::Handle(const HttpRequest& req, HttpResponder& resp) {
  std::string path = req.path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto q = ParseQuery(req.query);
  if (path == "/healthz" || path == "/livez" || path == "/readyz") {
    resp.Send(200, "text/plain; charset=utf-8", "ok");
    return;
  }
  if (path == "/version") {
    SendJson(resp, 200,
             {{"major", "1"},
              {"minor", "32"},
              {"gitVersion", "v1.32.4"},
              {"gitCommit", "59526cd4867447956156ae3a602fcbac10a2c335"},
              {"gitTreeState", "clean"},
              {"buildDate", "2025-04-22T16:02:27Z"},
              {"goVersion", "go1.23.6"},
              {"compiler", "gc"},
              {"platform", "linux/amd64"}});
    return;
  }
  UserInfo user;
  if (!authorizer_.Authenticate(BearerToken(req), &user)) {
    SendError(resp, MakeError(401, "Unauthorized", "Unauthorized"));
    return;
  }
  std::string as_user = req.Header("impersonate-user");
  if (!as_user.empty()) {
    if (!user.IsMaster()) {
      SendError(resp, MakeError(403, "Forbidden",
                                "users \"" + as_user + "\" is forbidden: User \"" + user.name +
                                    "\" cannot impersonate resource \"users\" in API group \"\" "
                                    "at the cluster scope"));
      return;
    }
    UserInfo imp{as_user, {}};
    std::string groups = req.Header("impersonate-group");
    for (const std::string& g : Split(groups, ',')) {
      if (!Trim(g).empty()) imp.groups.push_back(Trim(g));
    }
    std::vector<std::string> parts = Split(as_user, ':');
    if (parts.size() == 4 && parts[0] == "system" && parts[1] == "serviceaccount") {
      imp.groups.push_back("system:serviceaccounts");
      imp.groups.push_back("system:serviceaccounts:" + parts[2]);
    }
    imp.groups.push_back("system:authenticated");
    user = imp;
  }

  std::vector<std::string> seg;
  for (const std::string& s : Split(path, '/')) {
    if (!s.empty()) seg.push_back(s);
  }
  auto non_resource = [&]() {
    RequestAttributes a;
    a.resource_request = false;
    a.verb = ToLower(req.method);
    a.path = path;
    if (!authorizer_.Allowed(user, a)) {
      SendError(resp, MakeError(403, "Forbidden", Authorizer::ForbiddenMessage(user, a)));
      return false;
    }
    return true;
  };
  const std::string accept = req.Header("accept");
  // Discovery.
  if (path == "/api" || path == "/apis") {
    if (!non_resource()) return;
    bool core = path == "/api";
    if (accept.find("as=APIGroupDiscoveryList") != std::string::npos) {
      // Answer the first aggregated version the client lists, labelled with it.
      size_t v2 = accept.find("v=v2;");
      size_t v2b = accept.find("v=v2beta1");
      std::string version =
          (v2 != std::string::npos && (v2b == std::string::npos || v2 < v2b)) ? "v2" : "v2beta1";
      if (v2 == std::string::npos && v2b == std::string::npos) version = "v2";
      std::string ct =
          "application/json;g=apidiscovery.k8s.io;v=" + version + ";as=APIGroupDiscoveryList";
      resp.Send(200, ct, AggregatedDiscovery(api_->registry(), core, version).dump());
      return;
    }
    SendJson(resp, 200,
             core ? LegacyApiVersions(server_address_) : LegacyGroupList(api_->registry()));
    return;
  }
  if (seg.size() == 2 && seg[0] == "api") {
    if (!non_resource()) return;
    auto doc = LegacyResourceList(api_->registry(), "", seg[1]);
    if (!doc) {
      SendError(resp,
                MakeError(404, "NotFound", "the server could not find the requested resource"));
    } else {
      SendJson(resp, 200, *doc);
    }
    return;
  }
  if ((seg.size() == 2 || seg.size() == 3) && seg[0] == "apis") {
    if (!non_resource()) return;
    auto doc = seg.size() == 2 ? LegacyGroup(api_->registry(), seg[1])
                               : LegacyResourceList(api_->registry(), seg[1], seg[2]);
    if (!doc) {
      SendError(resp,
                MakeError(404, "NotFound", "the server could not find the requested resource"));
    } else {
      SendJson(resp, 200, *doc);
    }
    return;
  }
  if (!seg.empty() && seg[0] == "openapi") {
    if (!non_resource()) return;
    if (path == "/openapi/v3") {
      SendJson(resp, 200, OpenApiV3Root(api_->registry()));
      return;
    }
    if (path.rfind("/openapi/v3/", 0) == 0) {
      auto doc = OpenApiV3Document(api_->registry(), path.substr(12));
      if (doc) {
        SendJson(resp, 200, *doc);
        return;
      }
    }
    SendError(resp, MakeError(404, "NotFound", "the server could not find the requested resource"));
    return;
  }

  auto route = ParseRoute(seg);
  if (!route) {
    SendError(resp, MakeError(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  auto type = api_->registry().Find(route->group, route->resource);
  if (!type || std::find(type->versions.begin(), type->versions.end(), route->version) ==
                   type->versions.end()) {
    SendError(resp, MakeError(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  if (!type->namespaced && !route->ns.empty()) {
    SendError(resp, MakeError(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  if (!route->subresource.empty() && std::find(type->subresources.begin(), type->subresources.end(),
                                               route->subresource) == type->subresources.end()) {
    SendError(resp, MakeError(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  const ResourceRef ref{type->group, type->resource};
  const bool watch = IsTrue(q["watch"]);
  RequestAttributes attrs;
  attrs.group = type->group;
  attrs.resource = type->resource;
  attrs.subresource = route->subresource;
  attrs.ns = route->ns;
  attrs.name = route->name;
  if (req.method == "GET") {
    attrs.verb = route->name.empty() ? (watch ? "watch" : "list") : "get";
  } else if (req.method == "POST") {
    attrs.verb = "create";
  } else if (req.method == "PUT") {
    attrs.verb = "update";
  } else if (req.method == "PATCH") {
    attrs.verb = "patch";
  } else if (req.method == "DELETE") {
    attrs.verb = route->name.empty() ? "deletecollection" : "delete";
  } else {
    SendError(resp, MakeError(405, "MethodNotAllowed",
                              "the server does not allow this method on the requested resource"));
    return;
  }
  const bool allowed = authorizer_.Allowed(user, attrs);
  Audit(user, attrs, allowed);
  if (!allowed) {
    SendError(resp, MakeError(403, "Forbidden", Authorizer::ForbiddenMessage(user, attrs)));
    return;
  }

  // Bodies are JSON or YAML, or protobuf for the few kinds kubectl's typed clients send that
  // way (see protobuf.h).
  std::string body_text = req.body;
  std::string body_type = ToLower(req.Header("content-type"));
  if (!req.body.empty() && body_type.find("protobuf") != std::string::npos) {
    std::string err;
    auto decoded = DecodeKubernetesProtobuf(req.body, &err);
    if (!decoded) {
      SendError(resp, MakeError(415, "UnsupportedMediaType", err));
      return;
    }
    body_text = decoded->dump();
  } else if (!req.body.empty() && body_type.find("cbor") != std::string::npos) {
    SendError(resp, MakeError(415, "UnsupportedMediaType",
                              "the body of the request was in an unknown format - accepted media "
                              "types include: application/json, application/yaml"));
    return;
  }
  WriteOptions wopts;
  wopts.dry_run = q["dryRun"] == "All";
  if (q.count("dryRun") && !q["dryRun"].empty() && q["dryRun"] != "All") {
    SendError(resp, BadRequest("dryRun: Unsupported value: \"" + q["dryRun"] +
                               "\": supported values: \"All\""));
    return;
  }
  wopts.field_manager = q["fieldManager"];
  wopts.field_validation = q["fieldValidation"];
  wopts.force = IsTrue(q["force"]);
  const bool table = WantsTable(req);

  auto reply = [&](const ApiResult& r) {
    if (!r.ok()) {
      SendError(resp, r.error());
      return;
    }
    Json v = r.value();
    AsVersion(v, *type, route->version);
    SendJson(resp, r.code(), v);
  };

  // Review kinds: answered, never stored.
  if (type->group == "authorization.k8s.io" && req.method == "POST") {
    Json body;
    std::string err;
    if (!ParseBody(body_text, &body, &err)) {
      SendError(resp, BadRequest(err));
      return;
    }
    Json spec = body.value("spec", Json::object());
    Json status;
    if (type->resource == "selfsubjectrulesreviews") {
      status = {{"resourceRules", authorizer_.RulesFor(user, spec.value("namespace", ""))},
                {"nonResourceRules",
                 Json::array({{{"verbs", {"get"}},
                               {"nonResourceURLs",
                                {"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                 "/openapi", "/openapi/*", "/readyz", "/version", "/version/"}}}})},
                {"incomplete", false}};
    } else {
      UserInfo subject = user;
      if (type->resource != "selfsubjectaccessreviews") {
        subject = {spec.value("user", ""),
                   spec.value("groups", Json::array()).get<std::vector<std::string>>()};
      }
      RequestAttributes a;
      if (spec.contains("resourceAttributes")) {
        const Json& ra = spec["resourceAttributes"];
        a.verb = ra.value("verb", "");
        a.group = ra.value("group", "");
        a.resource = ra.value("resource", "");
        a.subresource = ra.value("subresource", "");
        a.ns =
            type->resource == "localsubjectaccessreviews" ? route->ns : ra.value("namespace", "");
        a.name = ra.value("name", "");
      } else {
        a.resource_request = false;
        a.verb = spec.value("nonResourceAttributes", Json::object()).value("verb", "");
        a.path = spec.value("nonResourceAttributes", Json::object()).value("path", "");
      }
      bool allowed = authorizer_.Allowed(subject, a);
      status = {{"allowed", allowed}};
      if (allowed) status["reason"] = "RBAC: allowed";
    }
    body["apiVersion"] = "authorization.k8s.io/v1";
    body["kind"] = type->kind;
    if (!body.contains("metadata")) body["metadata"] = Json::object();
    body["metadata"]["creationTimestamp"] = nullptr;
    body["status"] = status;
    SendJson(resp, 201, body);
    return;
  }
  if (type->group == "authentication.k8s.io" && req.method == "POST") {
    Json body;
    std::string err;
    ParseBody(body_text, &body, &err);
    if (!body.is_object()) body = Json::object();
    body["apiVersion"] = "authentication.k8s.io/v1";
    body["kind"] = type->kind;
    body["metadata"] = {{"creationTimestamp", nullptr}};
    if (type->resource == "selfsubjectreviews") {
      body["status"] = {{"userInfo", {{"username", user.name}, {"groups", user.groups}}}};
    } else {
      UserInfo who;
      bool ok =
          authorizer_.Authenticate(body.value("spec", Json::object()).value("token", ""), &who);
      body["status"] = {{"authenticated", ok}};
      if (ok) body["status"]["user"] = {{"username", who.name}, {"groups", who.groups}};
    }
    SendJson(resp, 201, body);
    return;
  }
  if (type->resource == "serviceaccounts" && type->group.empty() && route->subresource == "token") {
    if (req.method != "POST") {
      SendError(resp, MakeError(405, "MethodNotAllowed",
                                "the server does not allow this method on the requested resource"));
      return;
    }
    ApiResult sa = api_->Get(ref, route->ns, route->name);
    if (!sa.ok()) {
      SendError(resp, sa.error());
      return;
    }
    Json body;
    std::string err;
    ParseBody(body_text, &body, &err);
    if (!body.is_object()) body = Json::object();
    int64_t seconds = body.value("spec", Json::object()).value("expirationSeconds", int64_t{3600});
    Json out = {
        {"kind", "TokenRequest"},
        {"apiVersion", "authentication.k8s.io/v1"},
        {"metadata",
         {{"name", route->name}, {"namespace", route->ns}, {"creationTimestamp", NowRfc3339()}}},
        {"spec",
         {{"audiences", body.value("spec", Json::object())
                            .value("audiences", Json::array({"https://kubernetes.default.svc"}))},
          {"expirationSeconds", seconds},
          {"boundObjectRef", nullptr}}},
        {"status",
         {{"token", api_->ServiceAccountToken(route->ns, route->name)},
          {"expirationTimestamp",
           FormatRfc3339(std::chrono::system_clock::now() + std::chrono::seconds(seconds))}}}};
    SendJson(resp, 201, out);
    return;
  }

  // pods/log
  if (type->resource == "pods" && type->group.empty() && route->subresource == "log") {
    ApiResult pod = api_->Get(ref, route->ns, route->name);
    if (!pod.ok()) {
      SendError(resp, pod.error());
      return;
    }
    const Json& p = pod.value();
    std::vector<std::string> names;
    for (const char* list : {"initContainers", "containers"}) {
      for (const Json& c : p["spec"].value(list, Json::array()))
        names.push_back(c.value("name", ""));
    }
    std::string container = q["container"];
    if (container.empty()) {
      container = p["metadata"]
                      .value("annotations", Json::object())
                      .value("kubectl.kubernetes.io/default-container", "");
    }
    size_t app_count = p["spec"].value("containers", Json::array()).size();
    if (container.empty()) {
      if (app_count == 1) {
        container = p["spec"]["containers"][0].value("name", "");
      } else {
        std::string all;
        for (const std::string& n : names) all += (all.empty() ? "" : " ") + n;
        SendError(resp, BadRequest("a container name must be specified for pod " + route->name +
                                   ", choose one of: [" + all + "]"));
        return;
      }
    }
    if (std::find(names.begin(), names.end(), container) == names.end()) {
      SendError(resp,
                BadRequest("container " + container + " is not valid for pod " + route->name));
      return;
    }
    bool previous = IsTrue(q["previous"]);
    std::string file = state_dir_ + "/logs/" + route->ns + "/" + route->name + "/" + container +
                       (previous ? ".previous.log" : ".log");
    auto container_state = [&](const Json& pod_obj) {
      for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
        for (const Json& cs : pod_obj.value("status", Json::object()).value(list, Json::array())) {
          if (cs.value("name", "") == container) return cs.value("state", Json::object());
        }
      }
      return Json::object();
    };
    auto text = ReadFileText(file);
    if (!text) {
      Json st = container_state(p);
      if (previous) {
        SendError(resp, BadRequest("previous terminated container \"" + container + "\" in pod \"" +
                                   route->name + "\" not found"));
        return;
      }
      if (st.empty() || st.contains("waiting")) {
        std::string reason = st.contains("waiting")
                                 ? st["waiting"].value("reason", std::string("ContainerCreating"))
                                 : "ContainerCreating";
        SendError(resp, BadRequest("container \"" + container + "\" in pod \"" + route->name +
                                   "\" is waiting to start: " + reason));
        return;
      }
      text = "";
    }
    std::string data = *text;
    int64_t tail = ToInt(q["tailLines"], -1);
    if (tail >= 0) {
      size_t pos = data.size();
      if (pos > 0 && data.back() == '\n') --pos;
      int64_t lines = 0;
      while (pos > 0) {
        if (data[pos - 1] == '\n' && ++lines == tail) break;
        --pos;
      }
      if (tail == 0) pos = data.size();
      data = data.substr(pos);
    }
    int64_t limit = ToInt(q["limitBytes"], -1);
    if (limit >= 0 && static_cast<int64_t>(data.size()) > limit)
      data.resize(static_cast<size_t>(limit));
    if (!IsTrue(q["follow"])) {
      resp.Send(200, "text/plain", data);
      return;
    }
    if (!resp.BeginStream("text/plain")) return;
    resp.Write(data);
    size_t offset = text->size();
    while (!stopping_.load() && !resp.PeerClosed()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto now_text = ReadFileText(file);
      if (now_text && now_text->size() > offset) {
        if (!resp.Write(now_text->substr(offset))) return;
        offset = now_text->size();
        continue;
      }
      ApiResult cur = api_->Get(ref, route->ns, route->name);
      if (!cur.ok()) break;
      if (cur.value()["metadata"].value("uid", "") != p["metadata"].value("uid", "")) break;
      if (container_state(cur.value()).contains("terminated")) {
        auto last = ReadFileText(file);
        if (last && last->size() > offset) resp.Write(last->substr(offset));
        break;
      }
    }
    resp.EndStream();
    return;
  }

  // Collections and objects.
  if (req.method == "GET" && route->name.empty()) {
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
    if (!watch) {
      ApiResult r = api_->List(ref, route->ns, lo);
      if (!r.ok()) {
        SendError(resp, r.error());
        return;
      }
      Json v = r.value();
      AsVersion(v, *type, route->version);
      if (table) {
        std::vector<Json> items(v["items"].begin(), v["items"].end());
        SendJson(resp, 200, RenderTable(*type, items, v["metadata"]), kTable);
      } else {
        SendJson(resp, 200, v);
      }
      return;
    }
    ApiError err;
    auto w = api_->Watch(ref, route->ns, lo, &err);
    if (!w) {
      SendError(resp, err);
      return;
    }
    if (!resp.BeginStream(table ? kTable : kJson)) return;
    while (!stopping_.load()) {
      auto ev = w->Next(std::chrono::milliseconds(500));
      if (ev) {
        Json obj = ev->object;
        if (table && (ev->type != "ERROR" && ev->type != "BOOKMARK")) {
          AsVersion(obj, *type, route->version);
          obj = RenderTable(*type, {obj},
                            {{"resourceVersion", obj["metadata"].value("resourceVersion", "")}});
        } else if (ev->type != "ERROR") {
          AsVersion(obj, *type, route->version);
        }
        if (!resp.Write(Json{{"type", ev->type}, {"object", obj}}.dump() + "\n")) return;
        continue;
      }
      if (w->Closed() || resp.PeerClosed()) break;
    }
    resp.EndStream();
    return;
  }
  if (req.method == "GET") {
    ApiResult r = api_->Get(ref, route->ns, route->name, route->subresource);
    if (r.ok() && table) {
      Json v = r.value();
      AsVersion(v, *type, route->version);
      SendJson(resp, 200,
               RenderTable(*type, {v},
                           {{"resourceVersion", v["metadata"].value("resourceVersion", "")}}),
               kTable);
      return;
    }
    reply(r);
    return;
  }
  if (req.method == "POST") {
    if (!route->name.empty()) {
      SendError(resp, MakeError(405, "MethodNotAllowed",
                                "the server does not allow this method on the requested resource"));
      return;
    }
    Json body;
    std::string err;
    if (!ParseBody(body_text, &body, &err)) {
      SendError(resp, BadRequest(err));
      return;
    }
    auto write = [&](const WriteOptions& o) { return api_->Create(ref, route->ns, body, o); };
    if (auto denied = admission_.Admit("CREATE", *type, route->version, route->ns, "",
                                       route->subresource, user, wopts, write)) {
      SendError(resp, *denied);
      return;
    }
    reply(write(wopts));
    return;
  }
  if (req.method == "PUT") {
    Json body;
    std::string err;
    if (!ParseBody(body_text, &body, &err)) {
      SendError(resp, BadRequest(err));
      return;
    }
    if (route->name.empty()) {
      SendError(resp, MakeError(405, "MethodNotAllowed",
                                "the server does not allow this method on the requested resource"));
      return;
    }
    auto write = [&](const WriteOptions& o) {
      return api_->Update(ref, route->ns, route->name, body, route->subresource, o);
    };
    if (auto denied = admission_.Admit("UPDATE", *type, route->version, route->ns, route->name,
                                       route->subresource, user, wopts, write)) {
      SendError(resp, *denied);
      return;
    }
    reply(write(wopts));
    return;
  }
  if (req.method == "PATCH") {
    auto write = [&](const WriteOptions& o) {
      return api_->Patch(ref, route->ns, route->name, req.Header("content-type"), body_text,
                         route->subresource, o);
    };
    if (auto denied = admission_.Admit("UPDATE", *type, route->version, route->ns, route->name,
                                       route->subresource, user, wopts, write)) {
      SendError(resp, *denied);
      return;
    }
    reply(write(wopts));
    return;
  }
  if (req.method == "DELETE") {
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
    dopts.dry_run = dopts.dry_run || wopts.dry_run;
    if (!route->name.empty()) {
      reply(api_->Delete(ref, route->ns, route->name, dopts));
      return;
    }
    ListOptions lo;
    lo.label_selector = q["labelSelector"];
    lo.field_selector = q["fieldSelector"];
    ApiResult list = api_->List(ref, route->ns, lo);
    if (!list.ok()) {
      SendError(resp, list.error());
      return;
    }
    Json deleted = Json::array();
    for (const Json& item : list.value()["items"]) {
      ApiResult r = api_->Delete(ref, item["metadata"].value("namespace", ""),
                                 item["metadata"].value("name", ""), dopts);
      if (r.ok()) deleted.push_back(r.value());
    }
    Json out = list.value();
    out["items"] = deleted;
    AsVersion(out, *type, route->version);
    SendJson(resp, 200, out);
    return;
  }
}

}  // namespace parallelrun::rt::cluster
