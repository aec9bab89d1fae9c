#include "tests/cluster/kubelet/probes.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace parallelrun::rt::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// A loopback HTTP server that answers every request with `status` (port 0, one thread).
class TinyHttpServer {
 public:
  explicit TinyHttpServer(int status) : status_(status) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 8);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[2048];
        ssize_t n = recv(c, buf, sizeof buf - 1, 0);
        if (n > 0) last_request_.assign(buf, static_cast<size_t>(n));
        std::string reply =
            "HTTP/1.1 " + std::to_string(status_) + " X\r\nContent-Length: 0\r\n\r\n";
        send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        close(c);
      }
    });
  }
  ~TinyHttpServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::string last_request() const { return last_request_; }

 private:
  int status_;
  int fd_ = -1;
  int port_ = 0;
  std::string last_request_;
  std::thread thread_;
};

int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(ProbesTest, ParsesHttpGetWithNamedPortAndDefaults) {
  Json container = {{"name", "main"}, {"ports", {{{"name", "health"}, {"containerPort", 8081}}}}};
  ProbeSpec spec;
  std::string error;
  ASSERT_TRUE(ParseProbe(
      {{"httpGet", {{"path", "/readyz"}, {"port", "health"}}}, {"initialDelaySeconds", 2}},
      container, &spec, &error))
      << error;
  EXPECT_EQ(spec.kind, ProbeSpec::Kind::kHttpGet);
  EXPECT_EQ(spec.port, 8081);
  EXPECT_EQ(spec.path, "/readyz");
  EXPECT_EQ(spec.initial_delay_seconds, 2);
  EXPECT_EQ(spec.period_seconds, 10);
  EXPECT_EQ(spec.timeout_seconds, 1);
  EXPECT_EQ(spec.success_threshold, 1);
  EXPECT_EQ(spec.failure_threshold, 3);
  ASSERT_TRUE(ParseProbe({{"tcpSocket", {{"port", 5000}}}, {"periodSeconds", 1}}, container, &spec,
                         &error));
  EXPECT_EQ(spec.kind, ProbeSpec::Kind::kTcpSocket);
  EXPECT_EQ(spec.port, 5000);
  ASSERT_TRUE(ParseProbe({{"exec", {{"command", {"cat", "/tmp/ok"}}}}}, container, &spec, &error));
  EXPECT_EQ(spec.command, (std::vector<std::string>{"cat", "/tmp/ok"}));
}

TEST(ProbesTest, RefusesWhatItCannotRunNamingTheField) {
  Json container = {{"name", "main"}};
  ProbeSpec spec;
  std::string error;
  EXPECT_FALSE(ParseProbe({{"httpGet", {{"port", "web"}}}}, container, &spec, &error));
  EXPECT_EQ(error, "httpGet.port \"web\" is not a named port of container main");
  EXPECT_FALSE(
      ParseProbe({{"httpGet", {{"port", 1}, {"scheme", "HTTPS"}}}}, container, &spec, &error));
  EXPECT_THAT(error, HasSubstr("HTTPS is not supported"));
  EXPECT_FALSE(ParseProbe({{"grpc", {{"port", 1}}}}, container, &spec, &error));
  EXPECT_THAT(error, HasSubstr("grpc is not supported"));
  EXPECT_FALSE(ParseProbe({{"exec", {{"command", Json::array()}}}}, container, &spec, &error));
  EXPECT_EQ(error, "exec.command must not be empty");
}

TEST(ProbesTest, HttpGetSucceedsOn2xxAndFailsOtherwise) {
  TinyHttpServer ok(200), bad(500);
  ProbeOutcome outcome =
      HttpGetOnce("127.0.0.1", ok.port(), "/healthz", {{"X-Probe", "1"}}, milliseconds(2000));
  EXPECT_TRUE(outcome.success) << outcome.message;
  EXPECT_THAT(ok.last_request(), HasSubstr("GET /healthz HTTP/1.1\r\n"));
  EXPECT_THAT(ok.last_request(), HasSubstr("X-Probe: 1\r\n"));
  EXPECT_THAT(ok.last_request(), HasSubstr("User-Agent: kube-probe/1.32\r\n"));
  outcome = HttpGetOnce("127.0.0.1", bad.port(), "/", {}, milliseconds(2000));
  EXPECT_FALSE(outcome.success);
  EXPECT_EQ(outcome.message, "HTTP probe failed with statuscode: 500");
  int closed = UnusedPort();
  outcome = HttpGetOnce("127.0.0.1", closed, "/x", {}, milliseconds(2000));
  EXPECT_FALSE(outcome.success);
  EXPECT_EQ(outcome.message, "Get \"http://127.0.0.1:" + std::to_string(closed) +
                                 "/x\": dial tcp 127.0.0.1:" + std::to_string(closed) +
                                 ": connect: connection refused");
}

TEST(ProbesTest, TcpConnectSucceedsOnlyWhenSomethingListens) {
  TinyHttpServer server(200);
  EXPECT_TRUE(TcpConnectOnce("127.0.0.1", server.port(), milliseconds(2000)).success);
  EXPECT_FALSE(TcpConnectOnce("127.0.0.1", UnusedPort(), milliseconds(2000)).success);
}

// Drives a worker through scripted outcomes at fabricated times (each attempt runs on its own
// thread; Finish waits for it and collects it).
class WorkerDriver {
 public:
  explicit WorkerDriver(ProbeSpec spec) : worker_(spec) {}
  ProbeWorker& worker() { return worker_; }
  // Polls at `t`; an attempt that starts returns `outcome` and is collected before returning.
  // True when an attempt ran.
  bool Step(ProbeWorker::SteadyTime t, bool outcome) {
    bool changed = false;
    std::atomic<bool> ran{false};
    worker_.Poll(
        t,
        [&ran, outcome] {
          ran = true;
          return ProbeOutcome{outcome, outcome ? "" : "nope"};
        },
        &changed);
    while (worker_.Busy()) {
      std::this_thread::sleep_for(milliseconds(1));
      worker_.Poll(
          t,
          [] {
            return ProbeOutcome{false, "not due"};
          },
          &changed);
    }
    for (const auto& m : worker_.TakeFailures()) EXPECT_EQ(m, "nope");
    return ran;
  }

 private:
  ProbeWorker worker_;
};

TEST(ProbesTest, WorkerHonoursInitialDelayPeriodAndThresholds) {
  ProbeSpec spec;
  spec.initial_delay_seconds = 5;
  spec.period_seconds = 10;
  spec.success_threshold = 2;
  spec.failure_threshold = 2;
  WorkerDriver d(spec);
  auto t0 = std::chrono::steady_clock::now();
  d.worker().Reset(t0);
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kUnknown);
  EXPECT_FALSE(d.Step(t0 + seconds(4), true));  // initial delay not over
  EXPECT_TRUE(d.Step(t0 + seconds(5), true));
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kUnknown);  // 1 of 2 successes
  EXPECT_FALSE(d.Step(t0 + seconds(14), true));                   // period not over
  EXPECT_TRUE(d.Step(t0 + seconds(15), true));
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kSuccess);
  EXPECT_TRUE(d.Step(t0 + seconds(25), false));
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kSuccess);  // 1 of 2 failures
  EXPECT_TRUE(d.Step(t0 + seconds(35), false));
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kFailure);
  // A new run of the container starts from unknown again.
  d.worker().Reset(t0 + seconds(40));
  EXPECT_EQ(d.worker().result(), ProbeWorker::Result::kUnknown);
}

}  // namespace
}  // namespace parallelrun::rt::cluster
