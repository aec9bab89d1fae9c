#include "tests/cluster/frontend.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "tests/cluster/discovery.h"
#include "tests/cluster/frontend_call.h"
#include "tests/cluster/protobuf.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {

bool IsTrue(const std::string& s) { return ToLower(s) == "true" || s == "1"; }

int64_t ToInt(const std::string& s, int64_t fallback) {
  if (s.empty()) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  return (end != nullptr && *end == '\0') ? v : fallback;
}

void AsVersion(Json& o, const ResourceType& t, const std::string& version) {
  if (t.version == version || !o.is_object()) return;
  std::string av = t.group.empty() ? version : t.group + "/" + version;
  o["apiVersion"] = av;
  if (o.contains("items")) {
    for (Json& item : o["items"]) item["apiVersion"] = av;
  }
}

namespace {

std::string BearerToken(const HttpRequest& req) {
  std::string h = req.Header("authorization");
  if (h.size() > 7 && ToLower(h.substr(0, 7)) == "bearer ") return Trim(h.substr(7));
  return "";
}

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

// The RBAC verb of a resource request, or "" for a method the API does not serve.
std::string VerbOf(const std::string& method, const Route& route, bool watch) {
  if (method == "GET") return route.name.empty() ? (watch ? "watch" : "list") : "get";
  if (method == "POST") return "create";
  if (method == "PUT") return "update";
  if (method == "PATCH") return "patch";
  if (method == "DELETE") return route.name.empty() ? "deletecollection" : "delete";
  return "";
}

const Json& VersionInfo() {
  static const Json kVersion = {{"major", "1"},
                                {"minor", "32"},
                                {"gitVersion", "v1.32.4"},
                                {"gitCommit", "59526cd4867447956156ae3a602fcbac10a2c335"},
                                {"gitTreeState", "clean"},
                                {"buildDate", "2025-04-22T16:02:27Z"},
                                {"goVersion", "go1.23.6"},
                                {"compiler", "gc"},
                                {"platform", "linux/amd64"}};
  return kVersion;
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
  Call c(req, resp);
  c.path = req.path;
  while (c.path.size() > 1 && c.path.back() == '/') c.path.pop_back();
  c.q = ParseQuery(req.query);
  if (c.path == "/healthz" || c.path == "/livez" || c.path == "/readyz") {
    resp.Send(200, "text/plain; charset=utf-8", "ok");
    return;
  }
  if (c.path == "/version") {
    SendJson(resp, 200, VersionInfo());
    return;
  }
  if (!Authenticate(c)) return;
  for (const std::string& s : Split(c.path, '/')) {
    if (!s.empty()) c.seg.push_back(s);
  }
  if (Handler h = NonResourceRoute(c)) {
    if (NonResourceAllowed(c)) (this->*h)(c);
    return;
  }
  if (!PrepareResource(c)) return;
  if (Handler h = ResourceRoute(c)) (this->*h)(c);
}

bool Frontend::Authenticate(Call& c) {
  if (!authorizer_.Authenticate(BearerToken(c.req), &c.user)) {
    c.Fail(MakeError(401, "Unauthorized", "Unauthorized"));
    return false;
  }
  const std::string as_user = c.req.Header("impersonate-user");
  if (as_user.empty()) return true;
  if (!c.user.IsMaster()) {
    c.Fail(MakeError(403, "Forbidden",
                     "users \"" + as_user + "\" is forbidden: User \"" + c.user.name +
                         "\" cannot impersonate resource \"users\" in API group \"\" "
                         "at the cluster scope"));
    return false;
  }
  UserInfo imp{as_user, {}};
  for (const std::string& g : Split(c.req.Header("impersonate-group"), ',')) {
    if (!Trim(g).empty()) imp.groups.push_back(Trim(g));
  }
  std::vector<std::string> parts = Split(as_user, ':');
  if (parts.size() == 4 && parts[0] == "system" && parts[1] == "serviceaccount") {
    imp.groups.push_back("system:serviceaccounts");
    imp.groups.push_back("system:serviceaccounts:" + parts[2]);
  }
  imp.groups.push_back("system:authenticated");
  c.user = imp;
  return true;
}

bool Frontend::NonResourceAllowed(Call& c) {
  RequestAttributes a;
  a.resource_request = false;
  a.verb = ToLower(c.req.method);
  a.path = c.path;
  if (authorizer_.Allowed(c.user, a)) return true;
  c.Fail(MakeError(403, "Forbidden", Authorizer::ForbiddenMessage(c.user, a)));
  return false;
}

Frontend::Handler Frontend::NonResourceRoute(const Call& c) const {
  const std::vector<std::string>& seg = c.seg;
  if (c.path == "/api" || c.path == "/apis") return &Frontend::HandleRootDiscovery;
  if (seg.size() == 2 && seg[0] == "api") return &Frontend::HandleVersionDiscovery;
  if ((seg.size() == 2 || seg.size() == 3) && seg[0] == "apis") {
    return &Frontend::HandleVersionDiscovery;
  }
  if (!seg.empty() && seg[0] == "openapi") return &Frontend::HandleOpenApi;
  return nullptr;
}

void Frontend::HandleRootDiscovery(Call& c) {
  const bool core = c.path == "/api";
  const std::string accept = c.req.Header("accept");
  if (accept.find("as=APIGroupDiscoveryList") != std::string::npos) {
    // Answer the first aggregated version the client lists, labelled with it.
    size_t v2 = accept.find("v=v2;");
    size_t v2b = accept.find("v=v2beta1");
    std::string version =
        (v2 != std::string::npos && (v2b == std::string::npos || v2 < v2b)) ? "v2" : "v2beta1";
    if (v2 == std::string::npos && v2b == std::string::npos) version = "v2";
    std::string ct =
        "application/json;g=apidiscovery.k8s.io;v=" + version + ";as=APIGroupDiscoveryList";
    c.resp.Send(200, ct, AggregatedDiscovery(api_->registry(), core, version).dump());
    return;
  }
  SendJson(c.resp, 200,
           core ? LegacyApiVersions(server_address_) : LegacyGroupList(api_->registry()));
}

void Frontend::HandleVersionDiscovery(Call& c) {
  const std::vector<std::string>& seg = c.seg;
  std::optional<Json> doc;
  if (seg[0] == "api") {
    doc = LegacyResourceList(api_->registry(), "", seg[1]);
  } else {
    doc = seg.size() == 2 ? LegacyGroup(api_->registry(), seg[1])
                          : LegacyResourceList(api_->registry(), seg[1], seg[2]);
  }
  if (!doc) {
    c.Fail(NotFoundResource());
  } else {
    SendJson(c.resp, 200, *doc);
  }
}

void Frontend::HandleOpenApi(Call& c) {
  if (c.path == "/openapi/v3") {
    SendJson(c.resp, 200, OpenApiV3Root(api_->registry()));
    return;
  }
  if (c.path.rfind("/openapi/v3/", 0) == 0) {
    auto doc = OpenApiV3Document(api_->registry(), c.path.substr(12));
    if (doc) {
      SendJson(c.resp, 200, *doc);
      return;
    }
  }
  c.Fail(NotFoundResource());
}

bool Frontend::PrepareResource(Call& c) {
  auto route = ParseRoute(c.seg);
  if (!route) {
    c.Fail(NotFoundResource());
    return false;
  }
  c.route = *route;
  auto type = api_->registry().Find(route->group, route->resource);
  const auto& sub = type ? type->subresources : std::vector<std::string>{};
  if (!type ||
      std::find(type->versions.begin(), type->versions.end(), route->version) ==
          type->versions.end() ||
      (!type->namespaced && !route->ns.empty()) ||
      (!route->subresource.empty() &&
       std::find(sub.begin(), sub.end(), route->subresource) == sub.end())) {
    c.Fail(NotFoundResource());
    return false;
  }
  c.type = *type;
  c.ref = ResourceRef{type->group, type->resource};
  c.attrs.group = type->group;
  c.attrs.resource = type->resource;
  c.attrs.subresource = route->subresource;
  c.attrs.ns = route->ns;
  c.attrs.name = route->name;
  c.attrs.verb = VerbOf(c.req.method, *route, IsTrue(c.q["watch"]));
  if (c.attrs.verb.empty()) {
    c.Fail(MethodNotAllowed());
    return false;
  }
  const bool allowed = authorizer_.Allowed(c.user, c.attrs);
  Audit(c.user, c.attrs, allowed);
  if (!allowed) {
    c.Fail(MakeError(403, "Forbidden", Authorizer::ForbiddenMessage(c.user, c.attrs)));
    return false;
  }
  return DecodeBody(c);
}

bool Frontend::DecodeBody(Call& c) {
  // Bodies are JSON or YAML, or protobuf for the few kinds kubectl's typed clients send that
  // way (see protobuf.h).
  const std::string& raw = c.req.body;
  c.body_text = raw;
  const std::string body_type = ToLower(c.req.Header("content-type"));
  if (!raw.empty() && body_type.find("protobuf") != std::string::npos) {
    std::string err;
    auto decoded = DecodeKubernetesProtobuf(raw, &err);
    if (!decoded) {
      c.Fail(MakeError(415, "UnsupportedMediaType", err));
      return false;
    }
    c.body_text = decoded->dump();
  } else if (!raw.empty() && body_type.find("cbor") != std::string::npos) {
    c.Fail(MakeError(415, "UnsupportedMediaType",
                     "the body of the request was in an unknown format - accepted media "
                     "types include: application/json, application/yaml"));
    return false;
  }
  auto& q = c.q;
  c.wopts.dry_run = q["dryRun"] == "All";
  if (q.count("dryRun") && !q["dryRun"].empty() && q["dryRun"] != "All") {
    c.Fail(BadRequest("dryRun: Unsupported value: \"" + q["dryRun"] +
                      "\": supported values: \"All\""));
    return false;
  }
  c.wopts.field_manager = q["fieldManager"];
  c.wopts.field_validation = q["fieldValidation"];
  c.wopts.force = IsTrue(q["force"]);
  c.table = c.req.Header("accept").find("as=Table") != std::string::npos;
  return true;
}

Frontend::Handler Frontend::ResourceRoute(const Call& c) const {
  const std::string& method = c.req.method;
  if (c.type.group == "authorization.k8s.io" && method == "POST") {
    return &Frontend::HandleAccessReview;
  }
  if (c.type.group == "authentication.k8s.io" && method == "POST") {
    return &Frontend::HandleTokenReview;
  }
  const bool core = c.type.group.empty();
  if (core && c.type.resource == "serviceaccounts" && c.route.subresource == "token") {
    return &Frontend::HandleTokenRequest;
  }
  if (core && c.type.resource == "pods" && c.route.subresource == "log") {
    return &Frontend::HandlePodLog;
  }
  static const std::map<std::string, Handler> kByVerb = {
      {"get", &Frontend::HandleGet},       {"list", &Frontend::HandleList},
      {"watch", &Frontend::HandleWatch},   {"create", &Frontend::HandleCreate},
      {"update", &Frontend::HandleUpdate}, {"patch", &Frontend::HandlePatch},
      {"delete", &Frontend::HandleDelete}, {"deletecollection", &Frontend::HandleDelete}};
  auto it = kByVerb.find(c.attrs.verb);
  return it == kByVerb.end() ? nullptr : it->second;
}

}  // namespace parallelrun::rt::cluster
