// StartHttpServer over cpprestsdk's http_listener (asio on Linux).
#include "runtime/protocol/http_server.h"

// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include <cpprest/http_listener.h>
#include <openssl/crypto.h>
#include <strings.h>

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <utility>

#include "runtime/base/process.h"

namespace parallelrun::rt::protocol {
namespace {

namespace http = web::http;
using web::http::experimental::listener::http_listener;
using web::http::experimental::listener::http_listener_config;

constexpr int kBindAttempts = 5;
// How long Stop() waits for requests being handled and replies being written.
constexpr std::chrono::seconds kDrain{2};

nlohmann::json Reason(const std::string& reason) { return {{"reason", reason}}; }

// Compares without an early exit so the time taken does not reveal how much of a guess matched.
bool TokenMatches(const std::string& given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  return CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// What every request needs; shared with in-flight continuations so a request that finishes
// after Stop() still finds it alive.
struct ServerState {
  std::string token;
  HttpHandler handler;

  // Requests from arrival until their reply is written (or failed), for Stop() to drain.
  std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;

  void WaitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    idle.wait_for(lock, timeout, [this] { return in_flight == 0; });
  }
};

// Counts one request in flight for as long as it lives (the reply's continuation holds the last
// reference).
class InFlight {
 public:
  explicit InFlight(std::shared_ptr<ServerState> state) : state_(std::move(state)) {
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->in_flight;
  }
  ~InFlight() {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (--state_->in_flight == 0) state_->idle.notify_all();
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::shared_ptr<ServerState> state_;
};

HttpResponse Dispatch(const ServerState& state, HttpRequest request) {
  try {
    return state.handler(request);
  } catch (const nlohmann::json::exception& e) {
    // The handler decoding the body into a message found a field of the wrong type.
    return {400, Reason(std::string("request body does not match the message: ") + e.what())};
  } catch (const std::exception& e) {
    return {500, Reason(std::string("internal error: ") + e.what())};
  } catch (...) {
    return {500, Reason("internal error: unknown exception")};
  }
}

void Reply(http::http_request& request, const HttpResponse& response,
           std::shared_ptr<InFlight> in_flight) {
  std::string body = response.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  request
      .reply(static_cast<http::status_code>(response.status), std::move(body), "application/json")
      .then([in_flight = std::move(in_flight)](pplx::task<void> t) {
        try {
          t.get();
        } catch (...) {
          // The client went away before the reply was written; nothing to do.
        }
      });
}

void Handle(const std::shared_ptr<ServerState>& state, http::http_request request) {
  auto in_flight = std::make_shared<InFlight>(state);
  if (!state->token.empty()) {
    const auto& headers = request.headers();
    auto it = headers.find(http::header_names::authorization);
    if (it == headers.end()) {
      Reply(request, {401, Reason("missing Authorization: Bearer <token> header")}, in_flight);
      return;
    }
    const std::string& value = it->second;
    // The scheme name is case-insensitive (RFC 7235); the token is not.
    constexpr size_t kPrefix = 7;  // "Bearer "
    if (value.size() < kPrefix || strncasecmp(value.c_str(), "Bearer ", kPrefix) != 0 ||
        !TokenMatches(value.substr(kPrefix), state->token)) {
      Reply(request, {401, Reason("wrong bearer token")}, in_flight);
      return;
    }
  }
  // Read the body asynchronously: blocking a pool thread on it could starve the pool that
  // delivers it.
  request.extract_utf8string(true).then(
      [state, request, in_flight](pplx::task<std::string> body_task) mutable {
        HttpRequest req;
        req.method = request.method();
        req.path = request.request_uri().path();
        std::string body;
        try {
          body = body_task.get();
        } catch (const std::exception& e) {
          Reply(request, {400, Reason(std::string("cannot read request body: ") + e.what())},
                in_flight);
          return;
        }
        if (!body.empty()) {
          try {
            req.body = nlohmann::json::parse(body);
          } catch (const nlohmann::json::exception& e) {
            Reply(request, {400, Reason(std::string("request body is not JSON: ") + e.what())},
                  in_flight);
            return;
          }
        }
        Reply(request, Dispatch(*state, std::move(req)), in_flight);
      });
}

class ListenerServer : public HttpServer {
 public:
  ListenerServer(std::unique_ptr<http_listener> listener, std::shared_ptr<ServerState> state,
                 int port, std::string url)
      : listener_(std::move(listener)),
        state_(std::move(state)),
        port_(port),
        url_(std::move(url)) {}
  ~ListenerServer() override { Stop(); }

  int port() const override { return port_; }
  std::string url() const override { return url_; }

  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!listener_) return;
    // Replies being written when the owner decides to stop (e.g. the `done` that the coordinator
    // waited for its agents to hear) still reach their clients; closing cuts connections.
    state_->WaitIdle(kDrain);
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
  std::shared_ptr<ServerState> state_;
  int port_;
  std::string url_;
};

// Loads the certificate and key once up front so a wrong path or a key that does not match is
// reported at start, not as a TLS failure on the first connection.
Status CheckTlsFiles(const std::string& cert, const std::string& key) {
  try {
    boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_server);
    try {
      ctx.use_certificate_chain_file(cert);
    } catch (const std::exception& e) {
      return InvalidArgumentError("TLS certificate " + cert + ": " + e.what());
    }
    try {
      ctx.use_private_key_file(key, boost::asio::ssl::context::pem);
    } catch (const std::exception& e) {
      return InvalidArgumentError("TLS key " + key + ": " + e.what());
    }
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      return InvalidArgumentError("TLS key " + key + " does not match the certificate " + cert);
    }
  } catch (const std::exception& e) {
    return InternalError(std::string("TLS setup: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpServerOptions& options,
                                                      HttpHandler handler) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (tls) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return InvalidArgumentError("HTTPS needs both a certificate and a key file");
    }
    PR_RETURN_IF_ERROR(CheckTlsFiles(options.tls_cert_file, options.tls_key_file));
  }
  auto state = std::make_shared<ServerState>();
  state->token = options.token;
  state->handler = std::move(handler);

  http_listener_config config;
  if (tls) {
    config.set_ssl_context_callback([cert = options.tls_cert_file,
                                     key = options.tls_key_file](boost::asio::ssl::context& ctx) {
      ctx.set_options(boost::asio::ssl::context::default_workarounds |
                      boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                      boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1 |
                      boost::asio::ssl::context::single_dh_use);
      ctx.use_certificate_chain_file(cert);
      ctx.use_private_key_file(key, boost::asio::ssl::context::pem);
    });
  }
  const std::string scheme = tls ? "https://" : "http://";
  // An IPv6 literal needs brackets in a URL.
  const std::string host = options.host.find(':') != std::string::npos && options.host[0] != '['
                               ? "[" + options.host + "]"
                               : options.host;

  std::string last_error;
  // With port 0 the port is picked here and may be taken by someone else before the listener
  // binds it (cpprestsdk cannot bind port 0 and report it), so a failed bind picks again.
  const int attempts = options.port == 0 ? kBindAttempts : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    int port = options.port;
    if (port == 0) {
      PR_ASSIGN_OR_RETURN(port, PickFreePort(options.host));
    }
    std::string url = scheme + host + ":" + std::to_string(port);
    try {
      auto listener = std::make_unique<http_listener>(web::uri(url + "/"), config);
      listener->support([state](http::http_request request) { Handle(state, std::move(request)); });
      listener->open().wait();
      return std::unique_ptr<HttpServer>(
          std::make_unique<ListenerServer>(std::move(listener), state, port, url));
    } catch (const std::exception& e) {
      last_error = e.what();
    }
  }
  return UnavailableError(
      "cannot listen on " + scheme + host + ":" +
      (options.port == 0 ? std::string("<free port>") : std::to_string(options.port)) + " (" +
      std::to_string(attempts) + " attempt(s)): " + last_error);
}

}  // namespace parallelrun::rt::protocol
