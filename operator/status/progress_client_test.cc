// The TLS progress reader against the real coordinator HTTP server (cpprestsdk) serving a
// certificate from GenerateJobCredentials, as the operator reads a coordinator pod.

#include "operator/status/progress_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "operator/reconciler/certs.h"
#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "runtime/protocol/http_server.h"
#include "tests/fakes/temp_dir.h"

// LeakSanitizer (asan preset), as in runtime/protocol/http_test.cc: OpenSSL's per-thread error
// states of cpprestsdk's pool threads, and pplx tasks left pending on that pool at exit, are
// library-internal.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\nleak:libcpprest.so\nleak:pplx::\n";
}

namespace parallelrun::op::status {
namespace {

using rt::StatusCode;
using rt::protocol::HttpRequest;
using rt::protocol::HttpResponse;
using rt::protocol::Progress;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr char kJob[] = "score";
constexpr char kNamespace[] = "team-a";
constexpr char kServerName[] = "score-coordinator.team-a.svc";

Progress SampleProgress() {
  Progress p;
  p.phase = "Running";
  p.message = "scoring";
  p.startTime = "2026-01-02T03:04:05.000Z";
  p.miniBatches = {.total = 40, .completed = 12, .failed = 1, .running = 4, .retried = 2};
  p.items = {.total = 400, .succeeded = 110, .failed = 3};
  p.nodes = {.desired = 4, .ready = 3};
  p.progress = "12/40";
  p.lastProgressLine = "Processed 12 of 40 mini batches in 0:01:00, estimated 0:03:20 remaining";
  p.eta = "0:03:20";
  p.estimatedCompletionTime = "2026-01-02T03:08:25.000Z";
  p.outputFile = "/mnt/output/parallel_run_step.txt";
  p.logs = "/mnt/output/logs";
  p.planned = true;
  return p;
}

class ProgressClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto creds =
        reconciler::GenerateJobCredentials(kJob, kNamespace, std::chrono::system_clock::now());
    ASSERT_TRUE(creds.ok()) << creds.status().ToString();
    creds_ = *creds;
    server_ = Serve([](const HttpRequest& req) -> HttpResponse {
      if (req.method == "GET" && req.path == "/v1/progress") return {200, SampleProgress()};
      return {404, {{"reason", "no route " + req.path}}};
    });
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  // The runtime's server on 127.0.0.1 with the job's certificate and token.
  std::unique_ptr<rt::protocol::HttpServer> Serve(rt::protocol::HttpHandler handler) {
    rt::protocol::HttpServerOptions o;
    o.token = creds_.token;
    o.tls_cert_file = dir_ + "/tls.crt";
    o.tls_key_file = dir_ + "/tls.key";
    EXPECT_TRUE(rt::WriteFileAtomic(o.tls_cert_file, creds_.tls_crt).ok());
    EXPECT_TRUE(rt::WriteFileAtomic(o.tls_key_file, creds_.tls_key).ok());
    auto server = rt::protocol::StartHttpServer(o, std::move(handler));
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(*server) : nullptr;
  }

  ProgressTarget Target(int port) const {
    ProgressTarget t;
    t.host = "127.0.0.1";
    t.port = port;
    t.server_name = kServerName;
    t.ca_pem = creds_.ca_crt;
    t.token = creds_.token;
    t.timeout = std::chrono::seconds(30);  // generous: the machine is shared
    return t;
  }

  fakes::TempDir tmp_{"op_progress_test"};
  std::string dir_ = tmp_.path();
  reconciler::JobCredentials creds_;
  std::unique_ptr<rt::protocol::HttpServer> server_;
  std::unique_ptr<ProgressReader> reader_ = MakeTlsProgressReader();
};

TEST_F(ProgressClientTest, ReadsEveryFieldOverTls) {
  ASSERT_TRUE(server_);
  auto got = reader_->Read(Target(server_->port()));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(nlohmann::json(*got), nlohmann::json(SampleProgress()));
  // Again: one connection per read, nothing left over from the first.
  auto again = reader_->Read(Target(server_->port()));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->progress, "12/40");
}

TEST_F(ProgressClientTest, AcceptsEveryServiceNameOfTheCertificate) {
  ASSERT_TRUE(server_);
  for (const std::string& name : reconciler::CoordinatorDnsNames(kJob, kNamespace)) {
    ProgressTarget t = Target(server_->port());
    t.server_name = name;
    auto got = reader_->Read(t);
    EXPECT_TRUE(got.ok()) << name << ": " << got.status().ToString();
  }
}

TEST_F(ProgressClientTest, AnotherJobsCaFailsCertificateVerification) {
  ASSERT_TRUE(server_);
  auto other =
      reconciler::GenerateJobCredentials(kJob, kNamespace, std::chrono::system_clock::now());
  ASSERT_TRUE(other.ok());
  ProgressTarget t = Target(server_->port());
  t.ca_pem = other->ca_crt;
  auto got = reader_->Read(t);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("certificate verification failed"));
  EXPECT_THAT(got.status().message(), HasSubstr("127.0.0.1"));
}

TEST_F(ProgressClientTest, WrongServerNameFailsCertificateVerification) {
  ASSERT_TRUE(server_);
  ProgressTarget t = Target(server_->port());
  t.server_name = "other-coordinator.team-a.svc";
  auto got = reader_->Read(t);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("certificate verification failed"));
  EXPECT_THAT(got.status().message(), HasSubstr("hostname mismatch"));
  // The pod IP itself is not in the certificate either.
  t.server_name = "127.0.0.1";
  EXPECT_FALSE(reader_->Read(t).ok());
}

TEST_F(ProgressClientTest, WrongTokenIsUnauthenticated) {
  ASSERT_TRUE(server_);
  ProgressTarget t = Target(server_->port());
  t.token = "not-the-token";
  auto got = reader_->Read(t);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnauthenticated);
  EXPECT_THAT(got.status().message(), HasSubstr("401"));
}

TEST_F(ProgressClientTest, ServerErrorIsUnavailableWithItsReason) {
  auto server = Serve([](const HttpRequest&) -> HttpResponse {
    return {503, {{"reason", "journal busy"}}};
  });
  ASSERT_TRUE(server);
  auto got = reader_->Read(Target(server->port()));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("HTTP 503: journal busy"));
  server->Stop();
}

TEST_F(ProgressClientTest, ReplyThatIsNotProgressIsInternal) {
  auto server = Serve([](const HttpRequest&) -> HttpResponse { return {200, "not an object"}; });
  ASSERT_TRUE(server);
  auto got = reader_->Read(Target(server->port()));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kInternal);
  EXPECT_THAT(got.status().message(), HasSubstr("/v1/progress"));
  server->Stop();
}

TEST_F(ProgressClientTest, NothingListeningIsUnavailablePromptly) {
  auto port = rt::PickFreePort("127.0.0.1");
  ASSERT_TRUE(port.ok());
  ProgressTarget t = Target(*port);
  const auto start = Clock::now();
  auto got = reader_->Read(t);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("connecting"));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));  // refused, not timed out (30 s)
}

TEST_F(ProgressClientTest, SilentPeerTimesOutAtTheDeadline) {
  // A socket that listens but never accepts: the kernel completes the TCP handshake, nobody
  // answers the TLS ClientHello.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  ProgressTarget t = Target(ntohs(addr.sin_port));
  t.timeout = std::chrono::milliseconds(300);
  const auto start = Clock::now();
  auto got = reader_->Read(t);
  const auto took = Clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("timed out after 300 ms"));
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(20));
}

TEST_F(ProgressClientTest, CaThatIsNotPemIsInvalidArgument) {
  ASSERT_TRUE(server_);
  ProgressTarget t = Target(server_->port());
  t.ca_pem = "not a certificate";
  auto got = reader_->Read(t);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("CA certificate"));
}

// The reply parser on its own, table-driven.
struct ParseCase {
  const char* name;
  std::string bytes;
  bool at_eof;
  enum { kNeedMore, kReply, kError } want;
  int status = 0;
  std::string body;
};

TEST(ParseHttpReplyTest, Table) {
  const ParseCase cases[] = {
      {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false, ParseCase::kReply,
       200, "{}"},
      {"content-length extra bytes ignored", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}xx",
       false, ParseCase::kReply, 200, "{}"},
      {"content-length short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false,
       ParseCase::kNeedMore},
      {"content-length short at eof", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", true,
       ParseCase::kError},
      {"headers incomplete", "HTTP/1.1 200 OK\r\nContent-Le", false, ParseCase::kNeedMore},
      {"headers incomplete at eof", "HTTP/1.1 200 OK\r\n", true, ParseCase::kError},
      {"chunked",
       "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n"
       "4;ext=1\r\n\":1}\r\n0\r\n\r\n",
       false, ParseCase::kReply, 401, "{\"a\":1}"},
      {"chunked incomplete", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"", false,
       ParseCase::kNeedMore},
      {"chunked cut at eof", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"", true,
       ParseCase::kError},
      {"chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
       ParseCase::kError},
      {"no length until eof", "HTTP/1.0 503 Busy\r\n\r\nbusy", false, ParseCase::kNeedMore},
      {"no length at eof", "HTTP/1.0 503 Busy\r\n\r\nbusy", true, ParseCase::kReply, 503, "busy"},
      {"204 has no body", "HTTP/1.1 204 No Content\r\n\r\n", false, ParseCase::kReply, 204, ""},
      {"not http", "SSH-2.0-OpenSSH\r\n\r\n", false, ParseCase::kError},
      {"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false,
       ParseCase::kError},
  };
  for (const ParseCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = ParseHttpReply(c.bytes, c.at_eof);
    switch (c.want) {
      case ParseCase::kNeedMore:
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        EXPECT_FALSE(got->has_value());
        break;
      case ParseCase::kReply:
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        ASSERT_TRUE(got->has_value());
        EXPECT_EQ((*got)->status, c.status);
        EXPECT_EQ((*got)->body, c.body);
        break;
      case ParseCase::kError:
        EXPECT_FALSE(got.ok());
        break;
    }
  }
}

}  // namespace
}  // namespace parallelrun::op::status
