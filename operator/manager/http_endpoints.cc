#include "operator/manager/http_endpoints.h"

// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include <cpprest/http_listener.h>

#include <algorithm>
#include <exception>
#include <mutex>

#include "runtime/base/process.h"

namespace parallelrun::op::manager {
namespace {

namespace http = web::http;
using web::http::experimental::listener::http_listener;

constexpr int kBindAttempts = 5;
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

struct Response {
  http::status_code status;
  std::string body;
  const char* content_type = kTextContentType;
};

bool Probe(const std::function<bool()>& check) {
  try {
    return check();
  } catch (...) {
    return false;  // a probe that throws is a failing probe
  }
}

Response Route(const EndpointHandlers& h, const std::string& method, const std::string& path) {
  if (method != http::methods::GET && method != http::methods::HEAD) {
    return {http::status_codes::MethodNotAllowed, "method not allowed\n"};
  }
  if (path == "/metrics" && h.metrics) {
    return {http::status_codes::OK, h.metrics->Expose(), kMetricsContentType};
  }
  const std::function<bool()>* probe = path == "/healthz"  ? &h.healthz
                                       : path == "/readyz" ? &h.readyz
                                                           : nullptr;
  if (probe && *probe) {
    return Probe(*probe)
               ? Response{http::status_codes::OK, "ok\n"}
               : Response{http::status_codes::InternalError, path.substr(1) + " check failed\n"};
  }
  return {http::status_codes::NotFound, "404 page not found\n"};
}

void Handle(const std::shared_ptr<const EndpointHandlers>& handlers, http::http_request request) {
  Response r;
  try {
    r = Route(*handlers, request.method(), request.request_uri().path());
  } catch (const std::exception& e) {
    r = {http::status_codes::InternalError, std::string("internal error: ") + e.what()};
  }
  if (request.method() == http::methods::HEAD) r.body.clear();
  request.reply(r.status, std::move(r.body), r.content_type).then([](pplx::task<void> t) {
    try {
      t.get();
    } catch (...) {
      // The client went away before the reply was written; nothing to do.
    }
  });
}

class ListenerEndpointServer : public EndpointServer {
 public:
  ListenerEndpointServer(std::unique_ptr<http_listener> listener, int port, std::string url)
      : listener_(std::move(listener)), port_(port), url_(std::move(url)) {}
  ~ListenerEndpointServer() override { Stop(); }

  int port() const override { return port_; }
  std::string url() const override { return url_; }
  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!listener_) return;
    try {
      listener_->close().wait();
    } catch (...) {
      // Closing a listener whose sockets already failed: it is closed either way.
    }
    listener_.reset();
  }

 private:
  std::mutex mu_;
  std::unique_ptr<http_listener> listener_;
  int port_;
  std::string url_;
};

bool AllDigits(const std::string& s) {
  return !s.empty() && s.size() <= 5 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

rt::StatusOr<std::optional<BindAddress>> ParseBindAddress(const std::string& address) {
  if (address == "0") return std::optional<BindAddress>();
  auto invalid = [&](const std::string& why) {
    return rt::InvalidArgumentError("bind address \"" + address + "\": " + why +
                                    " (expected host:port, :port or 0 to disable)");
  };
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return invalid("no port");
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.back() != ']') return invalid("unbalanced brackets");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return invalid("an IPv6 host needs brackets");
  }
  if (!AllDigits(port) || std::stoi(port) > 65535) return invalid("bad port");
  BindAddress b;
  b.host = host.empty() ? "0.0.0.0" : host;
  b.port = std::stoi(port);
  return std::optional<BindAddress>(b);
}

rt::StatusOr<std::unique_ptr<EndpointServer>> ServeEndpoints(const std::string& bind_address,
                                                             EndpointHandlers handlers) {
  PR_ASSIGN_OR_RETURN(auto bind, ParseBindAddress(bind_address));
  if (!bind) return std::unique_ptr<EndpointServer>();
  auto shared = std::make_shared<const EndpointHandlers>(std::move(handlers));
  const std::string host =
      bind->host.find(':') != std::string::npos ? "[" + bind->host + "]" : bind->host;
  const std::string client_host = bind->host == "0.0.0.0" ? "127.0.0.1" : host;
  std::string last_error;
  // A picked port may be taken before the listener binds it, so a failed bind picks again.
  const int attempts = bind->port == 0 ? kBindAttempts : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    int port = bind->port;
    if (port == 0) {
      PR_ASSIGN_OR_RETURN(port, rt::PickFreePort(bind->host));
    }
    try {
      auto listener = std::make_unique<http_listener>(
          web::uri("http://" + host + ":" + std::to_string(port) + "/"));
      listener->support(
          [shared](http::http_request request) { Handle(shared, std::move(request)); });
      listener->open().wait();
      return std::unique_ptr<EndpointServer>(std::make_unique<ListenerEndpointServer>(
          std::move(listener), port, "http://" + client_host + ":" + std::to_string(port)));
    } catch (const std::exception& e) {
      last_error = e.what();
    }
  }
  return rt::UnavailableError("cannot listen on " + bind_address + " (" + std::to_string(attempts) +
                              " attempt(s)): " + last_error);
}

}  // namespace parallelrun::op::manager
