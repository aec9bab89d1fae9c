// GET /v1/progress over HTTPS with Boost.Asio and OpenSSL: one io_context per Read, a timer that
// closes the socket at the deadline, and a small HTTP/1.1 reply parser.

#include "operator/status/progress_client.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

namespace parallelrun::op::status {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using boost::system::error_code;
using rt::Status;
using rt::StatusOr;
using rt::UnavailableError;

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxReplyBytes = 4 * 1024 * 1024;
constexpr const char* kPath = "/v1/progress";

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// Decodes a chunked body; nullopt while incomplete.
StatusOr<std::optional<std::string>> DecodeChunked(std::string_view raw) {
  std::string body;
  size_t pos = 0;
  while (true) {
    const size_t line_end = raw.find("\r\n", pos);
    if (line_end == std::string_view::npos) return std::optional<std::string>();
    std::string_view size_text = raw.substr(pos, line_end - pos);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    const std::string size_trimmed = Trim(size_text);
    size_t size = 0;
    auto [end, ec] =
        std::from_chars(size_trimmed.data(), size_trimmed.data() + size_trimmed.size(), size, 16);
    if (ec != std::errc() || end != size_trimmed.data() + size_trimmed.size() ||
        size_trimmed.empty()) {
      return UnavailableError("malformed chunk size \"" + size_trimmed + "\"");
    }
    // Trailers after the last chunk are ignored: the connection closes after this reply anyway.
    if (size == 0) return std::optional<std::string>(std::move(body));
    const size_t data = line_end + 2;
    if (raw.size() < data + size + 2) return std::optional<std::string>();
    body.append(raw.substr(data, size));
    pos = data + size + 2;
  }
}

// The reply's `reason` (our servers' error shape), else the start of its body.
std::string Reason(const std::string& body) {
  try {
    const nlohmann::json j = nlohmann::json::parse(body);
    if (j.is_object() && j.contains("reason") && j["reason"].is_string()) {
      return j["reason"].get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  return body.size() > 200 ? body.substr(0, 200) + "..." : body;
}

// One HTTPS exchange. Every handler runs on the caller's thread inside io_.run().
class Exchange {
 public:
  Exchange(const ProgressTarget& target, ssl::context& ctx)
      : target_(target),
        where_("https://" + target.host + ":" + std::to_string(target.port) + kPath + " (as " +
               target.server_name + ")"),
        resolver_(io_),
        stream_(io_, ctx),
        timer_(io_) {}

  StatusOr<HttpReply> Run() {
    SSL* ssl = stream_.native_handle();
    // SNI and the name checked in the certificate: the Service name, not the IP we dial.
    if (SSL_set_tlsext_host_name(ssl, target_.server_name.c_str()) != 1 ||
        SSL_set1_host(ssl, target_.server_name.c_str()) != 1) {
      return rt::InvalidArgumentError("server name \"" + target_.server_name + "\" not usable");
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    timer_.expires_after(target_.timeout);
    timer_.async_wait([this](const error_code& ec) {
      if (ec || done_) return;
      timed_out_ = true;
      Close();
    });
    resolver_.async_resolve(
        target_.host, std::to_string(target_.port),
        [this](const error_code& ec, const tcp::resolver::results_type& r) { OnResolved(ec, r); });
    io_.run();
    if (!result_.ok()) return result_.status();
    return *result_;
  }

 private:
  void OnResolved(const error_code& ec, const tcp::resolver::results_type& endpoints) {
    if (ec) return Fail("resolving " + target_.host, ec);
    asio::async_connect(
        stream_.lowest_layer(), endpoints, [this](const error_code& ec, const tcp::endpoint&) {
          if (ec) return Fail("connecting", ec);
          stream_.async_handshake(ssl::stream_base::client,
                                  [this](const error_code& ec) { OnHandshake(ec); });
        });
  }

  void OnHandshake(const error_code& ec) {
    if (ec) {
      const long verify = SSL_get_verify_result(stream_.native_handle());  // NOLINT: OpenSSL's
      if (verify != X509_V_OK && !timed_out_) {
        return Finish(UnavailableError(
            where_ + ": certificate verification failed: " + X509_verify_cert_error_string(verify) +
            " (expected a certificate for " + target_.server_name + " issued by the job's CA)"));
      }
      return Fail("TLS handshake", ec);
    }
    request_ = "GET " + std::string(kPath) + " HTTP/1.1\r\nHost: " + target_.server_name + ":" +
               std::to_string(target_.port) + "\r\nAuthorization: Bearer " + target_.token +
               "\r\nAccept: application/json\r\nUser-Agent: parallelrun-operator\r\n"
               "Connection: close\r\n\r\n";
    asio::async_write(stream_, asio::buffer(request_), [this](const error_code& ec, size_t) {
      if (ec) return Fail("sending the request", ec);
      ReadMore();
    });
  }

  void ReadMore() {
    stream_.async_read_some(asio::buffer(chunk_), [this](const error_code& ec, size_t n) {
      reply_bytes_.append(chunk_.data(), n);
      const bool eof = ec == asio::error::eof || ec == ssl::error::stream_truncated;
      if (ec && !eof) return Fail("reading the reply", ec);
      auto parsed = ParseHttpReply(reply_bytes_, eof);
      if (!parsed.ok()) return Finish(parsed.status().WithContext(where_));
      if (parsed->has_value()) return Finish(std::move(**parsed));
      if (reply_bytes_.size() > kMaxReplyBytes) {
        return Finish(UnavailableError(where_ + ": reply larger than 4 MiB"));
      }
      ReadMore();
    });
  }

  void Fail(const std::string& stage, const error_code& ec) {
    if (timed_out_) {
      return Finish(UnavailableError(where_ + ": timed out after " +
                                     std::to_string(target_.timeout.count()) + " ms " + stage));
    }
    Finish(UnavailableError(where_ + ": " + stage + ": " + ec.message()));
  }

  void Finish(StatusOr<HttpReply> result) {
    if (done_) return;
    done_ = true;
    result_ = std::move(result);
    timer_.cancel();
    Close();
  }

  void Close() {
    resolver_.cancel();
    error_code ignored;
    stream_.lowest_layer().close(ignored);
  }

  const ProgressTarget& target_;
  const std::string where_;
  asio::io_context io_;
  tcp::resolver resolver_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  std::string request_;
  std::array<char, 8192> chunk_;
  std::string reply_bytes_;
  bool done_ = false;
  bool timed_out_ = false;
  StatusOr<HttpReply> result_ = rt::InternalError("no result");
};

StatusOr<rt::protocol::Progress> ToProgress(const HttpReply& reply, const std::string& where) {
  if (reply.status == 401 || reply.status == 403) {
    return rt::UnauthenticatedError(where + ": HTTP " + std::to_string(reply.status) + ": " +
                                    Reason(reply.body));
  }
  if (reply.status != 200) {
    return UnavailableError(where + ": HTTP " + std::to_string(reply.status) + ": " +
                            Reason(reply.body));
  }
  try {
    return nlohmann::json::parse(reply.body).get<rt::protocol::Progress>();
  } catch (const nlohmann::json::exception& e) {
    return rt::InternalError(where + ": reply is not a Progress object: " + e.what());
  }
}

class TlsProgressReader : public ProgressReader {
 public:
  StatusOr<rt::protocol::Progress> Read(const ProgressTarget& target) override {
    const std::string where = "https://" + target.host + ":" + std::to_string(target.port) + kPath;
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(ssl::verify_peer);
    error_code ec;
    ctx.add_certificate_authority(asio::buffer(target.ca_pem), ec);
    if (ec) {
      return rt::InvalidArgumentError(where +
                                      ": the job's CA certificate is not usable: " + ec.message());
    }
    Exchange exchange(target, ctx);
    PR_ASSIGN_OR_RETURN(HttpReply reply, exchange.Run());
    return ToProgress(reply, where);
  }
};

}  // namespace

std::unique_ptr<ProgressReader> MakeTlsProgressReader() {
  return std::make_unique<TlsProgressReader>();
}

StatusOr<std::optional<HttpReply>> ParseHttpReply(const std::string& bytes, bool at_eof) {
  using Parsed = std::optional<HttpReply>;  // nullopt: need more bytes
  const size_t header_end = bytes.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    if (at_eof) return UnavailableError("connection closed before the reply's headers ended");
    if (bytes.size() > kMaxHeaderBytes) return UnavailableError("reply headers too long");
    return Parsed();
  }
  // Status line: HTTP/1.1 200 OK
  const size_t line_end = bytes.find("\r\n");
  const std::string status_line = bytes.substr(0, line_end);
  int status = 0;
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ' ||
      std::from_chars(status_line.data() + 9, status_line.data() + 12, status).ec != std::errc()) {
    return UnavailableError("not an HTTP/1.x reply: \"" + status_line.substr(0, 80) + "\"");
  }
  std::map<std::string, std::string> headers;
  size_t pos = line_end + 2;
  while (pos < header_end) {
    const size_t end = bytes.find("\r\n", pos);
    const std::string line = bytes.substr(pos, end - pos);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
    }
    pos = end + 2;
  }
  const std::string_view raw_body = std::string_view(bytes).substr(header_end + 4);

  if (Lower(headers["transfer-encoding"]).find("chunked") != std::string::npos) {
    PR_ASSIGN_OR_RETURN(std::optional<std::string> body, DecodeChunked(raw_body));
    if (body) return Parsed(HttpReply{status, std::move(*body)});
    if (at_eof) return UnavailableError("connection closed inside a chunked reply");
    return Parsed();
  }
  if (auto it = headers.find("content-length"); it != headers.end()) {
    size_t length = 0;
    const std::string& text = it->second;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return UnavailableError("malformed Content-Length \"" + text + "\"");
    }
    if (raw_body.size() >= length) {
      return Parsed(HttpReply{status, std::string(raw_body.substr(0, length))});
    }
    if (at_eof) {
      return UnavailableError("connection closed after " + std::to_string(raw_body.size()) +
                              " of " + std::to_string(length) + " body bytes");
    }
    return Parsed();
  }
  if (status == 204 || status == 304 || status / 100 == 1) return Parsed(HttpReply{status, ""});
  if (at_eof) return Parsed(HttpReply{status, std::string(raw_body)});
  return Parsed();
}

}  // namespace parallelrun::op::status
