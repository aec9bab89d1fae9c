// The HTTP adapters end to end on loopback: StartHttpServer + MakeHttpCoordinatorClient.
// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include <arpa/inet.h>
#include <cpprest/http_client.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "runtime/base/process.h"
#include "runtime/protocol/coordinator_client.h"
#include "runtime/protocol/http_server.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/wait_for.h"

// LeakSanitizer (asan preset): OpenSSL gives every thread that touches TLS its own error state,
// freed when the thread exits; cpprestsdk's pool threads live until the process ends, so those
// states are reported at exit. They are bounded by the pool size, and libcrypto has no frame
// pointers to tell them apart from anything else it allocates.
// cpprestsdk also leaves pplx continuation tasks of a client whose server went away pending on its
// pool at exit (seen in HttpTest.StoppedServerIsUnavailable under CI load): library-internal, not
// ours.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\nleak:libcpprest.so\nleak:pplx::\n";
}

namespace parallelrun::rt::protocol {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "s3cret-token";

using fakes::WaitFor;

// A tiny coordinator: enough behaviour to see that every message crosses the wire intact.
HttpResponse FakeCoordinator(const HttpRequest& req) {
  if (req.path == "/v1/register") {
    auto r = req.body.get<RegisterRequest>();
    RegisterResponse resp;
    resp.spec = {{"spec", {{"processCountPerNode", 2}}}};
    resp.code_dir = "/code";
    resp.output_dir = "/out/" + r.node;
    resp.arguments = {"--pid", std::to_string(r.pid)};
    resp.lease_seconds = 42;
    return {200, resp};
  }
  if (req.path == "/v1/lease") {
    auto r = req.body.get<LeaseRequest>();
    LeaseResponse resp;
    for (int i = 0; i < r.max; ++i) {
      Lease l;
      l.mini_batch_id = i;
      l.files = {"/in/" + std::to_string(i)};
      l.items = 1;
      resp.leases.push_back(l);
    }
    resp.cancel = r.renew;
    resp.retry_after_ms = 7;
    return {200, resp};
  }
  if (req.path == "/v1/results") {
    auto r = req.body.get<ResultsRequest>();
    ResultsResponse resp;
    for (const auto& a : r.results) resp.accepted.push_back({a.mini_batch_id, a.attempt});
    return {200, resp};
  }
  if (req.path == "/v1/progress" && req.method == "GET") {
    Progress p;
    p.phase = "Running";
    p.progress = req.body.is_null() ? "3/10" : "body?";
    return {200, p};
  }
  if (req.path == "/boom") throw std::runtime_error("handler exploded");
  return {404, {{"reason", "no route " + req.path}}};
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.token = kToken;
    auto server = StartHttpServer(o, FakeCoordinator);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    client_ = Client(kToken);
  }

  std::unique_ptr<CoordinatorClient> Client(const std::string& token) {
    HttpClientOptions co;
    co.base_url = server_->url();
    co.token = token;
    co.timeout_seconds = 20;
    return MakeHttpCoordinatorClient(co);
  }

  // A request the coordinator client would never send (raw headers and body).
  std::pair<int, nlohmann::json> Raw(const std::string& method, const std::string& path,
                                     const std::string& body, const std::string& authorization) {
    web::http::client::http_client c(web::uri(server_->url()));
    web::http::http_request r(method);
    r.set_request_uri(web::uri(path));
    if (!authorization.empty()) r.headers().add("Authorization", authorization);
    if (!body.empty()) r.set_body(body, "application/json");
    auto resp = c.request(r).get();
    EXPECT_EQ(resp.headers().content_type(), "application/json");
    return {resp.status_code(), nlohmann::json::parse(resp.extract_utf8string(true).get())};
  }

  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<CoordinatorClient> client_;
};

TEST_F(HttpTest, PortZeroPicksAFreePortAndReportsIt) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->url(), "http://127.0.0.1:" + std::to_string(server_->port()));
}

TEST_F(HttpTest, RequestWithoutTokenIsUnauthorized) {
  auto [code, body] = Raw("POST", "/v1/lease", "{}", "");
  EXPECT_EQ(code, 401);
  EXPECT_THAT(body.value("reason", ""), HasSubstr("Bearer"));
}

TEST_F(HttpTest, RequestWithWrongTokenIsUnauthenticated) {
  auto [code, body] = Raw("POST", "/v1/lease", "{}", "Bearer nope");
  EXPECT_EQ(code, 401);
  EXPECT_THAT(body.value("reason", ""), HasSubstr("wrong bearer token"));

  auto got = Client("wrong")->Lease({});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnauthenticated);
  // A token that is a prefix of the right one is still wrong.
  EXPECT_FALSE(Client("s3cret")->Lease({}).ok());
}

TEST_F(HttpTest, BodyThatIsNotJsonIsBadRequest) {
  auto [code, body] = Raw("POST", "/v1/lease", "{not json", std::string("Bearer ") + kToken);
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body.value("reason", ""), HasSubstr("request body is not JSON"));
}

TEST_F(HttpTest, FieldOfWrongTypeIsInvalidArgumentNamingIt) {
  auto [code, body] =
      Raw("POST", "/v1/lease", R"({"max": "three"})", std::string("Bearer ") + kToken);
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body.value("reason", ""), HasSubstr("type must be number"));
}

TEST_F(HttpTest, HandlerExceptionIs500AndTheServerKeepsServing) {
  auto [code, body] = Raw("POST", "/boom", "{}", std::string("Bearer ") + kToken);
  EXPECT_EQ(code, 500);
  EXPECT_THAT(body.value("reason", ""), HasSubstr("handler exploded"));
  auto progress = client_->GetProgress();
  ASSERT_TRUE(progress.ok()) << progress.status().ToString();
  EXPECT_EQ(progress->phase, "Running");
}

TEST_F(HttpTest, ClientRoundTripsEveryMessage) {
  auto reg = client_->Register({"127.0.0.2", 4321});
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_EQ(reg->spec["spec"]["processCountPerNode"], 2);
  EXPECT_EQ(reg->output_dir, "/out/127.0.0.2");
  EXPECT_EQ(reg->arguments, (std::vector<std::string>{"--pid", "4321"}));
  EXPECT_EQ(reg->lease_seconds, 42);

  LeaseRequest lr;
  lr.node = "127.0.0.2";
  lr.max = 3;
  lr.renew = {{7, 2}};
  auto lease = client_->Lease(lr);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->leases.size(), 3u);
  EXPECT_EQ(lease->leases[2].mini_batch_id, 2);
  EXPECT_EQ(lease->leases[2].files, (std::vector<std::string>{"/in/2"}));
  ASSERT_EQ(lease->cancel.size(), 1u);
  EXPECT_EQ(lease->cancel[0].mini_batch_id, 7);
  EXPECT_EQ(lease->cancel[0].attempt, 2);
  EXPECT_EQ(lease->retry_after_ms, 7);

  ResultsRequest rr;
  rr.node = "127.0.0.2";
  rr.results.push_back({.mini_batch_id = 5, .attempt = 3, .status = "RUN_DONE"});
  rr.events.push_back({.process = "process000", .kind = "WORKER_STARTED"});
  auto results = client_->Report(rr);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->accepted.size(), 1u);
  EXPECT_EQ(results->accepted[0].mini_batch_id, 5);
  EXPECT_EQ(results->accepted[0].attempt, 3);

  auto progress = client_->GetProgress();
  ASSERT_TRUE(progress.ok()) << progress.status().ToString();
  EXPECT_EQ(progress->progress, "3/10");  // GET: the handler saw a null body
}

TEST_F(HttpTest, BytesThatAreNotUtf8AreReplacedNotThrown) {
  ResultsRequest rr;
  rr.results.push_back({.mini_batch_id = 9, .status = "RUN_EXCEPTION", .error = "bad \xff byte"});
  auto results = client_->Report(rr);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->accepted.size(), 1u);
  EXPECT_EQ(results->accepted[0].mini_batch_id, 9);
}

TEST_F(HttpTest, HandlerStatusCodesMapToStatus) {
  HttpServerOptions o;
  o.token = kToken;
  auto server = StartHttpServer(o, [](const HttpRequest& req) -> HttpResponse {
    if (req.path == "/v1/register") return {400, {{"reason", "spec.node: expected a name"}}};
    if (req.path == "/v1/lease") return {404, {{"reason", "unknown job"}}};
    if (req.path == "/v1/results") return {503, {{"reason", "journal busy"}}};
    return {200, "not an object"};
  });
  ASSERT_TRUE(server.ok());
  HttpClientOptions co;
  co.base_url = (*server)->url();
  co.token = kToken;
  auto client = MakeHttpCoordinatorClient(co);

  auto reg = client->Register({});
  EXPECT_EQ(reg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(reg.status().message(), HasSubstr("spec.node: expected a name"));
  auto lease = client->Lease({});
  EXPECT_EQ(lease.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(lease.status().message(), HasSubstr("unknown job"));
  auto results = client->Report({});
  EXPECT_EQ(results.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(results.status().message(), HasSubstr("journal busy"));
  auto progress = client->GetProgress();
  EXPECT_EQ(progress.status().code(), StatusCode::kInternal);
  EXPECT_THAT(progress.status().message(), HasSubstr("/v1/progress"));
}

TEST_F(HttpTest, ClosedPortIsUnavailable) {
  auto port = PickFreePort("127.0.0.1");
  ASSERT_TRUE(port.ok());
  HttpClientOptions co;
  co.base_url = "http://127.0.0.1:" + std::to_string(*port);
  co.token = kToken;
  auto got = MakeHttpCoordinatorClient(co)->Lease({});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr(co.base_url + "/v1/lease"));
}

TEST_F(HttpTest, StoppedServerIsUnavailable) {
  server_->Stop();
  server_->Stop();  // idempotent
  EXPECT_EQ(client_->GetProgress().status().code(), StatusCode::kUnavailable);
}

// A reply being produced when the server is stopped still reaches its client (the coordinator's
// `done`: it stops its server as soon as every agent was told).
TEST_F(HttpTest, StopLetsTheReplyInFlightReachItsClient) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false;
    bool open = false;
  };
  auto gate = std::make_shared<Gate>();
  HttpServerOptions o;
  o.token = kToken;
  auto server = StartHttpServer(o, [gate](const HttpRequest& req) -> HttpResponse {
    std::unique_lock<std::mutex> lock(gate->mu);
    gate->entered = true;
    gate->cv.notify_all();
    gate->cv.wait(lock, [&] { return gate->open; });
    return FakeCoordinator(req);
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  HttpClientOptions co;
  co.base_url = (*server)->url();
  co.token = kToken;
  co.timeout_seconds = 20;
  auto client = MakeHttpCoordinatorClient(co);
  std::thread caller([&] {
    auto got = client->Lease({.node = "n", .max = 1});
    EXPECT_TRUE(got.ok()) << got.status().ToString();
  });
  {
    std::unique_lock<std::mutex> lock(gate->mu);
    ASSERT_TRUE(gate->cv.wait_for(lock, std::chrono::seconds(20), [&] { return gate->entered; }));
  }
  std::thread stopper([&] { (*server)->Stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // Stop() is waiting meanwhile
  {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->open = true;
    gate->cv.notify_all();
  }
  stopper.join();
  caller.join();
}

TEST_F(HttpTest, BadUrlGivesAClientThatSaysWhy) {
  HttpClientOptions co;
  co.base_url = "not a url";
  auto got = MakeHttpCoordinatorClient(co)->GetProgress();
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("not a url"));
}

TEST_F(HttpTest, ExplicitPortInUseIsAnErrorNamingIt) {
  HttpServerOptions o;
  o.port = server_->port();
  auto second = StartHttpServer(o, FakeCoordinator);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr(std::to_string(server_->port())));
}

TEST_F(HttpTest, OneClientIsSafeFromManyThreads) {
  constexpr int kThreads = 8;
  constexpr int kCalls = 100;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        LeaseRequest lr;
        lr.max = (t + i) % 4;
        auto got = client_->Lease(lr);
        if (got.ok() && static_cast<int>(got->leases.size()) == lr.max) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kCalls);
}

// Not a pass/fail check (the machine is shared): prints the rate for the report.
TEST_F(HttpTest, SmallPostRoundTripRate) {
  ResultsRequest rr;
  rr.node = "127.0.0.1";
  rr.results.push_back({.mini_batch_id = 1, .status = "RUN_DONE", .total = 10, .succeeded = 10});
  ASSERT_TRUE(client_->Report(rr).ok());  // warm the connection
  constexpr int kCalls = 2000;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(client_->Report(rr).ok());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ rate     ] %d sequential POST /v1/results in %.3f s: %.0f requests/s\n", kCalls, s,
              kCalls / s);
  RecordProperty("requests_per_second", static_cast<int>(kCalls / s));
}

// ---------------------------------------------------------------------------------------------
// Limits against hostile clients (issue 12), over raw sockets.

// A connected socket to 127.0.0.1:port whose reads give up after `timeout_ms`.
int Connect(int port, int timeout_ms = 20000) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes the connection (or the read times out).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// The status code of the first reply on the connection (0 when none came).
int StatusOf(const std::string& reply) {
  if (reply.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(reply.c_str() + 9);
}

class HttpLimitsTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions o) {
    o.token = kToken;
    auto server = StartHttpServer(o, FakeCoordinator);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpLimitsTest, UnauthenticatedBodyIsRefusedBeforeItIsRead) {
  Start({});
  int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  // 100 MB announced, none sent: the answer comes from the header alone.
  ASSERT_TRUE(
      SendAll(fd, "POST /v1/results HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n"));
  std::string reply = ReadAll(fd);
  ::close(fd);
  EXPECT_EQ(StatusOf(reply), 401) << reply;
  EXPECT_THAT(reply, HasSubstr("Bearer"));
}

TEST_F(HttpLimitsTest, BodyOverTheLimitIs413ByItsContentLengthOrAsItArrives) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  Start(o);
  const std::string auth = std::string("Authorization: Bearer ") + kToken + "\r\n";
  int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(
      fd, "POST /v1/results HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 1001\r\n\r\n"));
  std::string reply = ReadAll(fd);
  ::close(fd);
  EXPECT_EQ(StatusOf(reply), 413) << reply;
  EXPECT_THAT(reply, HasSubstr("larger than the limit of 1000"));
  // Chunked: no length up front, counted as it is read.
  fd = Connect(server_->port());
  std::string chunk(600, 'x');
  ASSERT_TRUE(SendAll(fd, "POST /v1/results HTTP/1.1\r\nHost: x\r\n" + auth +
                              "Transfer-Encoding: chunked\r\n\r\n258\r\n" + chunk + "\r\n258\r\n" +
                              chunk + "\r\n0\r\n\r\n"));
  reply = ReadAll(fd);
  ::close(fd);
  EXPECT_EQ(StatusOf(reply), 413) << reply;
  // Within the limit all is well.
  fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, "POST /v1/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth +
                              "Content-Length: 2\r\n\r\n{}"));
  reply = ReadAll(fd);
  ::close(fd);
  EXPECT_EQ(StatusOf(reply), 200) << reply;
}

TEST_F(HttpLimitsTest, OversizedHeaderIs431) {
  HttpServerOptions o;
  o.max_header_bytes = 8192;
  Start(o);
  int fd = Connect(server_->port());
  SendAll(fd,
          "GET /v1/progress HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n");
  std::string reply = ReadAll(fd);
  ::close(fd);
  EXPECT_EQ(StatusOf(reply), 431) << reply.substr(0, 200);
}

TEST_F(HttpLimitsTest, SlowAndSilentConnectionsAreClosedAfterTheHeaderTimeout) {
  HttpServerOptions o;
  o.header_timeout_ms = 500;
  Start(o);
  auto start = std::chrono::steady_clock::now();
  int silent = Connect(server_->port());
  int slow = Connect(server_->port());
  ASSERT_GE(silent, 0);
  ASSERT_GE(slow, 0);
  // One header byte every 100 ms never completes a header within 500 ms.
  bool cut = false;
  for (char c : std::string("GET /v1/progress HTTP/1.1\r\nHost: x\r\nX: ") + std::string(50, 'y')) {
    if (!SendAll(slow, std::string(1, c))) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(ReadAll(silent), "");  // closed, no reply
  std::string reply = ReadAll(slow);
  EXPECT_TRUE(cut || StatusOf(reply) == 0) << reply;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  ::close(silent);
  ::close(slow);
  // The server itself is fine.
  HttpClientOptions co;
  co.base_url = server_->url();
  co.token = kToken;
  EXPECT_TRUE(MakeHttpCoordinatorClient(co)->GetProgress().ok());
}

TEST_F(HttpLimitsTest, ConnectionsBeyondTheCapAreClosedAtOnce) {
  HttpServerOptions o;
  o.max_connections = 2;
  Start(o);
  int a = Connect(server_->port());
  int b = Connect(server_->port());
  // Let the server admit both before the third arrives.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int c = Connect(server_->port(), 5000);
  ASSERT_GE(c, 0);
  SendAll(c, "GET /v1/progress HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadAll(c), "");
  ::close(c);
  ::close(a);
  ::close(b);
  HttpClientOptions co;
  co.base_url = server_->url();
  co.token = kToken;
  auto client = MakeHttpCoordinatorClient(co);
  ASSERT_TRUE(WaitFor([&] { return client->GetProgress().ok(); }));
}

// A client that gave up waiting (shut its side of the connection) before its request was handled
// is not served: a lease granted then would go to nobody and wait out its whole lease. The one
// handler thread is held by a first request while a second client sends its whole request and
// shuts down its writing side; once the first is let go, the second gets no reply and its handler
// never runs.
TEST(HttpGoneClientTest, RequestWhoseClientShutItsSideIsNotHandled) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::vector<std::string> paths;
  };
  auto gate = std::make_shared<Gate>();
  HttpServerOptions o;
  o.token = kToken;
  o.threads = 1;
  auto server = StartHttpServer(o, [gate](const HttpRequest& req) -> HttpResponse {
    std::unique_lock<std::mutex> lock(gate->mu);
    gate->paths.push_back(req.path);
    gate->cv.notify_all();
    gate->cv.wait(lock, [&] { return gate->open; });
    return HttpResponse{};
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const int port = (*server)->port();
  const std::string head = std::string("HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ") + kToken +
                           "\r\nConnection: close\r\n";
  int first = Connect(port);
  ASSERT_TRUE(SendAll(first, "GET /v1/progress " + head + "\r\n"));
  {
    std::unique_lock<std::mutex> lock(gate->mu);
    ASSERT_TRUE(
        gate->cv.wait_for(lock, std::chrono::seconds(20), [&] { return !gate->paths.empty(); }));
  }
  int gone = Connect(port);
  ASSERT_TRUE(SendAll(gone, "POST /v1/lease " + head +
                                "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
  ASSERT_EQ(::shutdown(gone, SHUT_WR), 0);
  {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->open = true;
  }
  gate->cv.notify_all();
  const std::string reply = ReadAll(first);
  EXPECT_EQ(StatusOf(reply), 200) << reply;
  EXPECT_EQ(ReadAll(gone), "");
  ::close(first);
  ::close(gone);
  std::lock_guard<std::mutex> lock(gate->mu);
  EXPECT_EQ(gate->paths, std::vector<std::string>{"/v1/progress"});
}

// A server that answers one request per connection and then closes it (keep-alive was not
// refused: as after its idle timeout). The client's next call finds its kept connection closed and
// sends the request again on a new one; each request reached the server once.
TEST(HttpClientKeepAliveTest, AKeptConnectionTheServerClosedIsReplacedForTheNextCall) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::atomic<int> requests{0};
  std::thread server([&] {
    Progress p;
    p.phase = "Running";
    const std::string body = nlohmann::json(p).dump();
    for (int i = 0; i < 2; ++i) {
      int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      timeval tv{20, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string got;
      char buf[4096];
      ssize_t n;
      while (got.find("\r\n\r\n") == std::string::npos &&
             (n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
        got.append(buf, static_cast<size_t>(n));
      }
      if (got.rfind("GET /v1/progress ", 0) == 0) ++requests;
      SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body);
      ::close(fd);
    }
  });
  HttpClientOptions co;
  co.base_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  co.token = kToken;
  co.timeout_seconds = 20;
  auto client = MakeHttpCoordinatorClient(co);
  auto first = client->GetProgress();
  EXPECT_TRUE(first.ok()) << first.status().ToString();
  auto second = client->GetProgress();
  EXPECT_TRUE(second.ok()) << second.status().ToString();
  ::shutdown(listener, SHUT_RDWR);  // a server still waiting for a second connection stops
  server.join();
  ::close(listener);
  EXPECT_EQ(requests.load(), 2);
}

class HttpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    cert_ = dir_ + "/tls.crt";
    key_ = dir_ + "/tls.key";
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=parallelrun-test -addext subjectAltName=IP:127.0.0.1 -keyout " +
        key_ + " -out " + cert_ + " >" + dir_ + "/openssl.log 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  fakes::TempDir tmp_{"pr_https_test"};
  std::string dir_, cert_, key_;
};

TEST_F(HttpsTest, ClientVerifiesTheServerWithTheCaFile) {
  HttpServerOptions o;
  o.token = kToken;
  o.tls_cert_file = cert_;
  o.tls_key_file = key_;
  auto server = StartHttpServer(o, FakeCoordinator);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ((*server)->url().rfind("https://127.0.0.1:", 0), 0u) << (*server)->url();

  HttpClientOptions co;
  co.base_url = (*server)->url();
  co.token = kToken;
  co.ca_file = cert_;
  auto lease = MakeHttpCoordinatorClient(co)->Lease({.node = "n", .max = 2});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->leases.size(), 2u);

  // Without the CA the self-signed certificate is not trusted.
  co.ca_file.clear();
  auto untrusted = MakeHttpCoordinatorClient(co)->Lease({});
  EXPECT_EQ(untrusted.status().code(), StatusCode::kUnavailable);

  // Plain HTTP to the HTTPS port does not get through either.
  co.base_url = "http://127.0.0.1:" + std::to_string((*server)->port());
  EXPECT_FALSE(MakeHttpCoordinatorClient(co)->Lease({}).ok());
}

TEST_F(HttpsTest, MissingCertificateOrCaFileIsReportedUpFront) {
  HttpServerOptions o;
  o.tls_cert_file = dir_ + "/missing.crt";
  o.tls_key_file = key_;
  auto server = StartHttpServer(o, FakeCoordinator);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("missing.crt"));

  o.tls_cert_file = cert_;
  o.tls_key_file.clear();
  EXPECT_FALSE(StartHttpServer(o, FakeCoordinator).ok());

  HttpClientOptions co;
  co.base_url = "https://127.0.0.1:1";
  co.ca_file = dir_ + "/missing-ca.crt";
  auto got = MakeHttpCoordinatorClient(co)->GetProgress();
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("missing-ca.crt"));
}

}  // namespace
}  // namespace parallelrun::rt::protocol
