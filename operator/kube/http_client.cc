// MakeHttpClient over cpprestsdk's http_client (Boost.Asio + OpenSSL on Linux).
// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include "operator/kube/http_client.h"

#include <cpprest/http_client.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "operator/kube/http_credentials.h"
#include "operator/kube/http_status.h"
#include "operator/kube/http_tls.h"

#ifndef PARALLELRUN_VERSION
#define PARALLELRUN_VERSION "dev"
#endif

namespace parallelrun::op::kube {
namespace {

namespace http = web::http;
using nlohmann::json;
using web::http::client::http_client;
using web::http::client::http_client_config;
using Clock = std::chrono::steady_clock;

// How much longer than the watch's own timeoutSeconds the connection may stay silent before it
// counts as broken (the server ends the watch itself at timeoutSeconds).
constexpr std::chrono::seconds kWatchSilenceMargin{30};
// With timeoutSeconds 0 the API server picks 30 to 60 minutes (--min-request-timeout, doubled at
// most).
constexpr std::chrono::seconds kServerDefaultWatchTimeout{3600};
// The most a watch reads from its body buffer at once.
constexpr size_t kMaxRead = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Errors.

// An exception from cpprestsdk/pplx while sending or reading.
Status TransportError(const std::string& what, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const http::http_exception& e) {
    if (e.error_code().value() == static_cast<int>(std::errc::timed_out)) {
      return rt::DeadlineExceededError(what + ": timed out: " + e.what());
    }
    return rt::UnavailableError(what + ": " + e.what());
  } catch (const pplx::task_canceled&) {
    return rt::UnavailableError(what + ": canceled");
  } catch (const std::exception& e) {
    return rt::UnavailableError(what + ": " + e.what());
  } catch (...) {
    return rt::UnavailableError(what + ": unknown error");
  }
}

// ---------------------------------------------------------------------------------------------
// Requests.

using Query = std::vector<std::pair<std::string, std::string>>;

std::string Encode(const Query& query) {
  std::string out;
  for (const auto& [key, value] : query) {
    out += (out.empty() ? "?" : "&") + key + "=" + web::uri::encode_data_string(value);
  }
  return out;
}

Query ListQuery(const ListOptions& o, bool watch) {
  Query q;
  if (!o.label_selector.empty()) q.emplace_back("labelSelector", o.label_selector);
  if (!o.field_selector.empty()) q.emplace_back("fieldSelector", o.field_selector);
  if (!o.resource_version.empty()) q.emplace_back("resourceVersion", o.resource_version);
  if (watch) {
    q.emplace_back("watch", "true");
    if (o.allow_watch_bookmarks) q.emplace_back("allowWatchBookmarks", "true");
    if (o.timeout_seconds > 0) q.emplace_back("timeoutSeconds", std::to_string(o.timeout_seconds));
  } else {
    if (o.limit > 0) q.emplace_back("limit", std::to_string(o.limit));
    if (!o.continue_token.empty()) q.emplace_back("continue", o.continue_token);
  }
  return q;
}

json DeleteBody(const DeleteOptions& o) {
  json body = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
  if (o.grace_period_seconds) body["gracePeriodSeconds"] = *o.grace_period_seconds;
  if (!o.propagation_policy.empty()) body["propagationPolicy"] = o.propagation_policy;
  if (!o.precondition_uid.empty()) body["preconditions"]["uid"] = o.precondition_uid;
  if (!o.precondition_resource_version.empty()) {
    body["preconditions"]["resourceVersion"] = o.precondition_resource_version;
  }
  return body;
}

std::string Dump(const json& j) {
  // Text from pods (messages, logs) need not be UTF-8; such bytes are replaced, not thrown on.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// What every request shares: where, who, how fast.
struct Endpoint {
  std::string server;
  std::string user_agent;
  std::unique_ptr<TokenSource> token;
  std::unique_ptr<RateLimiter> limiter;  // null: no limit
  http_client_config base_config;        // TLS set up; timeout set per client
};

// Builds the request (headers, body); errors only for a token file that cannot be read or a
// path cpprestsdk's URI parser rejects.
StatusOr<http::http_request> BuildRequest(Endpoint& ep, const std::string& verb,
                                          const std::string& path_and_query,
                                          const std::optional<std::string>& body,
                                          const std::string& content_type) {
  PR_ASSIGN_OR_RETURN(std::string token, ep.token->Get());
  http::http_request request(verb);
  try {
    request.set_request_uri(web::uri(path_and_query));
  } catch (const std::exception& e) {
    return rt::InvalidArgumentError(verb + " " + path_and_query + ": not a valid URI: " + e.what());
  }
  auto& headers = request.headers();
  if (!token.empty()) headers.add(http::header_names::authorization, "Bearer " + token);
  headers.add(http::header_names::user_agent, ep.user_agent);
  headers.add(http::header_names::accept, "application/json");
  if (body) request.set_body(*body, content_type);
  return request;
}

// ---------------------------------------------------------------------------------------------
// Watch.

// Shared between the WatchStream, its pending body read (a pplx continuation that may finish
// after the stream is gone) and Cancel() from another thread.
struct WatchState {
  std::mutex mu;
  std::condition_variable cv;
  // The response (set once the headers arrived).
  bool headers_done = false;
  std::optional<http::http_response> response;
  // The body as read so far and not yet returned as events.
  std::string pending;
  bool reading = false;
  bool eof = false;
  std::exception_ptr error;
  bool canceled = false;
  std::vector<uint8_t> chunk;  // getn's target; lives here because the read may outlive Next()
  pplx::cancellation_token_source cts;
  std::unique_ptr<http_client> client;
};

// Reads what has arrived, or waits for the next byte when nothing has, into state->pending.
// (The body is a producer_consumer_buffer that the connection fills without syncing, so a read
// of N bytes waits until N are there: never ask for more than is available.)
void StartRead(const std::shared_ptr<WatchState>& state) {
  auto buf = state->response->body().streambuf();
  const size_t want = std::clamp<size_t>(buf.in_avail(), 1, kMaxRead);
  state->chunk.resize(want);
  buf.getn(state->chunk.data(), want).then([state](pplx::task<size_t> t) {
    std::string got;
    std::exception_ptr error;
    bool eof = false;
    try {
      const size_t n = t.get();
      eof = n == 0;
      got.assign(reinterpret_cast<const char*>(state->chunk.data()), n);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(state->mu);
    state->pending += got;
    state->eof = state->eof || eof;
    if (error) state->error = error;
    state->reading = false;
    state->cv.notify_all();
  });
}

class HttpWatchStream : public WatchStream {
 public:
  HttpWatchStream(std::shared_ptr<WatchState> state, std::string what)
      : state_(std::move(state)), what_(std::move(what)) {}
  ~HttpWatchStream() override { Cancel(); }

  StatusOr<std::optional<WatchEvent>> Next() override {
    std::unique_lock<std::mutex> lock(state_->mu);
    while (true) {
      if (state_->canceled) return std::optional<WatchEvent>();
      std::string line;
      if (TakeLine(&line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        return Parse(line);
      }
      if (state_->error) return StreamError(state_->error);
      if (state_->eof) return std::optional<WatchEvent>();
      if (!state_->reading) {
        state_->reading = true;
        // getn may complete inline; its continuation takes the lock.
        lock.unlock();
        try {
          StartRead(state_);
        } catch (...) {
          lock.lock();
          state_->reading = false;
          return StreamError(std::current_exception());
        }
        lock.lock();
        continue;
      }
      state_->cv.wait(lock);
    }
  }

  void Cancel() override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->canceled) return;
      state_->canceled = true;
      state_->cv.notify_all();
    }
    // Closes the connection; a pending read then fails and its continuation lets go.
    state_->cts.cancel();
  }

 private:
  // A complete line from pending (the server's framing: one JSON object per line); at the end of
  // the stream, what is left without a newline.
  bool TakeLine(std::string* line) {
    std::string& p = state_->pending;
    size_t nl = p.find('\n');
    if (nl == std::string::npos) {
      if (!state_->eof || p.empty()) return false;
      nl = p.size();
    }
    *line = p.substr(0, nl);
    p.erase(0, std::min(p.size(), nl + 1));
    return true;
  }

  // A watch that goes silent for longer than its timeout has lost its connection: Unavailable,
  // not the DeadlineExceeded of a plain request.
  Status StreamError(const std::exception_ptr& error) const {
    Status s = TransportError(what_ + ": watch stream", error);
    if (s.code() == StatusCode::kDeadlineExceeded) return rt::UnavailableError(s.message());
    return s;
  }

  StatusOr<std::optional<WatchEvent>> Parse(const std::string& line) const {
    try {
      json j = json::parse(line);
      WatchEvent event;
      event.type = j.at("type").get<std::string>();
      event.object = j.value("object", json::object());
      return std::optional<WatchEvent>(std::move(event));
    } catch (const json::exception& e) {
      return rt::InternalError(what_ + ": watch event is not {\"type\", \"object\"} JSON: " +
                               e.what() + ": " + Quote(line));
    }
  }

  const std::shared_ptr<WatchState> state_;
  const std::string what_;
};

// ---------------------------------------------------------------------------------------------
// The client.

class HttpClient : public Client {
 public:
  HttpClient(std::unique_ptr<Endpoint> endpoint, const HttpClientOptions& options)
      : ep_(std::move(endpoint)), options_(options) {
    http_client_config config = ep_->base_config;
    config.set_timeout(options_.request_timeout);
    client_ = std::make_unique<http_client>(web::uri(ep_->server), config);
  }

  StatusOr<json> Get(const Resource& r, const std::string& ns, const std::string& name) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "GET"));
    return Call("GET", r.ObjectPath(ns, name), {}, std::nullopt, "");
  }

  StatusOr<json> List(const Resource& r, const std::string& ns,
                      const ListOptions& options) override {
    return Call("GET", r.CollectionPath(ns), ListQuery(options, false), std::nullopt, "");
  }

  StatusOr<json> Create(const Resource& r, const std::string& ns, const json& object) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "POST"));
    return Call("POST", r.CollectionPath(ns), {}, Dump(object), "application/json");
  }

  StatusOr<json> CreateDryRun(const Resource& r, const std::string& ns,
                              const json& object) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "POST"));
    return Call("POST", r.CollectionPath(ns), {{"dryRun", "All"}}, Dump(object),
                "application/json");
  }

  StatusOr<json> Update(const Resource& r, const std::string& ns, const json& object,
                        const std::string& subresource) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "PUT"));
    std::string name;
    if (object.contains("metadata") && object["metadata"].is_object()) {
      name = object["metadata"].value("name", "");
    }
    if (name.empty()) {
      return rt::InvalidArgumentError("PUT " + r.CollectionPath(ns) +
                                      ": the object has no metadata.name");
    }
    return Call("PUT", r.ObjectPath(ns, name, subresource), {}, Dump(object), "application/json");
  }

  StatusOr<json> Patch(const Resource& r, const std::string& ns, const std::string& name,
                       PatchType type, const json& patch, const std::string& subresource) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "PATCH"));
    Query q;
    if (type == PatchType::kApply) q = {{"fieldManager", kFieldManager}, {"force", "true"}};
    return Call("PATCH", r.ObjectPath(ns, name, subresource), q, Dump(patch),
                PatchContentType(type));
  }

  Status Delete(const Resource& r, const std::string& ns, const std::string& name,
                const DeleteOptions& options) override {
    PR_RETURN_IF_ERROR(CheckNamespace(r, ns, "DELETE"));
    return Call("DELETE", r.ObjectPath(ns, name), {}, Dump(DeleteBody(options)), "application/json")
        .status();
  }

  StatusOr<std::unique_ptr<WatchStream>> Watch(const Resource& r, const std::string& ns,
                                               const ListOptions& options) override {
    const std::string path = r.CollectionPath(ns);
    const std::string what = "GET " + path;
    auto state = std::make_shared<WatchState>();
    // Its own client: the silence allowed on a watch is not the plain request timeout.
    const auto silence =
        (options.timeout_seconds > 0 ? std::chrono::seconds(options.timeout_seconds)
                                     : kServerDefaultWatchTimeout) +
        kWatchSilenceMargin;
    http_client_config config = ep_->base_config;
    config.set_timeout(silence);
    try {
      state->client = std::make_unique<http_client>(web::uri(ep_->server), config);
    } catch (const std::exception& e) {
      return rt::InvalidArgumentError(what + ": " + e.what());
    }
    PR_ASSIGN_OR_RETURN(
        http::http_request request,
        BuildRequest(*ep_, "GET", path + Encode(ListQuery(options, true)), std::nullopt, ""));
    if (ep_->limiter) ep_->limiter->Acquire();
    try {
      state->client->request(request, state->cts.get_token())
          .then([state](pplx::task<http::http_response> t) {
            std::optional<http::http_response> response;
            std::exception_ptr error;
            try {
              response = t.get();
            } catch (...) {
              error = std::current_exception();
            }
            std::lock_guard<std::mutex> lock(state->mu);
            state->response = std::move(response);
            state->error = error;
            state->headers_done = true;
            state->cv.notify_all();
          });
    } catch (...) {
      return TransportError(what, std::current_exception());
    }
    {
      std::unique_lock<std::mutex> lock(state->mu);
      const auto deadline = Clock::now() + options_.request_timeout;
      if (!state->cv.wait_until(lock, deadline, [&] { return state->headers_done; })) {
        lock.unlock();
        state->cts.cancel();
        return rt::DeadlineExceededError(what + ": no response headers in " +
                                         std::to_string(options_.request_timeout.count()) + " s");
      }
      if (state->error) {
        auto error = state->error;
        state->error = nullptr;
        return TransportError(what, error);
      }
    }
    const int code = state->response->status_code();
    if (code != 200) {
      std::string body;
      try {
        body = state->response->extract_utf8string(true).get();
      } catch (...) {
        // The status code alone still says what happened.
      }
      state->cts.cancel();
      return HttpError(what, code, state->response->reason_phrase(), body);
    }
    return std::unique_ptr<WatchStream>(std::make_unique<HttpWatchStream>(state, what));
  }

 private:
  static Status CheckNamespace(const Resource& r, const std::string& ns, const std::string& verb) {
    if (r.namespaced && ns.empty()) {
      return rt::InvalidArgumentError(verb + " " + r.resource + ": a namespace is required");
    }
    return Status::Ok();
  }

  StatusOr<json> Call(const std::string& verb, const std::string& path, const Query& query,
                      const std::optional<std::string>& body, const std::string& content_type) {
    const std::string what = verb + " " + path;
    PR_ASSIGN_OR_RETURN(http::http_request request,
                        BuildRequest(*ep_, verb, path + Encode(query), body, content_type));
    if (ep_->limiter) ep_->limiter->Acquire();
    int code = 0;
    std::string phrase;
    std::string text;
    try {
      http::http_response response = client_->request(request).get();
      code = response.status_code();
      phrase = response.reason_phrase();
      text = response.extract_utf8string(true).get();
    } catch (...) {
      return TransportError(what, std::current_exception());
    }
    if (code < 200 || code >= 300) return HttpError(what, code, phrase, text);
    if (text.empty()) return json::object();
    try {
      return json::parse(text);
    } catch (const json::exception& e) {
      return rt::InternalError(what + ": " + std::to_string(code) +
                               " with a body that is not JSON: " + e.what());
    }
  }

  const std::unique_ptr<Endpoint> ep_;
  const HttpClientOptions options_;
  std::unique_ptr<http_client> client_;
};

// A client that cannot work: every call says why.
class BrokenClient : public Client {
 public:
  explicit BrokenClient(Status status) : status_(std::move(status)) {}
  StatusOr<json> Get(const Resource&, const std::string&, const std::string&) override {
    return status_;
  }
  StatusOr<json> List(const Resource&, const std::string&, const ListOptions&) override {
    return status_;
  }
  StatusOr<json> Create(const Resource&, const std::string&, const json&) override {
    return status_;
  }
  StatusOr<json> Update(const Resource&, const std::string&, const json&,
                        const std::string&) override {
    return status_;
  }
  StatusOr<json> Patch(const Resource&, const std::string&, const std::string&, PatchType,
                       const json&, const std::string&) override {
    return status_;
  }
  Status Delete(const Resource&, const std::string&, const std::string&,
                const DeleteOptions&) override {
    return status_;
  }
  StatusOr<std::unique_ptr<WatchStream>> Watch(const Resource&, const std::string&,
                                               const ListOptions&) override {
    return status_;
  }

 private:
  const Status status_;
};

}  // namespace

Status CheckRestConfig(const RestConfig& config) {
  const std::string& s = config.server;
  if (s.rfind("https://", 0) != 0 && s.rfind("http://", 0) != 0) {
    return rt::InvalidArgumentError("server \"" + s + "\": expected https://HOST[:PORT]");
  }
  try {
    web::uri uri(s);
    if (uri.host().empty()) throw std::invalid_argument("no host");
  } catch (const std::exception& e) {
    return rt::InvalidArgumentError("server \"" + s + "\": not a valid URL: " + e.what());
  }
  PR_RETURN_IF_ERROR(CheckTlsMaterial(config));
  if (!config.bearer_token_file.empty()) {
    PR_RETURN_IF_ERROR(TokenSource("", config.bearer_token_file).Get().status());
  }
  return Status::Ok();
}

std::unique_ptr<Client> MakeHttpClient(const RestConfig& config, const HttpClientOptions& options) {
  Status check = CheckRestConfig(config);
  if (!check.ok()) {
    const std::string what =
        config.source.empty() ? "Kubernetes client" : "Kubernetes client (" + config.source + ")";
    return std::make_unique<BrokenClient>(check.WithContext(what));
  }
  auto ep = std::make_unique<Endpoint>();
  ep->server = config.server;
  ep->user_agent = options.user_agent.empty()
                       ? std::string("parallelrun-operator/") + PARALLELRUN_VERSION
                       : options.user_agent;
  ep->token = std::make_unique<TokenSource>(config.bearer_token, config.bearer_token_file);
  if (options.qps > 0) ep->limiter = std::make_unique<RateLimiter>(options.qps, options.burst);
  ep->base_config = TlsConfig(config);
  try {
    return std::make_unique<HttpClient>(std::move(ep), options);
  } catch (const std::exception& e) {
    return std::make_unique<BrokenClient>(
        rt::InvalidArgumentError("server \"" + config.server + "\": " + e.what()));
  }
}

}  // namespace parallelrun::op::kube
