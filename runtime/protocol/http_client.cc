// MakeHttpCoordinatorClient over cpprestsdk's http_client (asio on Linux).
// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include <cpprest/http_client.h>

#include <boost/asio/ssl.hpp>
#include <exception>
#include <utility>

#include "runtime/protocol/coordinator_client.h"

namespace parallelrun::rt::protocol {
namespace {

namespace http = web::http;
using web::http::client::http_client;
using web::http::client::http_client_config;

// The server's own words for an error: {"reason": ...} from our server, a few common spellings
// from anything else in between (proxies), else the raw body.
std::string ServerReason(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    if (j.is_object()) {
      for (const char* key : {"reason", "error", "message"}) {
        auto it = j.find(key);
        if (it != j.end() && it->is_string()) return it->get<std::string>();
      }
    }
  } catch (const nlohmann::json::exception&) {
  }
  return text.size() > 500 ? text.substr(0, 500) + "..." : text;
}

// cpprestsdk's http_client is safe to use from several threads at once (each request is its
// own asio operation over a shared connection pool), so no lock is needed here.
class HttpCoordinatorClient : public CoordinatorClient {
 public:
  HttpCoordinatorClient(const HttpClientOptions& options, http_client_config config)
      : base_url_(options.base_url),
        authorization_("Bearer " + options.token),
        client_(web::uri(options.base_url), config) {}

  StatusOr<RegisterResponse> Register(const RegisterRequest& req) override {
    return Call<RegisterResponse>(http::methods::POST, "/v1/register", req);
  }
  StatusOr<LeaseResponse> Lease(const LeaseRequest& req) override {
    return Call<LeaseResponse>(http::methods::POST, "/v1/lease", req);
  }
  StatusOr<ResultsResponse> Report(const ResultsRequest& req) override {
    return Call<ResultsResponse>(http::methods::POST, "/v1/results", req);
  }
  StatusOr<Progress> GetProgress() override {
    return Call<Progress>(http::methods::GET, "/v1/progress", nlohmann::json());
  }

 private:
  template <typename Response, typename Request>
  StatusOr<Response> Call(const http::method& method, const std::string& path,
                          const Request& body) {
    const std::string what = method + " " + base_url_ + path;
    http::http_request request(method);
    request.set_request_uri(web::uri(path));
    request.headers().add(http::header_names::authorization, authorization_);
    nlohmann::json j = body;
    // A traceback or a file name need not be UTF-8; such bytes are replaced rather than thrown on.
    if (!j.is_null()) {
      request.set_body(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "application/json");
    }

    int code = 0;
    std::string text;
    try {
      http::http_response response = client_.request(request).get();
      code = response.status_code();
      text = response.extract_utf8string(true).get();
    } catch (const std::exception& e) {
      // Connection refused or reset, DNS, TLS handshake, timeout: all worth retrying.
      return UnavailableError(what + ": " + e.what());
    }
    if (code == 401 || code == 403) {
      return UnauthenticatedError(what + ": " + std::to_string(code) + " " + ServerReason(text));
    }
    if (code == 400) return InvalidArgumentError(what + ": " + ServerReason(text));
    if (code == 404) return NotFoundError(what + ": 404 " + ServerReason(text));
    if (code == 409) return AbortedError(what + ": 409 " + ServerReason(text));
    if (code == 429 || code >= 500) {
      return UnavailableError(what + ": " + std::to_string(code) + " " + ServerReason(text));
    }
    if (code < 200 || code >= 300) {
      return InternalError(what + ": unexpected status " + std::to_string(code) + " " +
                           ServerReason(text));
    }
    try {
      return nlohmann::json::parse(text).get<Response>();
    } catch (const nlohmann::json::exception& e) {
      return InternalError(what + ": response is not the expected JSON: " + e.what());
    }
  }

  const std::string base_url_;
  const std::string authorization_;
  http_client client_;
};

// A client that cannot work (bad URL, unreadable CA file): every call says why, so the caller
// reports it where it would report any other coordinator error.
class BrokenClient : public CoordinatorClient {
 public:
  explicit BrokenClient(Status status) : status_(std::move(status)) {}
  StatusOr<RegisterResponse> Register(const RegisterRequest&) override { return status_; }
  StatusOr<LeaseResponse> Lease(const LeaseRequest&) override { return status_; }
  StatusOr<ResultsResponse> Report(const ResultsRequest&) override { return status_; }
  StatusOr<Progress> GetProgress() override { return status_; }

 private:
  const Status status_;
};

}  // namespace

std::unique_ptr<CoordinatorClient> MakeHttpCoordinatorClient(const HttpClientOptions& options) {
  if (!options.ca_file.empty()) {
    // Checked here: inside cpprestsdk a CA file that fails to load surfaces only as an opaque
    // handshake error on every request.
    try {
      boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
      ctx.load_verify_file(options.ca_file);
    } catch (const std::exception& e) {
      return std::make_unique<BrokenClient>(
          InvalidArgumentError("CA file " + options.ca_file + ": " + e.what()));
    }
  }
  http_client_config config;
  config.set_timeout(
      std::chrono::seconds(options.timeout_seconds > 0 ? options.timeout_seconds : 30));
  if (!options.ca_file.empty()) {
    config.set_ssl_context_callback(
        [ca = options.ca_file](boost::asio::ssl::context& ctx) { ctx.load_verify_file(ca); });
  }
  try {
    return std::make_unique<HttpCoordinatorClient>(options, std::move(config));
  } catch (const std::exception& e) {
    return std::make_unique<BrokenClient>(
        InvalidArgumentError("coordinator URL " + options.base_url +
                             ": expected http(s)://HOST:PORT (" + e.what() + ")"));
  }
}

}  // namespace parallelrun::rt::protocol
