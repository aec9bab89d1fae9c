// A small JSON-over-HTTP server (cpprestsdk's http_listener behind our own interface, so
// cpprestsdk headers stay out of the rest of the tree).
//
// Guarantees: requests without `Authorization: Bearer <token>` get 401 before the handler runs;
// a body that is not JSON gets 400; a nlohmann::json::exception from the handler (a field of the
// wrong type while decoding the body) gets 400, any other exception 500, with its message, and
// never takes the server down. Error bodies are `{"reason": "..."}` (handlers should use the same
// shape: the client quotes `reason` in its Status). Handlers run on cpprestsdk's thread pool,
// concurrently. Replies are JSON (Content-Type application/json).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::rt::protocol {

struct HttpRequest {
  std::string method;   // GET, POST
  std::string path;     // /v1/lease
  nlohmann::json body;  // null for GET
};

struct HttpResponse {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;               // 0: pick a free port (retried on collision)
  std::string token;          // required bearer token; empty disables the check
  std::string tls_cert_file;  // serve HTTPS when both are set
  std::string tls_key_file;
};

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  virtual int port() const = 0;
  virtual std::string url() const = 0;  // http://host:port
  // Stops listening. Requests being handled and replies being written first get up to 2 s to
  // finish (a reply the owner waited for its clients to get, such as the coordinator's `done`,
  // is not cut off). Idempotent; the destructor stops.
  virtual void Stop() = 0;
};

StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpServerOptions& options,
                                                      HttpHandler handler);

}  // namespace parallelrun::rt::protocol
