// StartHttpServer over Boost.Beast (HTTP/1.1 on Boost.Asio, header-only). Each connection reads
// the header first (size-limited, under a deadline), checks the bearer token and Content-Length on
// it, and only then reads the body (size-limited, under a deadline), so an unauthenticated client
// cannot grow the coordinator (cpprestsdk's http_listener, used before, could not do this).
#include "runtime/protocol/http_server.h"

#include <openssl/crypto.h>
#include <poll.h>
#include <strings.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/protocol/http_server_setup.h"

namespace parallelrun::rt::protocol {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using std::chrono::milliseconds;

// How long Stop() waits for requests being handled and replies being written.
constexpr milliseconds kDrain{2000};
// After an error reply that leaves a body unread: how much of it to read and drop (so the client
// gets the reply rather than a reset), and for how long.
constexpr size_t kLingerBytes = 1 << 20;
constexpr milliseconds kLinger{2000};
// Connections accepted at once from the backlog after each asynchronous accept.
constexpr int kAcceptBurst = 256;

nlohmann::json Reason(const std::string& reason) { return {{"reason", reason}}; }

// A request that is not HTTP (worth a 400) rather than a connection that ended or timed out.
bool IsParseError(beast::error_code ec) {
  return ec.category() == beast::error_code(bhttp::error::bad_target).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
         ec != bhttp::error::need_more && ec != bhttp::error::need_buffer;
}

// Compares without an early exit so the time taken does not reveal how much of a guess matched.
bool TokenMatches(std::string_view given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  return CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// Empty when the request's Authorization header carries the token, else what is wrong.
std::string CheckToken(const bhttp::request_header<>& header, const std::string& token) {
  if (token.empty()) return "";
  auto it = header.find(bhttp::field::authorization);
  if (it == header.end()) return "missing Authorization: Bearer <token> header";
  std::string_view value(it->value().data(), it->value().size());
  // The scheme name is case-insensitive (RFC 7235); the token is not.
  constexpr size_t kPrefix = 7;  // "Bearer "
  if (value.size() < kPrefix || strncasecmp(value.data(), "Bearer ", kPrefix) != 0 ||
      !TokenMatches(value.substr(kPrefix), token)) {
    return "wrong bearer token";
  }
  return "";
}

HttpResponse Dispatch(const HttpHandler& handler, const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const nlohmann::json::exception& e) {
    // The handler decoding the body into a message found a field of the wrong type or range.
    return {400, Reason(std::string("request body does not match the message: ") + e.what())};
  } catch (const std::exception& e) {
    return {500, Reason(std::string("internal error: ") + e.what())};
  } catch (...) {
    return {500, Reason("internal error: unknown exception")};
  }
}

class Session;

// Everything the connections share. Sessions hold a plain pointer: they live inside the
// io_contexts' handlers, and `iocs` is declared last, so it is destroyed (with them) first.
// One io_context per thread, each connection on one of them: with one io_context run by several
// threads, asio woke another thread for nearly every step of every request.
struct ServerState {
  HttpServerOptions options;
  HttpHandler handler;
  std::optional<ssl::context> tls;

  std::mutex mu;
  std::condition_variable changed;
  int in_flight = 0;    // requests from their header until their reply is written
  int connections = 0;  // open sessions
  bool stopping = false;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;

  std::vector<std::unique_ptr<net::io_context>> iocs;  // iocs[0] also runs the acceptor
  std::atomic<size_t> next_ioc{0};

  net::io_context& NextContext() { return *iocs[next_ioc++ % iocs.size()]; }

  void Begin() {
    std::lock_guard<std::mutex> lock(mu);
    ++in_flight;
  }
  void End() {
    std::lock_guard<std::mutex> lock(mu);
    --in_flight;
    changed.notify_all();
  }
  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu);
    return stopping;
  }
};

// One connection: requests one after another (keep-alive), each header read and checked before
// its body. All its handlers run on its strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerState* state, tcp::socket socket) : state_(state) {
    if (state_->tls) {
      tls_.emplace(beast::tcp_stream(std::move(socket)), *state_->tls);
    } else {
      plain_.emplace(std::move(socket));
    }
  }
  ~Session() {
    if (in_request_) state_->End();
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->sessions.erase(this);
    --state_->connections;
    state_->changed.notify_all();
  }

  void Start() {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->sessions.emplace(this, weak_from_this());
    }
    if (!tls_) return ReadRequest();
    Tcp().expires_after(milliseconds(state_->options.header_timeout_ms));
    tls_->async_handshake(ssl::stream_base::server,
                          [self = shared_from_this()](beast::error_code ec) {
                            if (ec) return self->Abort();
                            self->ReadRequest();
                          });
  }

  // Stop(): ends the connection now (posted to its strand).
  void Abort() {
    beast::error_code ec;
    Tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    Tcp().close();
  }

  beast::tcp_stream& Tcp() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

 private:
  template <typename F>
  void WithStream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(*plain_);
    }
  }

  // Waits for the next request's first bytes (idle: keep-alive; a new connection gets the header
  // timeout), then for its whole header within the header timeout.
  void ReadRequest() {
    if (state_->Stopping()) return Abort();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(state_->options.max_header_bytes));
    // The body limit is set once the header passed the checks: set now, a Content-Length over it
    // would fail the header read before the token is looked at. (Not boost::none: Boost 1.74
    // compares a Content-Length with a disabled limit as exceeding it.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (buffer_.size() > 0) return ReadHeader();
    const int wait_ms =
        served_ > 0 ? state_->options.idle_timeout_ms : state_->options.header_timeout_ms;
    Tcp().expires_after(milliseconds(wait_ms));
    WithStream([&](auto& stream) {
      stream.async_read_some(buffer_.prepare(4096),
                             [self = shared_from_this()](beast::error_code ec, size_t n) {
                               if (ec) return self->Abort();
                               self->buffer_.commit(n);
                               self->ReadHeader();
                             });
    });
  }

  void ReadHeader() {
    Tcp().expires_after(milliseconds(state_->options.header_timeout_ms));
    WithStream([&](auto& stream) {
      bhttp::async_read_header(
          stream, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
    });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) {
      return Reject(431, "request header larger than " +
                             std::to_string(state_->options.max_header_bytes) + " bytes");
    }
    if (ec && IsParseError(ec)) return Reject(400, "malformed request: " + ec.message());
    if (ec) return Abort();  // timed out, closed or reset by the client
    in_request_ = true;
    state_->Begin();
    const auto& header = parser_->get();
    if (std::string why = CheckToken(header, state_->options.token); !why.empty()) {
      return Reject(401, why);
    }
    if (parser_->content_length() && *parser_->content_length() > state_->options.max_body_bytes) {
      return Reject(413, "request body of " + std::to_string(*parser_->content_length()) +
                             " bytes is larger than the limit of " +
                             std::to_string(state_->options.max_body_bytes));
    }
    parser_->body_limit(state_->options.max_body_bytes);  // a chunked body is counted as read
    auto expect = header.find(bhttp::field::expect);
    if (expect != header.end() && beast::iequals(expect->value(), "100-continue")) {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                       header.version());
      Tcp().expires_after(milliseconds(state_->options.body_timeout_ms));
      WithStream([&](auto& stream) {
        bhttp::async_write(stream, *cont,
                           [self = shared_from_this(), cont](beast::error_code ec, size_t) {
                             if (ec) return self->Abort();
                             self->ReadBody();
                           });
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    Tcp().expires_after(milliseconds(state_->options.body_timeout_ms));
    WithStream([&](auto& stream) {
      bhttp::async_read(
          stream, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
    });
  }

  void OnBody(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      return Reject(413, "request body larger than the limit of " +
                             std::to_string(state_->options.max_body_bytes) + " bytes");
    }
    if (ec && IsParseError(ec)) return Reject(400, "malformed request body: " + ec.message());
    // A client that shut its side gave up waiting: no answer (no lease) may go to it (see .h).
    pollfd peer{Tcp().socket().native_handle(), POLLRDHUP, 0};
    const bool gone = ::poll(&peer, 1, 0) == 1 && (peer.revents & (POLLRDHUP | POLLHUP | POLLERR));
    if (ec || gone) return Abort();
    auto& message = parser_->get();
    HttpRequest req;
    req.method = std::string(message.method_string());
    std::string target(message.target());
    req.path = target.substr(0, target.find('?'));
    HttpResponse response;
    if (!message.body().empty()) {
      try {
        req.body = nlohmann::json::parse(message.body());
      } catch (const nlohmann::json::exception& e) {
        response = {400, Reason(std::string("request body is not JSON: ") + e.what())};
      }
    }
    if (response.status == 200) response = Dispatch(state_->handler, req);
    Write(response, message.keep_alive() && !state_->Stopping(), false);
  }

  // An error found before the body was read: the reply, then the connection ends.
  void Reject(int status, const std::string& reason) {
    Write({status, Reason(reason)}, false, true);
  }

  // The reply as one buffer (status line, three fields, body) and one write: Beast's response
  // serializer cost more than the send on the coordinator's hot path.
  void Write(const HttpResponse& response, bool keep_alive, bool linger) {
    const std::string body =
        response.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(response.status));
    auto out = std::make_shared<std::string>();
    out->reserve(body.size() + 128);
    *out += "HTTP/1.1 ";
    *out += std::to_string(response.status);
    *out += ' ';
    out->append(reason.data(), reason.size());
    *out += "\r\nContent-Type: application/json\r\n";
    if (!keep_alive) *out += "Connection: close\r\n";
    *out += "Content-Length: ";
    *out += std::to_string(body.size());
    *out += "\r\n\r\n";
    *out += body;
    Tcp().expires_after(milliseconds(state_->options.body_timeout_ms));
    WithStream([&](auto& stream) {
      net::async_write(
          stream, net::buffer(*out),
          [self = shared_from_this(), out, keep_alive, linger](beast::error_code ec, size_t) {
            self->OnWritten(ec, keep_alive, linger);
          });
    });
  }

  void OnWritten(beast::error_code ec, bool keep_alive, bool linger) {
    if (in_request_) {
      in_request_ = false;
      state_->End();
    }
    ++served_;
    if (ec || !keep_alive) {
      if (ec || !linger) return Abort();
      return Linger();
    }
    ReadRequest();
  }

  // Stops sending, then reads and drops what the client still sends (a body that was refused),
  // up to kLingerBytes for kLinger, so it reads the reply instead of getting a reset.
  void Linger() {
    beast::error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    Tcp().expires_after(kLinger);
    DrainSome();
  }
  void DrainSome() {
    Tcp().async_read_some(net::buffer(drain_),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->drained_ += n;
                            if (ec || self->drained_ >= kLingerBytes) return self->Abort();
                            self->DrainSome();
                          });
  }

  ServerState* state_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool in_request_ = false;
  int64_t served_ = 0;
  std::array<char, 16384> drain_{};
  size_t drained_ = 0;
};

// Accepts connections up to the cap; beyond it a new connection is closed at once.
class Acceptor : public std::enable_shared_from_this<Acceptor> {
 public:
  Acceptor(ServerState* state, tcp::acceptor acceptor)
      : state_(state), acceptor_(std::move(acceptor)), retry_(acceptor_.get_executor()) {}

  void Accept() {
    acceptor_.async_accept(net::make_strand(state_->NextContext()),
                           [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                             self->OnAccept(ec, std::move(socket));
                           });
  }

  void Close() {
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
  }
  tcp::acceptor& acceptor() { return acceptor_; }

 private:
  void OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of file descriptors and the like: try again shortly rather than spin.
      retry_.expires_after(milliseconds(100));
      retry_.async_wait([self = shared_from_this()](beast::error_code e) {
        if (!e) self->Accept();
      });
      return;
    }
    Admit(std::move(socket));
    // Then whatever else waits in the backlog, without going back to the io_context's queue for
    // each one: with a thousand agents' connections busy, one accept per turn of that queue let
    // ~900 connections wait seconds in the backlog (bench/coordinator_scale --many-agents).
    for (int i = 0; i < kAcceptBurst; ++i) {
      tcp::socket next(net::make_strand(state_->NextContext()));
      beast::error_code more;
      acceptor_.accept(next, more);  // non-blocking (Listen): would_block when the backlog is empty
      if (more) break;               // errors other than would_block surface in the async accept
      Admit(std::move(next));
    }
    Accept();
  }

  void Admit(tcp::socket socket) {
    bool admit = false;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (!state_->stopping && state_->connections < state_->options.max_connections) {
        ++state_->connections;
        admit = true;
      }
    }
    if (admit) {
      std::make_shared<Session>(state_, std::move(socket))->Start();
    } else {
      beast::error_code ignored;
      socket.close(ignored);
    }
  }

  ServerState* state_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
};

class BeastServer : public HttpServer {
 public:
  BeastServer(std::shared_ptr<ServerState> state, std::shared_ptr<Acceptor> acceptor, int port,
              std::string url)
      : state_(std::move(state)),
        acceptor_(std::move(acceptor)),
        port_(port),
        url_(std::move(url)) {}
  ~BeastServer() override { Stop(); }

  // One thread per io_context (ServerState::iocs).
  void Run() {
    auto exited = std::make_shared<std::atomic<int>>(0);
    exited_ = exited;
    for (auto& ioc : state_->iocs) {
      work_.push_back(net::make_work_guard(*ioc));
      threads_.emplace_back([state = state_, exited, ioc = ioc.get()] {
        ioc->run();
        std::lock_guard<std::mutex> lock(state->mu);
        ++*exited;
        state->changed.notify_all();
      });
    }
  }

  int port() const override { return port_; }
  std::string url() const override { return url_; }
  void Stop() override;

 private:
  std::mutex mu_;
  bool stopped_ = false;
  std::shared_ptr<ServerState> state_;
  std::shared_ptr<Acceptor> acceptor_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::shared_ptr<std::atomic<int>> exited_;
  int port_;
  std::string url_;
};

void BeastServer::Stop() {
  std::lock_guard<std::mutex> stop_lock(mu_);
  if (stopped_) return;
  stopped_ = true;
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->stopping = true;
  lock.unlock();
  // No new connections; then requests being handled and replies being written get kDrain to
  // finish (a reply the owner waited for its clients to get, such as the coordinator's `done`,
  // is not cut off); then every connection is closed.
  auto closed = std::make_shared<std::promise<void>>();
  auto closed_future = closed->get_future();
  net::post(acceptor_->acceptor().get_executor(), [acceptor = acceptor_, closed] {
    acceptor->Close();
    closed->set_value();
  });
  closed_future.wait_for(kDrain);
  lock.lock();
  state_->changed.wait_for(lock, kDrain, [&] { return state_->in_flight == 0; });
  std::vector<std::shared_ptr<Session>> open;
  for (auto& [raw, weak] : state_->sessions) {
    if (auto session = weak.lock()) open.push_back(std::move(session));
  }
  lock.unlock();
  // Outside the lock: a session's destructor takes it.
  for (auto& session : open) {
    net::post(session->Tcp().get_executor(), [session] { session->Abort(); });
  }
  open.clear();
  lock.lock();
  state_->changed.wait_for(lock, kDrain, [&] { return state_->connections == 0; });
  lock.unlock();
  for (auto& work : work_) work.reset();
  for (auto& ioc : state_->iocs) ioc->stop();
  lock.lock();
  const int threads = static_cast<int>(threads_.size());
  const bool all = state_->changed.wait_for(lock, kDrain, [&] { return *exited_ == threads; });
  lock.unlock();
  // A thread still inside a handler that does not return holds the state alive by itself.
  for (auto& t : threads_) all ? t.join() : t.detach();
  threads_.clear();
}

}  // namespace

StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpServerOptions& options,
                                                      HttpHandler handler) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  auto state = std::make_shared<ServerState>();
  state->options = options;
  state->handler = std::move(handler);
  if (tls) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return InvalidArgumentError("HTTPS needs both a certificate and a key file");
    }
    PR_ASSIGN_OR_RETURN(ssl::context ctx,
                        MakeTlsContext(options.tls_cert_file, options.tls_key_file));
    state->tls.emplace(std::move(ctx));
  }
  // An IPv6 literal needs brackets in a URL.
  const std::string host = options.host.find(':') != std::string::npos && options.host[0] != '['
                               ? "[" + options.host + "]"
                               : options.host;
  RaiseOpenFileLimit(options.max_connections);
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    state->iocs.push_back(std::make_unique<net::io_context>(1));
  }
  PR_ASSIGN_OR_RETURN(tcp::acceptor listening, Listen(*state->iocs[0], host, options.port));
  const int port = listening.local_endpoint().port();
  auto acceptor = std::make_shared<Acceptor>(state.get(), std::move(listening));
  acceptor->Accept();
  auto server = std::make_unique<BeastServer>(
      state, acceptor, port, (tls ? "https://" : "http://") + host + ":" + std::to_string(port));
  server->Run();
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace parallelrun::rt::protocol
