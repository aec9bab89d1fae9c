#include "tests/cluster/https_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

const char* ReasonPhrase(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

int AlpnSelect(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  // Accept http/1.1 if the client offers it; otherwise answer without ALPN.
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (len == 8 && i + 1 + len <= inlen && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

class Connection : public HttpResponder {
 public:
  Connection(SSL* ssl, int fd) : ssl_(ssl), fd_(fd) {}

  bool WriteAll(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      int n = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
      if (n <= 0) {
        broken_ = true;
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads into buffer_ until it holds at least `want` bytes; false at end of stream.
  bool Fill(size_t want) {
    char buf[16384];
    while (buffer_.size() < want) {
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) return false;
      buffer_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one request; false when the connection ended or the request was malformed.
  bool ReadRequest(HttpRequest* req) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > (1 << 20)) return false;
      if (!Fill(buffer_.size() + 1)) return false;
    }
    std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    std::vector<std::string> lines = Split(head, '\n');
    std::vector<std::string> first = Split(Trim(lines[0]), ' ');
    if (first.size() < 3) return false;
    req->method = first[0];
    req->target = first[1];
    size_t q = req->target.find('?');
    req->path = UrlDecode(req->target.substr(0, q));
    req->query = q == std::string::npos ? "" : req->target.substr(q + 1);
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string line = Trim(lines[i]);
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      req->headers[ToLower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
    }
    keep_alive_ = ToLower(req->Header("connection")) != "close";
    if (ToLower(req->Header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        size_t le;
        while ((le = buffer_.find("\r\n")) == std::string::npos) {
          if (!Fill(buffer_.size() + 1)) return false;
        }
        size_t len = std::strtoul(buffer_.substr(0, le).c_str(), nullptr, 16);
        buffer_.erase(0, le + 2);
        if (!Fill(len + 2)) return false;
        req->body.append(buffer_, 0, len);
        buffer_.erase(0, len + 2);
        if (len == 0) break;
      }
    } else {
      size_t len = std::strtoul(req->Header("content-length").c_str(), nullptr, 10);
      if (!Fill(len)) return false;
      req->body = buffer_.substr(0, len);
      buffer_.erase(0, len);
    }
    return true;
  }

  void Send(int code, const std::string& content_type, const std::string& body,
            const std::vector<std::pair<std::string, std::string>>& headers) override {
    std::string out = "HTTP/1.1 " + std::to_string(code) + " " + ReasonPhrase(code) + "\r\n";
    if (!content_type.empty()) out += "Content-Type: " + content_type + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += "Cache-Control: no-cache, private\r\n";
    for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
    out += "\r\n";
    out += body;
    WriteAll(out);
  }

  bool BeginStream(const std::string& content_type) override {
    streaming_ = true;
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: " + content_type +
                      "\r\nCache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n";
    return WriteAll(out);
  }

  bool Write(const std::string& data) override {
    if (data.empty()) return !broken_;
    char len[32];
    std::snprintf(len, sizeof len, "%zx\r\n", data.size());
    return WriteAll(std::string(len) + data + "\r\n");
  }

  void EndStream() override { WriteAll("0\r\n\r\n"); }

  bool PeerClosed() override {
    if (broken_) return true;
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return true;
    return false;
  }

  bool keep_alive() const { return keep_alive_ && !broken_; }

 private:
  SSL* ssl_;
  int fd_;
  std::string buffer_;
  bool keep_alive_ = true;
  bool streaming_ = false;
  bool broken_ = false;
};

}  // namespace

std::string HttpRequest::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

HttpsServer::HttpsServer(std::string cert_file, std::string key_file, HttpHandler handler)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      handler_(std::move(handler)) {}

HttpsServer::~HttpsServer() {
  Stop();
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

bool HttpsServer::Start(const std::string& host, int port, std::string* error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ssl_ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file_.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key_file_.c_str(), SSL_FILETYPE_PEM) != 1) {
    *error = "cannot load the serving certificate " + cert_file_ + " / key " + key_file_;
    return false;
  }
  SSL_CTX_set_alpn_select_cb(ctx, AlpnSelect, nullptr);
  signal(SIGPIPE, SIG_IGN);

  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    *error = "listen address " + host + " is not an IPv4 address";
    return false;
  }
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 128) != 0) {
    *error = "cannot listen on " + host + ":" + std::to_string(port) + ": " + strerror(errno);
    close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  socklen_t len = sizeof addr;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void HttpsServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  // Connection threads are detached; give streaming ones a moment to notice `stopping_`.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (active_connections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void HttpsServer::AcceptLoop() {
  while (!stopping_.load()) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++active_connections_;
    std::thread([this, fd] {
      ServeConnection(fd);
      --active_connections_;
    }).detach();
  }
}

void HttpsServer::ServeConnection(int fd) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    Connection conn(ssl, fd);
    while (!stopping_.load()) {
      HttpRequest req;
      if (!conn.ReadRequest(&req)) break;
      handler_(req, conn);
      if (!conn.keep_alive()) break;
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
}

}  // namespace parallelrun::rt::cluster
