// MakeHttpClient against a small fake API server (cpprestsdk's http_listener on loopback) that
// returns chosen statuses, streams chosen watch bytes, and checks TLS.
// cpprestsdk defines a macro U() that breaks other headers (GoogleTest, Boost); we never use it.
#define _TURN_OFF_PLATFORM_STRING
#include "operator/kube/http_client.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/base/process.h"
#include "tests/fakes/temp_dir.h"

// LeakSanitizer (asan preset): OpenSSL's per-thread error state on cpprestsdk's pool threads, and
// pplx continuations of requests left pending at exit, are library-internal (see
// runtime/protocol/http_test.cc).
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\nleak:libcpprest.so\nleak:pplx::\n";
}

namespace parallelrun::op::kube {
namespace {

namespace http = web::http;
namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using web::http::experimental::listener::http_listener;
using web::http::experimental::listener::http_listener_config;

constexpr auto kDeadline = std::chrono::seconds(20);

// ---------------------------------------------------------------------------------------------
// Certificates made in memory for the TLS tests.

struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A P-256 key and a certificate for it, self-signed when `issuer` is null.
KeyPair MakeCert(const std::string& cn, bool is_ca, const KeyPair* issuer) {
  static int serial = 1;
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = cert;
  EVP_PKEY* issuer_key = key;
  if (issuer) {
    BIO* b = BIO_new_mem_buf(issuer->cert_pem.data(), static_cast<int>(issuer->cert_pem.size()));
    issuer_cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    b = BIO_new_mem_buf(issuer->key_pem.data(), static_cast<int>(issuer->key_pem.size()));
    issuer_key = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
  }
  X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert));
  if (is_ca) {
    AddExtension(cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert, issuer_cert, NID_basic_constraints, "CA:FALSE");
    AddExtension(cert, issuer_cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    AddExtension(cert, issuer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  X509_sign(cert, issuer_key, EVP_sha256());

  KeyPair out;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  out.cert_pem = BioText(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = BioText(bio);
  if (issuer) {
    X509_free(issuer_cert);
    EVP_PKEY_free(issuer_key);
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

struct Pki {
  KeyPair ca = MakeCert("test-ca", true, nullptr);
  KeyPair server = MakeCert("server", false, &ca);
  KeyPair client = MakeCert("client", false, &ca);
  KeyPair other_ca = MakeCert("other-ca", true, nullptr);
};

// ---------------------------------------------------------------------------------------------
// The fake API server.

// pplx terminates the process for a task whose exception nobody looked at; a reply to a client
// that went away is such a task.
void Observe(const pplx::task<void>& t) {
  t.then([](pplx::task<void> done) {
    try {
      done.get();
    } catch (...) {
    }
  });
}

struct Seen {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  std::map<std::string, std::string> headers;
};

struct ServerTls {
  KeyPair server;
  std::string client_ca_pem;  // non-empty: a client certificate signed by it is required
};

class FakeServer {
 public:
  using Handler = std::function<void(const Seen&, http::http_request&)>;

  static std::unique_ptr<FakeServer> Start(Handler handler, const ServerTls* tls = nullptr) {
    auto server = std::unique_ptr<FakeServer>(new FakeServer(std::move(handler)));
    http_listener_config config;
    if (tls) {
      config.set_ssl_context_callback([t = *tls](boost::asio::ssl::context& ctx) {
        ctx.use_certificate_chain(boost::asio::buffer(t.server.cert_pem));
        ctx.use_private_key(boost::asio::buffer(t.server.key_pem), boost::asio::ssl::context::pem);
        if (!t.client_ca_pem.empty()) {
          ctx.add_certificate_authority(boost::asio::buffer(t.client_ca_pem));
          ctx.set_verify_mode(boost::asio::ssl::verify_peer |
                              boost::asio::ssl::verify_fail_if_no_peer_cert);
        }
      });
    }
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto port = rt::PickFreePort("127.0.0.1");
      if (!port.ok()) continue;
      server->url_ = std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(*port);
      try {
        server->listener_ = std::make_unique<http_listener>(web::uri(server->url_ + "/"), config);
        FakeServer* self = server.get();
        server->listener_->support([self](http::http_request r) { self->Handle(std::move(r)); });
        server->listener_->open().wait();
        return server;
      } catch (const std::exception&) {
        server->listener_.reset();
      }
    }
    ADD_FAILURE() << "cannot start the fake API server";
    return nullptr;
  }

  ~FakeServer() {
    std::vector<concurrency::streams::producer_consumer_buffer<uint8_t>> streams;
    std::vector<http::http_request> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams.swap(streams_);
      held.swap(held_);
    }
    // The client may be gone already; these only let the listener finish its connections.
    for (auto& s : streams) Observe(s.close(std::ios_base::out));
    for (auto& r : held) Observe(r.reply(http::status_codes::ServiceUnavailable));
    try {
      listener_->close().wait();
    } catch (const std::exception&) {
    }
  }

  const std::string& url() const { return url_; }

  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  Seen last() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.empty() ? Seen{} : seen_.back();
  }

  // Replies 200 with a body the test writes later through the returned buffer.
  concurrency::streams::producer_consumer_buffer<uint8_t> Stream(http::http_request& r) {
    concurrency::streams::producer_consumer_buffer<uint8_t> buf;
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams_.push_back(buf);
    }
    http::http_response response(http::status_codes::OK);
    response.set_body(buf.create_istream(), "application/json");
    Observe(r.reply(response));
    return buf;
  }

  // Never replies (until the server is destroyed).
  void Hold(http::http_request& r) {
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back(r);
  }

 private:
  explicit FakeServer(Handler handler) : handler_(std::move(handler)) {}

  void Handle(http::http_request request) {
    request.extract_utf8string(true).then([this, request](pplx::task<std::string> t) mutable {
      Seen s;
      s.method = request.method();
      s.path = request.relative_uri().path();
      for (const auto& [k, v] : web::uri::split_query(request.relative_uri().query())) {
        s.query[k] = web::uri::decode(v);
      }
      for (const auto& [k, v] : request.headers()) s.headers[k] = v;
      try {
        s.body = t.get();
      } catch (...) {
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(s);
      }
      handler_(s, request);
    });
  }

  Handler handler_;
  std::string url_;
  std::unique_ptr<http_listener> listener_;
  std::mutex mu_;
  std::vector<Seen> seen_;
  std::vector<concurrency::streams::producer_consumer_buffer<uint8_t>> streams_;
  std::vector<http::http_request> held_;
};

void ReplyJson(http::http_request& r, int code, const json& body) {
  Observe(r.reply(static_cast<http::status_code>(code), body.dump(), "application/json"));
}

json StatusBody(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},       {"code", code},
          {"reason", reason}, {"message", message}, {"metadata", json::object()}};
}

void Write(concurrency::streams::producer_consumer_buffer<uint8_t>& buf, const std::string& text) {
  buf.putn_nocopy(reinterpret_cast<const uint8_t*>(text.data()), text.size()).wait();
  buf.sync().wait();  // hand what is there to the listener now, not when a chunk is full
}

RestConfig PlainConfig(const std::string& url) {
  RestConfig c;
  c.server = url;
  c.bearer_token = "t0ken";
  c.source = "test";
  return c;
}

// ---------------------------------------------------------------------------------------------
// Requests.

class HttpClientTest : public ::testing::Test {
 protected:
  void StartEcho() {
    server_ = FakeServer::Start([](const Seen& s, http::http_request& r) {
      ReplyJson(r, 200, {{"kind", "Echo"}, {"method", s.method}, {"path", s.path}});
    });
    ASSERT_NE(server_, nullptr);
    client_ = MakeHttpClient(PlainConfig(server_->url()));
  }

  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(HttpClientTest, GetSendsTokenUserAgentAndAccept) {
  StartEcho();
  auto r = client_->Get(resources::kConfigMaps, "ns", "cm");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["path"], "/api/v1/namespaces/ns/configmaps/cm");
  Seen s = server_->last();
  EXPECT_EQ(s.method, "GET");
  EXPECT_EQ(s.headers["Authorization"], "Bearer t0ken");
  EXPECT_THAT(s.headers["User-Agent"], StartsWith("parallelrun-operator/"));
  EXPECT_EQ(s.headers["Accept"], "application/json");
}

TEST_F(HttpClientTest, ListEncodesEveryOption) {
  StartEcho();
  ListOptions o;
  o.label_selector = "app in (a,b),!skip";
  o.field_selector = "metadata.name=x";
  o.resource_version = "42";
  o.limit = 7;
  o.continue_token = "abc+/=";
  ASSERT_TRUE(client_->List(resources::kPods, "", o).ok());
  Seen s = server_->last();
  EXPECT_EQ(s.path, "/api/v1/pods");
  EXPECT_EQ(s.query, (std::map<std::string, std::string>{{"labelSelector", "app in (a,b),!skip"},
                                                         {"fieldSelector", "metadata.name=x"},
                                                         {"resourceVersion", "42"},
                                                         {"limit", "7"},
                                                         {"continue", "abc+/="}}));
}

TEST_F(HttpClientTest, CreateAndUpdateSendJson) {
  StartEcho();
  json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "c"}}}};
  ASSERT_TRUE(client_->Create(resources::kConfigMaps, "ns", cm).ok());
  Seen s = server_->last();
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.path, "/api/v1/namespaces/ns/configmaps");
  EXPECT_EQ(s.headers["Content-Type"], "application/json");
  EXPECT_EQ(json::parse(s.body), cm);

  ASSERT_TRUE(client_->Update(resources::kParallelRunJobs, "ns", cm, "status").ok());
  s = server_->last();
  EXPECT_EQ(s.method, "PUT");
  EXPECT_EQ(s.path, "/apis/parallelrun.io/v1alpha1/namespaces/ns/parallelrunjobs/c/status");
}

TEST_F(HttpClientTest, PatchContentTypesAndApplyQuery) {
  StartEcho();
  struct Case {
    PatchType type;
    const char* content_type;
  };
  for (const Case& c : {Case{PatchType::kMerge, "application/merge-patch+json"},
                        Case{PatchType::kJson, "application/json-patch+json"},
                        Case{PatchType::kStrategicMerge, "application/strategic-merge-patch+json"},
                        Case{PatchType::kApply, "application/apply-patch+yaml"}}) {
    ASSERT_TRUE(client_->Patch(resources::kPods, "ns", "p", c.type, json::object()).ok());
    Seen s = server_->last();
    EXPECT_EQ(s.method, "PATCH");
    EXPECT_EQ(s.headers["Content-Type"], c.content_type);
    if (c.type == PatchType::kApply) {
      EXPECT_EQ(s.query, (std::map<std::string, std::string>{
                             {"fieldManager", "parallelrun-operator"}, {"force", "true"}}));
    } else {
      EXPECT_TRUE(s.query.empty());
    }
  }
}

TEST_F(HttpClientTest, DeleteSendsDeleteOptionsBody) {
  StartEcho();
  DeleteOptions o;
  o.grace_period_seconds = 0;
  o.propagation_policy = "Foreground";
  o.precondition_uid = "u-1";
  o.precondition_resource_version = "9";
  ASSERT_TRUE(client_->Delete(resources::kPods, "ns", "p", o).ok());
  Seen s = server_->last();
  EXPECT_EQ(s.method, "DELETE");
  EXPECT_EQ(json::parse(s.body),
            json::parse(R"({"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,
                "propagationPolicy":"Foreground",
                "preconditions":{"uid":"u-1","resourceVersion":"9"}})"));
}

TEST_F(HttpClientTest, NamespacedCallsNeedANamespace) {
  StartEcho();
  auto r = client_->Get(resources::kPods, "", "p");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->seen().empty());
}

// The table of client.h: HTTP status (+ metav1 reason) → StatusCode, message with the Status.
TEST_F(HttpClientTest, ErrorsAreMappedWithTheStatusMessage) {
  struct Case {
    int code;
    std::string reason;
    StatusCode want;
  };
  const std::vector<Case> cases = {
      {404, "NotFound", StatusCode::kNotFound},
      {409, "AlreadyExists", StatusCode::kAlreadyExists},
      {409, "Conflict", StatusCode::kAborted},
      {410, "Expired", StatusCode::kGone},
      {410, "Gone", StatusCode::kGone},
      {400, "BadRequest", StatusCode::kInvalidArgument},
      {422, "Invalid", StatusCode::kInvalidArgument},
      {401, "Unauthorized", StatusCode::kUnauthenticated},
      {403, "Forbidden", StatusCode::kPermissionDenied},
      {429, "TooManyRequests", StatusCode::kUnavailable},
      {500, "InternalError", StatusCode::kUnavailable},
      {503, "ServiceUnavailable", StatusCode::kUnavailable},
      {504, "Timeout", StatusCode::kUnavailable},
      {405, "MethodNotAllowed", StatusCode::kInternal},
  };
  std::mutex mu;
  Case current{};
  server_ = FakeServer::Start([&](const Seen&, http::http_request& r) {
    std::lock_guard<std::mutex> lock(mu);
    ReplyJson(r, current.code, StatusBody(current.code, current.reason, "the details"));
  });
  ASSERT_NE(server_, nullptr);
  client_ = MakeHttpClient(PlainConfig(server_->url()));
  for (const Case& c : cases) {
    {
      std::lock_guard<std::mutex> lock(mu);
      current = c;
    }
    auto r = client_->Get(resources::kConfigMaps, "ns", "x");
    ASSERT_FALSE(r.ok()) << c.code;
    EXPECT_EQ(r.status().code(), c.want) << c.code << " " << c.reason;
    std::string reason = c.code == 410 && c.reason != "Gone" ? "Gone (" + c.reason + ")" : c.reason;
    EXPECT_EQ(r.status().message(), "GET /api/v1/namespaces/ns/configmaps/x: " +
                                        std::to_string(c.code) + " " + reason + ": the details");
    EXPECT_EQ(IsGone(r.status()), c.code == 410) << c.code;
  }
}

TEST_F(HttpClientTest, ErrorBodyThatIsNotAStatusIsQuoted) {
  server_ = FakeServer::Start([](const Seen&, http::http_request& r) {
    Observe(r.reply(http::status_codes::BadGateway, "upstream exploded", "text/plain"));
  });
  ASSERT_NE(server_, nullptr);
  client_ = MakeHttpClient(PlainConfig(server_->url()));
  auto r = client_->Delete(resources::kPods, "ns", "p");
  EXPECT_EQ(r.code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.message(), HasSubstr("DELETE /api/v1/namespaces/ns/pods/p: 502"));
  EXPECT_THAT(r.message(), HasSubstr("upstream exploded"));
}

TEST_F(HttpClientTest, NoServerIsUnavailable) {
  auto port = rt::PickFreePort("127.0.0.1");
  ASSERT_TRUE(port.ok());
  client_ = MakeHttpClient(PlainConfig("http://127.0.0.1:" + std::to_string(*port)));
  auto r = client_->List(resources::kPods, "ns", {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  auto w = client_->Watch(resources::kPods, "ns", {});
  EXPECT_EQ(w.status().code(), StatusCode::kUnavailable) << w.status().ToString();
}

TEST_F(HttpClientTest, SlowServerIsDeadlineExceeded) {
  server_ = FakeServer::Start([this](const Seen&, http::http_request& r) { server_->Hold(r); });
  ASSERT_NE(server_, nullptr);
  HttpClientOptions o;
  o.request_timeout = std::chrono::seconds(1);
  client_ = MakeHttpClient(PlainConfig(server_->url()), o);
  auto r = client_->Get(resources::kPods, "ns", "p");
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  auto w = client_->Watch(resources::kPods, "ns", {});
  EXPECT_EQ(w.status().code(), StatusCode::kDeadlineExceeded) << w.status().ToString();
}

TEST_F(HttpClientTest, TokenFileIsReadAgainWhenItChanges) {
  StartEcho();
  fakes::TempDir tmp("kube-token");
  fs::path dir = tmp.path();
  const std::string file = (dir / "token").string();
  ASSERT_TRUE(rt::WriteFileAtomic(file, "first\n").ok());
  RestConfig c = PlainConfig(server_->url());
  c.bearer_token_file = file;
  client_ = MakeHttpClient(c);
  ASSERT_TRUE(client_->Get(resources::kPods, "ns", "p").ok());
  EXPECT_EQ(server_->last().headers["Authorization"], "Bearer first");
  ASSERT_TRUE(rt::WriteFileAtomic(file, "second").ok());
  ASSERT_TRUE(client_->Get(resources::kPods, "ns", "p").ok());
  EXPECT_EQ(server_->last().headers["Authorization"], "Bearer second");
}

TEST_F(HttpClientTest, RateLimitSpacesRequests) {
  StartEcho();
  HttpClientOptions o;
  o.qps = 20;
  o.burst = 1;
  client_ = MakeHttpClient(PlainConfig(server_->url()), o);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client_->Get(resources::kPods, "ns", "p").ok());
  // 1 at once, then 4 at 50 ms each.
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(190));
}

// ---------------------------------------------------------------------------------------------
// Watch.

class WatchTest : public HttpClientTest {
 protected:
  // Starts a server whose watch replies are streams handed to the test.
  void StartStreaming() {
    server_ = FakeServer::Start(
        [this](const Seen&, http::http_request& r) { streams_.set_value(server_->Stream(r)); });
    ASSERT_NE(server_, nullptr);
    client_ = MakeHttpClient(PlainConfig(server_->url()));
  }

  concurrency::streams::producer_consumer_buffer<uint8_t> TakeStream() {
    auto f = streams_.get_future();
    EXPECT_EQ(f.wait_for(kDeadline), std::future_status::ready);
    return f.get();
  }

  std::promise<concurrency::streams::producer_consumer_buffer<uint8_t>> streams_;
};

TEST_F(WatchTest, EventsArriveAsWrittenWhateverTheChunking) {
  StartStreaming();
  ListOptions o;
  o.resource_version = "5";
  o.timeout_seconds = 60;
  auto w = client_->Watch(resources::kConfigMaps, "ns", o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto buf = TakeStream();
  Seen s = server_->last();
  EXPECT_EQ(s.query, (std::map<std::string, std::string>{{"watch", "true"},
                                                         {"resourceVersion", "5"},
                                                         {"allowWatchBookmarks", "true"},
                                                         {"timeoutSeconds", "60"}}));

  // Half of the second event comes with the first: the first must be returned now.
  Write(buf, "{\"type\":\"ADDED\",\"object\":{\"n\":1}}\n{\"type\":\"MODIF");
  auto e = (*w)->Next();
  ASSERT_TRUE(e.ok() && e->has_value()) << e.status().ToString();
  EXPECT_EQ((*e)->type, "ADDED");
  EXPECT_EQ((*e)->object["n"], 1);

  Write(buf, "IED\",\"object\":{\"n\":2}}\n\n{\"type\":\"BOOKMARK\",\"object\":{}}\n");
  e = (*w)->Next();
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->type, "MODIFIED");
  e = (*w)->Next();
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->type, "BOOKMARK");

  // The last event without its newline, then the server ends the watch.
  Write(buf, R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})");
  buf.close(std::ios_base::out).wait();
  e = (*w)->Next();
  ASSERT_TRUE(e.ok() && e->has_value()) << e.status().ToString();
  EXPECT_EQ((*e)->type, "ERROR");
  EXPECT_EQ((*e)->object["code"], 410);
  e = (*w)->Next();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_FALSE(e->has_value());
}

TEST_F(WatchTest, CancelUnblocksNext) {
  StartStreaming();
  auto w = client_->Watch(resources::kPods, "ns", {});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto buf = TakeStream();
  WatchStream* stream = w->get();
  auto next = std::async(std::launch::async, [stream] { return stream->Next(); });
  // Give Next() a moment to block; the test holds either way.
  EXPECT_EQ(next.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  stream->Cancel();
  ASSERT_EQ(next.wait_for(kDeadline), std::future_status::ready);
  auto e = next.get();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_FALSE(e->has_value());
  // Cancelled for good.
  e = stream->Next();
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
}

TEST_F(WatchTest, GarbageLineIsAnError) {
  StartStreaming();
  auto w = client_->Watch(resources::kPods, "ns", {});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto buf = TakeStream();
  Write(buf, "<html>\n");
  auto e = (*w)->Next();
  EXPECT_EQ(e.status().code(), StatusCode::kInternal);
  EXPECT_THAT(e.status().message(), HasSubstr("<html>"));
}

TEST_F(WatchTest, RefusedWatchIsAnError) {
  server_ = FakeServer::Start([](const Seen&, http::http_request& r) {
    ReplyJson(r, 410, StatusBody(410, "Expired", "too old resource version: 1 (20)"));
  });
  ASSERT_NE(server_, nullptr);
  client_ = MakeHttpClient(PlainConfig(server_->url()));
  auto w = client_->Watch(resources::kPods, "ns", {});
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(IsGone(w.status())) << w.status().ToString();
  EXPECT_THAT(w.status().message(), HasSubstr("too old resource version"));
}

// ---------------------------------------------------------------------------------------------
// TLS.

class TlsTest : public HttpClientTest {
 protected:
  void StartTls(bool require_client_cert) {
    ServerTls tls{pki_.server, require_client_cert ? pki_.ca.cert_pem : ""};
    server_ = FakeServer::Start(
        [](const Seen&, http::http_request& r) {
          ReplyJson(r, 200, {{"kind", "Ok"}});
        },
        &tls);
    ASSERT_NE(server_, nullptr);
  }

  RestConfig Config() {
    RestConfig c = PlainConfig(server_->url());
    c.ca_pem = pki_.ca.cert_pem;
    return c;
  }

  Status Try(const RestConfig& c) {
    return MakeHttpClient(c)->Get(resources::kPods, "ns", "p").status();
  }

  Pki pki_;
};

TEST_F(TlsTest, ServerIsVerifiedAgainstTheGivenCa) {
  StartTls(false);
  EXPECT_TRUE(Try(Config()).ok()) << Try(Config()).ToString();
  RestConfig wrong = Config();
  wrong.ca_pem = pki_.other_ca.cert_pem;
  EXPECT_EQ(Try(wrong).code(), StatusCode::kUnavailable);
  RestConfig insecure = wrong;
  insecure.insecure_skip_tls_verify = true;
  EXPECT_TRUE(Try(insecure).ok()) << Try(insecure).ToString();
}

TEST_F(TlsTest, ClientCertificateIsPresented) {
  StartTls(true);
  EXPECT_EQ(Try(Config()).code(), StatusCode::kUnavailable);
  RestConfig c = Config();
  c.client_cert_pem = pki_.client.cert_pem;
  c.client_key_pem = pki_.client.key_pem;
  EXPECT_TRUE(Try(c).ok()) << Try(c).ToString();
}

TEST_F(TlsTest, BadTlsMaterialIsReportedByEveryCall) {
  RestConfig c = PlainConfig("https://127.0.0.1:1");
  c.ca_pem = "not a certificate";
  EXPECT_EQ(CheckRestConfig(c).code(), StatusCode::kInvalidArgument);
  auto r = MakeHttpClient(c)->List(resources::kPods, "ns", {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("CA"));

  c.ca_pem = "";
  c.client_cert_pem = pki_.client.cert_pem;
  c.client_key_pem = pki_.other_ca.key_pem;
  EXPECT_THAT(CheckRestConfig(c).message(), HasSubstr("does not match"));

  c.client_key_pem = "";
  EXPECT_EQ(CheckRestConfig(c).code(), StatusCode::kInvalidArgument);

  RestConfig bad_url = PlainConfig("127.0.0.1:6443");
  EXPECT_THAT(CheckRestConfig(bad_url).message(), HasSubstr("expected https://"));
}

}  // namespace
}  // namespace parallelrun::op::kube
