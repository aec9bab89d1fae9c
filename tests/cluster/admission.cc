// Validating admission webhooks (see admission.h).
#include "tests/cluster/admission.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tests/cluster/selector.h"
#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

const ResourceRef kConfigs{"admissionregistration.k8s.io", "validatingwebhookconfigurations"};

bool Listed(const Json& list, const std::string& value) {
  if (!list.is_array()) return false;
  for (const Json& v : list) {
    if (v == "*" || v == value) return true;
  }
  return false;
}

bool ResourceListed(const Json& list, const std::string& resource, const std::string& sub) {
  if (!list.is_array()) return false;
  const std::string full = sub.empty() ? resource : resource + "/" + sub;
  for (const Json& v : list) {
    if (!v.is_string()) continue;
    const std::string s = v.get<std::string>();
    if (s == full || s == "*/*" || (sub.empty() && s == "*") ||
        (!sub.empty() && (s == resource + "/*" || s == "*/" + sub))) {
      return true;
    }
  }
  return false;
}

bool RuleMatches(const Json& rule, const std::string& op, const ResourceType& type,
                 const std::string& version, const std::string& ns, const std::string& sub) {
  if (!Listed(rule.value("operations", Json::array()), op)) return false;
  if (!Listed(rule.value("apiGroups", Json::array()), type.group)) return false;
  if (!Listed(rule.value("apiVersions", Json::array()), version)) return false;
  if (!ResourceListed(rule.value("resources", Json::array()), type.resource, sub)) return false;
  const std::string scope = rule.value("scope", "*");
  return scope == "*" || (scope == "Namespaced") == !ns.empty();
}

bool SelectorMatches(const Json& webhook, const char* key, const Json& labels) {
  if (!webhook.contains(key) || !webhook[key].is_object() || webhook[key].empty()) return true;
  std::string error;
  auto selector = LabelSelector::FromJson(webhook[key], &error);
  return selector && selector->Matches(labels);
}

// The endpoint of a webhook: host:port to dial, the name its certificate must carry, the path.
struct Endpoint {
  std::string host;
  int port = 443;
  std::string server_name;
  std::string path;
  std::string url;  // as messages show it
};

std::optional<Endpoint> ResolveService(ApiServer* api, const Json& service_ref, std::string* error);

std::optional<Endpoint> ResolveEndpoint(ApiServer* api, const Json& client_config,
                                        std::string* error) {
  if (client_config.contains("url")) {
    const std::string url = client_config.value("url", "");
    // https://host[:port][/path]
    if (url.rfind("https://", 0) != 0) {
      *error = "webhook URL " + url + " is not https";
      return std::nullopt;
    }
    Endpoint e;
    e.url = url;
    std::string rest = url.substr(8);
    const size_t slash = rest.find('/');
    e.path = slash == std::string::npos ? "/" : rest.substr(slash);
    rest = rest.substr(0, slash);
    const size_t colon = rest.rfind(':');
    e.host = colon == std::string::npos ? rest : rest.substr(0, colon);
    if (colon != std::string::npos) e.port = std::atoi(rest.c_str() + colon + 1);
    e.server_name = e.host;
    return e;
  }
  if (client_config.contains("service")) {
    return ResolveService(api, client_config["service"], error);
  }
  *error = "clientConfig has neither url nor service";
  return std::nullopt;
}

std::optional<Endpoint> ResolveService(ApiServer* api, const Json& ref, std::string* error) {
  const std::string ns = ref.value("namespace", "");
  const std::string name = ref.value("name", "");
  const int port = ref.value("port", 443);
  Endpoint e;
  e.server_name = name + "." + ns + ".svc";
  e.path = ref.value("path", "/");
  e.url = "https://" + e.server_name + ":" + std::to_string(port) + e.path;
  ApiResult svc = api->Get({"", "services"}, ns, name);
  if (!svc.ok()) {
    *error = "service \"" + name + "\" not found";
    return std::nullopt;
  }
  Json target;
  for (const Json& p : svc.value()["spec"].value("ports", Json::array())) {
    if (p.value("port", 0) == port) target = p.contains("targetPort") ? p["targetPort"] : p["port"];
  }
  if (target.is_null()) {
    *error = "service \"" + name + "\" has no port " + std::to_string(port);
    return std::nullopt;
  }
  ApiResult eps = api->Get({"", "endpoints"}, ns, name);
  if (eps.ok()) {
    for (const Json& subset : eps.value().value("subsets", Json::array())) {
      for (const Json& addr : subset.value("addresses", Json::array())) {
        e.host = addr.value("ip", "");
        if (target.is_number()) {
          e.port = target.get<int>();
          return e;
        }
        // A named targetPort: the pod's containerPort of that name.
        const Json ref_pod = addr.value("targetRef", Json::object());
        ApiResult pod = api->Get({"", "pods"}, ns, ref_pod.value("name", ""));
        if (!pod.ok()) continue;
        for (const Json& c : pod.value()["spec"].value("containers", Json::array())) {
          for (const Json& cp : c.value("ports", Json::array())) {
            if (cp.value("name", "") == target) {
              e.port = cp.value("containerPort", 0);
              return e;
            }
          }
        }
      }
    }
  }
  *error = "no endpoints available for service \"" + name + "\"";
  return std::nullopt;
}

std::string SslError(const std::string& fallback) {
  const unsigned long code = ERR_get_error();
  if (code == 0) return fallback;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

int ConnectWithTimeout(const std::string& host, int port, int timeout_ms, std::string* error) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1) {
    *error = "dial tcp: lookup " + host + ": no such host";
    return -1;
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const std::string where = host + ":" + std::to_string(port);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (rc == 0 && so_error != 0) {
      errno = so_error;
      rc = -1;
    } else if (rc != 0) {
      errno = ETIMEDOUT;
    }
  }
  if (rc != 0) {
    *error = "dial tcp " + where + ": connect: " + std::strerror(errno);
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

// The body of an HTTP/1.1 response (Content-Length, chunked or until close); false on errors.
bool ParseResponse(const std::string& raw, int* code, std::string* body) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) return false;
  *code = std::atoi(raw.c_str() + 9);
  const std::string head = ToLower(raw.substr(0, head_end));
  std::string rest = raw.substr(head_end + 4);
  if (head.find("transfer-encoding: chunked") == std::string::npos) {
    *body = rest;
    return true;
  }
  body->clear();
  size_t pos = 0;
  while (pos < rest.size()) {
    const size_t line_end = rest.find("\r\n", pos);
    if (line_end == std::string::npos) return false;
    const size_t n = std::strtoul(rest.c_str() + pos, nullptr, 16);
    if (n == 0) return true;
    *body += rest.substr(line_end + 2, n);
    pos = line_end + 2 + n + 2;
  }
  return true;
}

// POSTs `body`; false with a Go-like message when the call fails (no answer, TLS).
bool HttpsPost(const Endpoint& e, const std::string& ca_pem, const std::string& path,
               const std::string& body, int timeout_ms, int* code, std::string* reply,
               std::string* error) {
  const int fd = ConnectWithTimeout(e.host, e.port, timeout_ms, error);
  if (fd < 0) return false;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  BIO* pem = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  while (X509* cert = PEM_read_bio_X509(pem, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
  }
  BIO_free(pem);
  ERR_clear_error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, e.server_name.c_str());
  SSL_set1_host(ssl, e.server_name.c_str());
  bool ok = false;
  if (SSL_connect(ssl) != 1) {
    const long verify = SSL_get_verify_result(ssl);
    *error = verify != X509_V_OK ? std::string("tls: failed to verify certificate: ") +
                                       X509_verify_cert_error_string(verify)
                                 : "tls handshake: " + SslError("connection closed");
  } else {
    const std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + e.server_name +
                                "\r\nContent-Type: application/json\r\nAccept: "
                                "application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
                                body;
    std::string raw;
    if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0) {
      char buf[16384];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) raw.append(buf, n);
    }
    ok = ParseResponse(raw, code, reply);
    if (!ok) *error = raw.empty() ? "context deadline exceeded" : "malformed HTTP response";
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  ERR_clear_error();
  return ok;
}

Json GroupVersionResource(const ResourceType& t, const std::string& version) {
  return {{"group", t.group}, {"version", version}, {"resource", t.resource}};
}

Json AdmissionReview(const AdmissionAttributes& a, const std::string& uid) {
  Json kind = {{"group", a.type.group}, {"version", a.version}, {"kind", a.type.kind}};
  Json request = {{"uid", uid},
                  {"kind", kind},
                  {"resource", GroupVersionResource(a.type, a.version)},
                  {"requestKind", kind},
                  {"requestResource", GroupVersionResource(a.type, a.version)},
                  {"name", a.name},
                  {"operation", a.operation},
                  {"userInfo", {{"username", a.user.name}, {"groups", a.user.groups}}},
                  {"object", a.object},
                  {"oldObject", a.operation == "UPDATE" ? a.old_object : Json()},
                  {"dryRun", a.dry_run},
                  {"options",
                   {{"apiVersion", "meta.k8s.io/v1"},
                    {"kind", a.operation == "CREATE" ? "CreateOptions" : "UpdateOptions"}}}};
  if (!a.ns.empty()) request["namespace"] = a.ns;
  if (!a.subresource.empty()) request["subResource"] = a.subresource;
  return {{"apiVersion", "admission.k8s.io/v1"},
          {"kind", "AdmissionReview"},
          {"request", std::move(request)}};
}

// One webhook call: nullopt when it admits; the error (denial or failure) otherwise.
std::optional<ApiError> Call(ApiServer* api, const Json& webhook, const AdmissionAttributes& a) {
  const std::string name = webhook.value("name", "");
  const bool ignore = webhook.value("failurePolicy", "Fail") == "Ignore";
  const int timeout = std::clamp(webhook.value("timeoutSeconds", 10), 1, 30);
  const Json client_config = webhook.value("clientConfig", Json::object());
  std::string error;
  auto fail = [&](const std::string& why) -> std::optional<ApiError> {
    if (ignore) return std::nullopt;
    return MakeError(500, "InternalError",
                     "Internal error occurred: failed calling webhook \"" + name + "\": " + why);
  };
  auto endpoint = ResolveEndpoint(api, client_config, &error);
  if (!endpoint) return fail("failed to call webhook: " + error);
  const std::string ca = Base64Decode(client_config.value("caBundle", "")).value_or("");
  const std::string path = endpoint->path + (endpoint->path.find('?') == std::string::npos
                                                 ? "?timeout=" + std::to_string(timeout) + "s"
                                                 : "");
  const std::string uid = NewUid();
  int code = 0;
  std::string reply;
  const std::string post =
      "Post \"" + endpoint->url + "?timeout=" + std::to_string(timeout) + "s\": ";
  if (!HttpsPost(*endpoint, ca, path, AdmissionReview(a, uid).dump(), timeout * 1000, &code, &reply,
                 &error)) {
    return fail("failed to call webhook: " + post + error);
  }
  Json review = Json::parse(reply, nullptr, false);
  if (code != 200 || review.is_discarded() || !review.contains("response")) {
    return fail("received invalid webhook response: HTTP " + std::to_string(code) + ": " +
                reply.substr(0, 200));
  }
  const Json& response = review["response"];
  if (response.value("uid", "") != uid) {
    return fail("expected response.uid=\"" + uid + "\", got \"" + response.value("uid", "") + "\"");
  }
  if (response.value("allowed", false)) return std::nullopt;
  const Json status = response.value("status", Json::object());
  std::string message = status.value("message", "");
  if (message.empty()) message = "without explanation";
  const int deny_code = status.value("code", 0) > 0 ? status.value("code", 400) : 400;
  std::string reason = status.value("reason", "");
  if (reason.empty()) reason = deny_code == 403 ? "Forbidden" : "BadRequest";
  return MakeError(deny_code, reason,
                   "admission webhook \"" + name + "\" denied the request: " + message);
}

}  // namespace

std::vector<Json> Admission::Candidates(const std::string& operation, const ResourceType& type,
                                        const std::string& version, const std::string& ns,
                                        const std::string& subresource) const {
  std::vector<Json> out;
  if (type.group == kConfigs.group) return out;  // never for the webhooks' own objects
  ApiResult configs = api_->List(kConfigs, "");
  if (!configs.ok()) return out;
  for (const Json& config : configs.value().value("items", Json::array())) {
    for (const Json& webhook : config.value("webhooks", Json::array())) {
      for (const Json& rule : webhook.value("rules", Json::array())) {
        if (RuleMatches(rule, operation, type, version, ns, subresource)) {
          out.push_back(webhook);
          break;
        }
      }
    }
  }
  return out;
}

std::optional<ApiError> Admission::Validate(const std::vector<Json>& webhooks,
                                            const AdmissionAttributes& a) const {
  Json ns_labels = Json::object();
  if (!a.ns.empty()) {
    ApiResult ns = api_->Get({"", "namespaces"}, "", a.ns);
    if (ns.ok()) ns_labels = ns.value()["metadata"].value("labels", Json::object());
    ns_labels["kubernetes.io/metadata.name"] = a.ns;
  }
  const Json& labelled = a.object.is_object() ? a.object : a.old_object;
  const Json object_labels =
      labelled.is_object()
          ? labelled.value("metadata", Json::object()).value("labels", Json::object())
          : Json::object();
  for (const Json& webhook : webhooks) {
    if (!a.ns.empty() && !SelectorMatches(webhook, "namespaceSelector", ns_labels)) continue;
    if (!SelectorMatches(webhook, "objectSelector", object_labels)) continue;
    if (auto denied = Call(api_, webhook, a)) return denied;
  }
  return std::nullopt;
}

std::optional<ApiError> Admission::Admit(
    const std::string& operation, const ResourceType& type, const std::string& version,
    const std::string& ns, const std::string& name, const std::string& subresource,
    const UserInfo& user, const WriteOptions& options,
    const std::function<ApiResult(const WriteOptions&)>& write) const {
  const std::vector<Json> webhooks = Candidates(operation, type, version, ns, subresource);
  if (webhooks.empty()) return std::nullopt;
  AdmissionAttributes a{operation,   type,   version, ns,   name,
                        subresource, Json(), Json(),  user, options.dry_run};
  if (operation == "UPDATE") {
    ApiResult old = api_->Get({type.group, type.resource}, ns, name);
    if (old.ok()) a.old_object = old.value();
  }
  WriteOptions trial = options;
  trial.dry_run = true;
  ApiResult result = write(trial);
  if (!result.ok()) return result.error();
  a.object = result.value();
  if (a.name.empty()) a.name = a.object["metadata"].value("name", "");
  return Validate(webhooks, a);
}

}  // namespace parallelrun::rt::cluster
