#include "operator/manager/http_endpoints.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

// LeakSanitizer (asan preset): cpprestsdk's listener pool threads and OpenSSL's per-thread state
// live until the process ends (see runtime/protocol/http_test.cc).
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\nleak:libcpprest.so\nleak:pplx::\n";
}

namespace parallelrun::op::manager {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct HttpReply {
  int status = 0;
  std::string headers;  // lower-cased
  std::string body;
};

// A minimal HTTP/1.1 client over a blocking socket (loopback only), so the test does not depend
// on the server library it tests.
rt::StatusOr<HttpReply> Request(int port, const std::string& method, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return rt::InternalError("socket");
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return rt::UnavailableError("connect");
  }
  std::string req =
      method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), 0);
  std::string raw;
  char buf[4096];
  HttpReply reply;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos &&
        (header_end = raw.find("\r\n\r\n")) != std::string::npos) {
      reply.headers = raw.substr(0, header_end);
      for (auto& c : reply.headers) c = static_cast<char>(std::tolower(c));
      auto cl = reply.headers.find("content-length:");
      if (cl != std::string::npos) content_length = std::stoul(reply.headers.substr(cl + 15));
    }
    if (header_end != std::string::npos && method != "HEAD" &&
        raw.size() >= header_end + 4 + content_length) {
      break;
    }
    if (header_end != std::string::npos && method == "HEAD") break;
  }
  ::close(fd);
  if (header_end == std::string::npos) return rt::UnavailableError("no complete reply: " + raw);
  reply.status = std::stoi(raw.substr(9, 3));
  reply.body = raw.substr(header_end + 4);
  return reply;
}

TEST(BindAddressTest, Parses) {
  struct Case {
    std::string in;
    std::string host;
    int port;
  };
  const Case ok[] = {
      {":8080", "0.0.0.0", 8080},        {"127.0.0.5:9000", "127.0.0.5", 9000},
      {"[::1]:9000", "::1", 9000},       {":0", "0.0.0.0", 0},
      {"localhost:81", "localhost", 81},
  };
  for (const auto& c : ok) {
    auto b = ParseBindAddress(c.in);
    ASSERT_TRUE(b.ok()) << c.in << ": " << b.status().ToString();
    ASSERT_TRUE(b->has_value()) << c.in;
    EXPECT_EQ((*b)->host, c.host) << c.in;
    EXPECT_EQ((*b)->port, c.port) << c.in;
  }
  auto off = ParseBindAddress("0");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->has_value());
  for (const char* bad : {"", "8080", "host:", ":http", ":70000", "::1:80", "[::1:80", ":-1"}) {
    EXPECT_EQ(ParseBindAddress(bad).status().code(), rt::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(EndpointsTest, DisabledAddressServesNothing) {
  auto server = ServeEndpoints("0", {});
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(*server, nullptr);
}

TEST(EndpointsTest, ServesMetricsAndProbes) {
  Registry registry;
  registry.GetCounter("reconcile_total", "Reconciles.", {{"result", "ok"}}).Inc(3);
  std::atomic<bool> ready{false};
  EndpointHandlers h;
  h.metrics = &registry;
  h.healthz = [] { return true; };
  h.readyz = [&] { return ready.load(); };
  auto server = ServeEndpoints("127.0.0.1:0", h);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_NE(*server, nullptr);
  int port = (*server)->port();
  EXPECT_GT(port, 0);
  EXPECT_EQ((*server)->url(), "http://127.0.0.1:" + std::to_string(port));

  auto metrics = Request(port, "GET", "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status().ToString();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->headers, HasSubstr("content-type: text/plain; version=0.0.4"));
  EXPECT_EQ(metrics->body, registry.Expose());
  EXPECT_THAT(metrics->body, HasSubstr("reconcile_total{result=\"ok\"} 3\n"));

  auto healthz = Request(port, "GET", "/healthz");
  ASSERT_TRUE(healthz.ok());
  EXPECT_EQ(healthz->status, 200);
  EXPECT_EQ(healthz->body, "ok\n");

  auto not_ready = Request(port, "GET", "/readyz");
  ASSERT_TRUE(not_ready.ok());
  EXPECT_EQ(not_ready->status, 500);
  ready = true;
  auto now_ready = Request(port, "GET", "/readyz");
  ASSERT_TRUE(now_ready.ok());
  EXPECT_EQ(now_ready->status, 200);

  auto head = Request(port, "HEAD", "/healthz");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->status, 200);

  auto missing = Request(port, "GET", "/nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
  auto post = Request(port, "POST", "/metrics");
  ASSERT_TRUE(post.ok());
  EXPECT_EQ(post->status, 405);

  (*server)->Stop();
  (*server)->Stop();
  EXPECT_FALSE(Request(port, "GET", "/healthz").ok()) << "stopped servers do not answer";
}

TEST(EndpointsTest, UnsetHandlersAre404AndThrowingProbesFail) {
  EndpointHandlers h;
  h.healthz = []() -> bool { throw std::runtime_error("broken"); };
  auto server = ServeEndpoints("127.0.0.1:0", h);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  int port = (*server)->port();
  auto metrics = Request(port, "GET", "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->status, 404);
  auto readyz = Request(port, "GET", "/readyz");
  ASSERT_TRUE(readyz.ok());
  EXPECT_EQ(readyz->status, 404);
  auto healthz = Request(port, "GET", "/healthz");
  ASSERT_TRUE(healthz.ok());
  EXPECT_EQ(healthz->status, 500);
}

TEST(EndpointsTest, AllInterfacesBindIsReachableOnLoopback) {
  EndpointHandlers h;
  h.healthz = [] { return true; };
  auto server = ServeEndpoints(":0", h);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_THAT((*server)->url(), StartsWith("http://127.0.0.1:"));
  auto healthz = Request((*server)->port(), "GET", "/healthz");
  ASSERT_TRUE(healthz.ok()) << healthz.status().ToString();
  EXPECT_EQ(healthz->status, 200);
}

TEST(EndpointsTest, PortInUseIsUnavailable) {
  EndpointHandlers h;
  h.healthz = [] { return true; };
  auto first = ServeEndpoints("127.0.0.1:0", h);
  ASSERT_TRUE(first.ok());
  auto second = ServeEndpoints("127.0.0.1:" + std::to_string((*first)->port()), h);
  EXPECT_EQ(second.status().code(), rt::StatusCode::kUnavailable);
}

TEST(EndpointsTest, InvalidAddressIsInvalidArgument) {
  EXPECT_EQ(ServeEndpoints("nonsense", {}).status().code(), rt::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace parallelrun::op::manager
