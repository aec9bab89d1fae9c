// MakeHttpCoordinatorClient over Boost.Beast (HTTP/1.1 on Boost.Asio, header-only, as the server).
//
// Each call runs on the calling thread: it takes an idle keep-alive connection (or opens one),
// writes the request and reads the reply with asynchronous operations driven by the connection's
// own io_context on that thread, under one deadline for the whole call. No thread pool and no
// hand-off between threads: a call costs its system calls and little else (cpprestsdk's client,
// used before, woke two pool threads per call and kept ~40 threads per process). Connections
// are shared by the threads that call, one call at a time each.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "runtime/protocol/coordinator_client.h"

namespace parallelrun::rt::protocol {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

// The largest reply read (a registration carries the job's spec; a lease call up to a few hundred
// leases with their file lists).
constexpr uint64_t kMaxReplyBytes = uint64_t{256} << 20;
// Idle connections kept for later calls (one per calling thread is the usual need).
constexpr size_t kMaxIdle = 8;

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

// http(s)://HOST[:PORT][/PREFIX]; HOST may be an [IPv6] literal.
struct Endpoint {
  bool tls = false;
  std::string host;
  std::string port;
  std::string prefix;  // prepended to every request path, without a trailing '/'
  std::string host_header;
};

StatusOr<Endpoint> ParseUrl(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("coordinator URL " + url + ": expected http(s)://HOST:PORT (" +
                                why + ")");
  };
  Endpoint e;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    e.tls = true;
    rest = url.substr(8);
  } else {
    return bad("no http:// or https:// scheme");
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) e.prefix = rest.substr(slash);
  while (!e.prefix.empty() && e.prefix.back() == '/') e.prefix.pop_back();
  e.host_header = authority;
  size_t colon = std::string::npos;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unclosed [ in the host");
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("text after the host");
      colon = close + 1;
    }
  } else {
    colon = authority.rfind(':');
    e.host = authority.substr(0, colon);
  }
  e.port = colon == std::string::npos ? (e.tls ? "443" : "80") : authority.substr(colon + 1);
  if (e.host.empty()) return bad("no host");
  if (e.port.empty() || e.port.find_first_not_of("0123456789") != std::string::npos ||
      e.port.size() > 5 || std::stoi(e.port) > 65535) {
    return bad("port \"" + e.port + "\" is not a number from 0 to 65535");
  }
  if (authority.find_first_of(" @") != std::string::npos) return bad("unexpected characters");
  return e;
}

// One keep-alive connection with the io_context that drives it (on the calling thread).
struct Connection {
  net::io_context ioc{1};
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  bool used = false;  // has carried a call (a failure may then be a stale keep-alive)
  bool keep = false;  // the last reply left it open for another call

  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

// Runs one asynchronous operation to its end on this thread. The stream's deadline (set by the
// caller) closes the socket when it passes, which ends the operation with beast::error::timeout.
template <typename Start>
beast::error_code RunOp(Connection& c, Start&& start) {
  beast::error_code result = net::error::would_block;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  c.ioc.restart();
  c.ioc.run();
  return result;
}

class BeastCoordinatorClient : public CoordinatorClient {
 public:
  BeastCoordinatorClient(const HttpClientOptions& options, Endpoint endpoint,
                         std::shared_ptr<ssl::context> tls)
      : base_url_(options.base_url),
        authorization_("Bearer " + options.token),
        timeout_(options.timeout_seconds > 0 ? options.timeout_seconds : 30),
        endpoint_(std::move(endpoint)),
        tls_(std::move(tls)) {}

  StatusOr<RegisterResponse> Register(const RegisterRequest& req) override {
    return Call<RegisterResponse>(bhttp::verb::post, "/v1/register", req);
  }
  StatusOr<LeaseResponse> Lease(const LeaseRequest& req) override {
    return Call<LeaseResponse>(bhttp::verb::post, "/v1/lease", req);
  }
  StatusOr<ResultsResponse> Report(const ResultsRequest& req) override {
    return Call<ResultsResponse>(bhttp::verb::post, "/v1/results", req);
  }
  StatusOr<Progress> GetProgress() override {
    return Call<Progress>(bhttp::verb::get, "/v1/progress", nlohmann::json());
  }

 private:
  struct Reply {
    int code = 0;
    std::string body;
  };

  template <typename Response, typename Request>
  StatusOr<Response> Call(bhttp::verb method, const std::string& path, const Request& body) {
    const std::string what = std::string(bhttp::to_string(method)) + " " + base_url_ + path;
    bhttp::request<bhttp::string_body> request{method, endpoint_.prefix + path, 11};
    request.set(bhttp::field::host, endpoint_.host_header);
    request.set(bhttp::field::authorization, authorization_);
    request.set(bhttp::field::user_agent, "parallelrun");
    nlohmann::json j = body;
    // A traceback or a file name need not be UTF-8; such bytes are replaced rather than thrown on.
    if (!j.is_null()) {
      request.set(bhttp::field::content_type, "application/json");
      request.body() = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    request.prepare_payload();

    StatusOr<Reply> reply = Exchange(request);
    if (!reply.ok()) return UnavailableError(what + ": " + reply.status().message());
    const int code = reply->code;
    const std::string& text = reply->body;
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

  // Sends the request and reads the reply under one deadline. A kept connection the server has
  // closed meanwhile (its idle timeout) fails before any reply byte: the request is sent once more
  // on a new connection (the server never read it).
  StatusOr<Reply> Exchange(const bhttp::request<bhttp::string_body>& request) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::unique_ptr<Connection> c = TakeIdle();
    if (c) {
      bool stale = false;
      StatusOr<Reply> reply = Send(*c, request, deadline, &stale);
      if (reply.ok() || !stale) return Finish(std::move(c), std::move(reply));
    }
    c = std::make_unique<Connection>();
    if (Status st = Open(*c, deadline); !st.ok()) return st;
    bool stale = false;
    return Finish(std::move(c), Send(*c, request, deadline, &stale));
  }

  StatusOr<Reply> Finish(std::unique_ptr<Connection> c, StatusOr<Reply> reply) {
    if (reply.ok()) Keep(std::move(c));
    return reply;
  }

  Status Open(Connection& c, std::chrono::steady_clock::time_point deadline) {
    beast::error_code ec;
    tcp::resolver resolver(c.ioc);
    auto addresses = resolver.resolve(endpoint_.host, endpoint_.port, ec);
    if (ec) return UnavailableError("cannot resolve " + endpoint_.host + ": " + ec.message());
    if (tls_) {
      c.secure.emplace(c.ioc, *tls_);
    } else {
      c.plain.emplace(c.ioc);
    }
    c.lowest().expires_at(deadline);
    ec = RunOp(c, [&](auto handler) { c.lowest().async_connect(addresses, std::move(handler)); });
    if (ec) return UnavailableError(Describe("connect", ec));
    c.lowest().socket().set_option(tcp::no_delay(true), ec);
    if (!c.secure) return Status::Ok();
    // SNI, and the certificate must name the host (or its IP address).
    if (!SSL_set_tlsext_host_name(c.secure->native_handle(), endpoint_.host.c_str())) {
      return UnavailableError("TLS: cannot set the server name " + endpoint_.host);
    }
    c.secure->set_verify_callback(ssl::host_name_verification(endpoint_.host), ec);
    ec = RunOp(c, [&](auto handler) {
      c.secure->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (ec) return UnavailableError(Describe("TLS handshake", ec));
    return Status::Ok();
  }

  StatusOr<Reply> Send(Connection& c, const bhttp::request<bhttp::string_body>& request,
                       std::chrono::steady_clock::time_point deadline, bool* stale) {
    const bool reused = c.used;
    c.used = true;
    c.lowest().expires_at(deadline);
    beast::error_code ec = RunOp(c, [&](auto handler) {
      if (c.secure) {
        bhttp::async_write(*c.secure, request, std::move(handler));
      } else {
        bhttp::async_write(*c.plain, request, std::move(handler));
      }
    });
    if (ec) {
      *stale = reused && ec != beast::error::timeout;
      return UnavailableError(Describe("sending the request", ec));
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(kMaxReplyBytes);
    ec = RunOp(c, [&](auto handler) {
      if (c.secure) {
        bhttp::async_read(*c.secure, c.buffer, parser, std::move(handler));
      } else {
        bhttp::async_read(*c.plain, c.buffer, parser, std::move(handler));
      }
    });
    if (ec) {
      *stale = reused && ec != beast::error::timeout && !parser.got_some();
      return UnavailableError(Describe("reading the reply", ec));
    }
    bhttp::response<bhttp::string_body> response = parser.release();
    c.keep = response.keep_alive();
    return Reply{static_cast<int>(response.result_int()), std::move(response.body())};
  }

  std::string Describe(const char* step, const beast::error_code& ec) const {
    if (ec == beast::error::timeout) {
      return step + std::string(": no answer within ") + std::to_string(timeout_.count()) + " s";
    }
    return step + std::string(": ") + ec.message();
  }

  std::unique_ptr<Connection> TakeIdle() {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.empty()) return nullptr;
    std::unique_ptr<Connection> c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }

  void Keep(std::unique_ptr<Connection> c) {
    if (!c->keep) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
  }

  const std::string base_url_;
  const std::string authorization_;
  const std::chrono::seconds timeout_;
  const Endpoint endpoint_;
  const std::shared_ptr<ssl::context> tls_;  // null: plain HTTP
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
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

StatusOr<std::shared_ptr<ssl::context>> TlsContext(const std::string& ca_file) {
  try {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx->set_verify_mode(ssl::verify_peer);
    if (ca_file.empty()) {
      ctx->set_default_verify_paths();
    } else {
      ctx->load_verify_file(ca_file);
    }
    return ctx;
  } catch (const std::exception& e) {
    return InvalidArgumentError("CA file " + ca_file + ": " + e.what());
  }
}

}  // namespace

std::unique_ptr<CoordinatorClient> MakeHttpCoordinatorClient(const HttpClientOptions& options) {
  StatusOr<Endpoint> endpoint = ParseUrl(options.base_url);
  if (!endpoint.ok()) return std::make_unique<BrokenClient>(endpoint.status());
  std::shared_ptr<ssl::context> tls;
  // A CA file is checked even for http://: a mistake is said up front, not on the first https.
  if (endpoint->tls || !options.ca_file.empty()) {
    auto ctx = TlsContext(options.ca_file);
    if (!ctx.ok()) return std::make_unique<BrokenClient>(ctx.status());
    if (endpoint->tls) tls = std::move(*ctx);
  }
  return std::make_unique<BeastCoordinatorClient>(options, std::move(*endpoint), std::move(tls));
}

}  // namespace parallelrun::rt::protocol
