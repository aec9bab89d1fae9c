#pragma once
// Private to frontend.cc and frontend_routes.cc: one request as the route handlers see it, and
// the reply helpers they share.

#include <map>
#include <string>
#include <vector>

#include "tests/cluster/frontend.h"

namespace parallelrun::rt::cluster {

inline constexpr const char* kJsonType = "application/json";
inline constexpr const char* kTableType = "application/json;as=Table;v=v1;g=meta.k8s.io";

inline void SendJson(HttpResponder& resp, int code, const Json& body,
                     const char* type = kJsonType) {
  resp.Send(code, type, body.dump());
}

inline void SendError(HttpResponder& resp, const ApiError& e) {
  SendJson(resp, e.code, e.ToStatus());
}

inline ApiError NotFoundResource() {
  return MakeError(404, "NotFound", "the server could not find the requested resource");
}

inline ApiError MethodNotAllowed() {
  return MakeError(405, "MethodNotAllowed",
                   "the server does not allow this method on the requested resource");
}

// Booleans in queries: the Python client sends "True".
bool IsTrue(const std::string& s);
// s as an integer, or fallback when empty or not a number.
int64_t ToInt(const std::string& s, int64_t fallback);
// Sets apiVersion to the requested version (CRDs may serve several).
void AsVersion(Json& o, const ResourceType& t, const std::string& version);

// A resource path: /api/v1/... or /apis/<g>/<v>/...
struct Route {
  std::string group;
  std::string version;
  std::string ns;
  std::string resource;
  std::string name;
  std::string subresource;
};

struct Frontend::Call {
  Call(const HttpRequest& r, HttpResponder& o) : req(r), resp(o) {}

  const HttpRequest& req;
  HttpResponder& resp;
  std::string path;                      // without trailing slashes
  std::vector<std::string> seg;          // path segments
  std::map<std::string, std::string> q;  // query parameters
  UserInfo user;                         // after impersonation

  // Resource requests only (set by Frontend::PrepareResource).
  Route route;
  ResourceType type;
  ResourceRef ref;
  RequestAttributes attrs;  // attrs.verb: get, list, watch, create, update, patch, delete, ...
  std::string body_text;    // JSON or YAML (protobuf bodies decoded)
  WriteOptions wopts;
  bool table = false;  // Accept asks for a Table

  // Sends r's object (in the requested version) or its error.
  void Reply(const ApiResult& r) {
    if (!r.ok()) {
      SendError(resp, r.error());
      return;
    }
    Json v = r.value();
    AsVersion(v, type, route.version);
    SendJson(resp, r.code(), v);
  }
  void Fail(const ApiError& e) { SendError(resp, e); }
};

}  // namespace parallelrun::rt::cluster
