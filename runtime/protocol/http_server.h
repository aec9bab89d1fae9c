// A small JSON-over-HTTP server (Boost.Beast behind our own interface, so Boost headers stay out
// of the rest of the tree).
//
// Guarantees: requests without `Authorization: Bearer <token>` get 401 as soon as their header
// is read, before any body byte is read and before the handler runs; a body larger than
// max_body_bytes gets 413 (by its Content-Length, before it is read) and a header larger than
// max_header_bytes 431, and those connections close. A connection that sends nothing, or not a
// whole header within header_timeout_ms of its request's first byte, or not its body (or does not
// read the reply) within body_timeout_ms, is closed, as is a keep-alive connection idle for
// idle_timeout_ms; beyond max_connections open connections a new one is closed at once. A request
// whose client shut down its side of the connection before the request was handled (it gave up
// waiting for the answer) is not handled: the connection closes without a reply. Memory per
// connection is bounded by the header and body limits. A body that is not JSON gets 400; a
// nlohmann::json::exception from the handler (a field of the wrong type or range while decoding
// the body) gets 400, any other exception 500, with its message, and never takes the server down.
// Error bodies are `{"reason": "..."}` (handlers should use the same shape: the client quotes
// `reason` in its Status). Handlers run on the server's `threads` threads, concurrently; each
// connection is served by one of them (in turn as they are accepted), so a handler that blocks
// holds up the other connections of its thread, not the whole server. Replies
// are JSON (Content-Type application/json).
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
  // Limits against broken or hostile clients (see above).
  size_t max_body_bytes = size_t{16} << 20;
  size_t max_header_bytes = size_t{64} << 10;
  int header_timeout_ms = 10000;
  int body_timeout_ms = 60000;
  int idle_timeout_ms = 120000;
  // A coordinator holds one keep-alive connection per agent (1,000 nodes and more); the soft
  // limit on open files is raised towards this (up to the hard limit) at start.
  int max_connections = 4096;
  int threads = 4;
};

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  virtual int port() const = 0;
  virtual std::string url() const = 0;  // http://host:port
  // Stops listening. Requests being handled and replies being written first get up to 2 s to
  // finish (a reply the owner waited for its clients to get, such as the coordinator's `done`,
  // is not cut off); then every connection is closed. Idempotent; the destructor stops.
  virtual void Stop() = 0;
};

StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpServerOptions& options,
                                                      HttpHandler handler);

}  // namespace parallelrun::rt::protocol
