// The admission webhook's HTTPS endpoint and its SubjectAccessReview checker (see server.h).
#include "operator/webhook/server.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <utility>

#include "operator/manager/http_endpoints.h"

namespace parallelrun::op::webhook {
namespace {

using nlohmann::json;

const kube::Resource kLocalSubjectAccessReviews{
    "authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", true};

UserInfo ReadUser(const json& user) {
  UserInfo out;
  if (!user.is_object()) return out;
  out.username = user.value("username", "");
  out.uid = user.value("uid", "");
  if (user.contains("groups") && user["groups"].is_array()) {
    for (const json& g : user["groups"]) {
      if (g.is_string()) out.groups.push_back(g.get<std::string>());
    }
  }
  if (user.contains("extra") && user["extra"].is_object()) out.extra = user["extra"];
  return out;
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  if (code == 0) return "connection failed";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

}  // namespace

rt::StatusOr<json> HandleAdmissionReview(const json& review, const CheckerFactory& checkers,
                                         const PodReview& pods) {
  const json* request =
      review.is_object() && review.contains("request") ? &review["request"] : nullptr;
  if (request == nullptr || !request->is_object() || !request->contains("uid") ||
      !(*request)["uid"].is_string()) {
    return rt::InvalidArgumentError("not an AdmissionReview: request.uid is missing");
  }
  AdmissionInput input;
  input.operation = request->value("operation", "");
  input.ns = request->value("namespace", "");
  input.name = request->value("name", "");
  const UserInfo user = ReadUser(request->value("userInfo", json::object()));
  input.username = user.username;
  input.object = request->value("object", json());
  input.old_object = request->value("oldObject", json());
  Decision decision = Review(input, checkers(user));
  if (decision.allowed) decision = ReviewPods(input, pods);
  json response = {{"uid", (*request)["uid"]}, {"allowed", decision.allowed}};
  if (!decision.allowed) {
    response["status"] = {
        {"code", decision.code}, {"reason", decision.reason}, {"message", decision.message}};
  }
  return json{{"apiVersion", "admission.k8s.io/v1"},
              {"kind", "AdmissionReview"},
              {"response", std::move(response)}};
}

CheckerFactory KubeRightCheckers(kube::Client& client) {
  return [&client](const UserInfo& user) -> RightChecker {
    return [&client, user](const Right& right) -> rt::StatusOr<bool> {
      json attributes = {{"namespace", right.ns},
                         {"verb", right.verb},
                         {"group", ""},
                         {"resource", right.resource}};
      if (!right.name.empty()) attributes["name"] = right.name;
      json spec = {
          {"user", user.username}, {"groups", user.groups}, {"resourceAttributes", attributes}};
      if (!user.uid.empty()) spec["uid"] = user.uid;
      if (!user.extra.empty()) spec["extra"] = user.extra;
      json review = {{"apiVersion", "authorization.k8s.io/v1"},
                     {"kind", "LocalSubjectAccessReview"},
                     {"metadata", {{"namespace", right.ns}}},
                     {"spec", std::move(spec)}};
      PR_ASSIGN_OR_RETURN(json answer, client.Create(kLocalSubjectAccessReviews, right.ns, review));
      const json status = answer.value("status", json::object());
      return status.is_object() && status.value("allowed", false);
    };
  };
}

rt::StatusOr<std::unique_ptr<rt::protocol::HttpServer>> Serve(const ServeOptions& options,
                                                              CheckerFactory checkers,
                                                              PodReview pods) {
  PR_ASSIGN_OR_RETURN(auto bind, manager::ParseBindAddress(options.bind_address));
  if (!bind) return rt::InvalidArgumentError("the webhook needs a bind address, got \"0\"");
  rt::protocol::HttpServerOptions http;
  http.host = bind->host;
  http.port = bind->port;
  http.tls_cert_file = options.cert_dir + "/tls.crt";
  http.tls_key_file = options.cert_dir + "/tls.key";
  auto handler = [checkers = std::move(checkers),
                  pods = std::move(pods)](const rt::protocol::HttpRequest& request) {
    rt::protocol::HttpResponse response;
    if (request.method == "GET" && request.path == "/healthz") return response;
    if (request.method != "POST" || request.path != kValidatePath) {
      return rt::protocol::HttpResponse{404, {{"reason", "no such path: " + request.path}}};
    }
    auto reply = HandleAdmissionReview(request.body, checkers, pods);
    if (!reply.ok()) return rt::protocol::HttpResponse{400, {{"reason", reply.status().message()}}};
    response.body = std::move(*reply);
    return response;
  };
  return rt::protocol::StartHttpServer(http, std::move(handler));
}

rt::Status Probe(const std::string& host, int port, int timeout_ms) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return rt::InternalError("webhook probe: " + OpenSslError());
  BIO* bio = BIO_new_ssl_connect(ctx);
  SSL_CTX_free(ctx);  // the BIO holds its own reference
  if (bio == nullptr) return rt::InternalError("webhook probe: " + OpenSslError());
  const std::string target =
      (host.empty() || host == "0.0.0.0" ? "127.0.0.1" : host) + ":" + std::to_string(port);
  BIO_set_conn_hostname(bio, target.c_str());
  rt::Status result = rt::UnavailableError("webhook probe " + target + ": no answer");
  if (BIO_do_connect(bio) <= 0) {
    result = rt::UnavailableError("webhook probe " + target + ": " + OpenSslError());
  } else {
    int fd = -1;
    BIO_get_fd(bio, &fd);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const std::string request =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char buf[64] = {};
    if (BIO_do_handshake(bio) > 0 &&
        BIO_write(bio, request.data(), static_cast<int>(request.size())) > 0 &&
        BIO_read(bio, buf, sizeof(buf) - 1) > 0) {
      const std::string status(buf);
      result = status.rfind("HTTP/1.1 200", 0) == 0
                   ? rt::Status::Ok()
                   : rt::UnavailableError("webhook probe " + target + ": answered " +
                                          status.substr(0, status.find('\r')));
    }
  }
  BIO_free_all(bio);
  ERR_clear_error();
  return result;
}

}  // namespace parallelrun::op::webhook
