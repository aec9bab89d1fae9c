#pragma once
// A small HTTP/1.1 server over TLS (OpenSSL + sockets, one thread per connection).
//
// Why not cpprestsdk's http_listener: a watch is a response that stays open for minutes and is
// written event by event (chunked), and the server must notice when the client hangs up so
// watcher registrations do not leak; the listener buffers whole responses, gives no hang-up
// signal, and cannot report the port it bound for port 0. Serving only HTTP/1.1 is enough:
// kubectl and the Python client use it when ALPN offers nothing else.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace parallelrun::rt::cluster {

struct HttpRequest {
  std::string method;
  std::string target;                          // as sent: path?query
  std::string path;                            // decoded path
  std::string query;                           // raw query string
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& lower_name) const;
};

// Writes one response. Either Send() once, or BeginStream() then Write()s then EndStream().
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  virtual void Send(int code, const std::string& content_type, const std::string& body,
                    const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;
  // Starts a chunked 200 response.
  virtual bool BeginStream(const std::string& content_type) = 0;
  // Writes one chunk; false when the client is gone.
  virtual bool Write(const std::string& data) = 0;
  virtual void EndStream() = 0;
  // True when the client has closed its side (checked without blocking).
  virtual bool PeerClosed() = 0;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponder&)>;

class HttpsServer {
 public:
  // cert/key: PEM files of the serving certificate and its key.
  HttpsServer(std::string cert_file, std::string key_file, HttpHandler handler);
  ~HttpsServer();

  // Binds host:port (port 0 = any free port) and starts accepting. Returns false with a
  // message in *error on failure.
  bool Start(const std::string& host, int port, std::string* error);
  int port() const { return port_; }
  // Stops accepting; open connections end when their current request is done.
  void Stop();
  bool stopping() const { return stopping_.load(); }

 private:
  void AcceptLoop();
  void ServeConnection(int fd);

  std::string cert_file_;
  std::string key_file_;
  HttpHandler handler_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, kept opaque so OpenSSL stays out of this header
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> active_connections_{0};
  std::thread accept_thread_;
};

}  // namespace parallelrun::rt::cluster
