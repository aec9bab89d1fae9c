#include "tests/cluster/kubelet/probes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace parallelrun::rt::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

int IntOr(const Json& obj, const char* field, int fallback) {
  auto it = obj.find(field);
  return it != obj.end() && it->is_number_integer() ? it->get<int>() : fallback;
}

// A port as a number, a numeric string or the name of one of the container's ports.
bool ResolvePort(const Json& port, const Json& container, int* out, std::string* error) {
  if (port.is_number_integer()) {
    *out = port.get<int>();
  } else if (port.is_string()) {
    std::string name = port.get<std::string>();
    *out = 0;
    if (const Json* ports = JsonAt(container, "ports"); ports != nullptr && ports->is_array()) {
      for (const auto& p : *ports) {
        if (StringAt(p, "name") == name) *out = IntOr(p, "containerPort", 0);
      }
    }
    if (*out == 0 && !name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
      *out = std::stoi(name);
    }
    if (*out == 0) {
      *error =
          "port \"" + name + "\" is not a named port of container " + StringAt(container, "name");
      return false;
    }
  } else {
    *error = "port must be a number or a port name";
    return false;
  }
  if (*out <= 0 || *out > 65535) {
    *error = "port " + std::to_string(*out) + " is out of range";
    return false;
  }
  return true;
}

// Connects to host:port within `deadline`; returns the socket or -1 with the kubelet's wording.
int Connect(const std::string& host, int port, steady_clock::time_point deadline,
            std::string* error) {
  std::string target = host + ":" + std::to_string(port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
      *error = "dial tcp: lookup " + host + ": no such host";
      return -1;
    }
    addr.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno == EINPROGRESS) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    pollfd p{fd, POLLOUT, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      close(fd);
      *error = "dial tcp " + target + ": i/o timeout";
      return -1;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    rc = so_error == 0 ? 0 : -1;
    errno = so_error;
  }
  if (rc != 0) {
    std::string why = errno == ECONNREFUSED ? "connection refused" : std::strerror(errno);
    close(fd);
    *error = "dial tcp " + target + ": connect: " + why;
    return -1;
  }
  return fd;
}

}  // namespace

bool ParseProbe(const Json& probe, const Json& container, ProbeSpec* out, std::string* error) {
  ProbeSpec spec;
  if (probe.contains("httpGet")) {
    const Json& get = probe["httpGet"];
    spec.kind = ProbeSpec::Kind::kHttpGet;
    std::string scheme = StringAt(get, "scheme", "HTTP");
    if (scheme != "HTTP") {
      *error = "httpGet.scheme " + scheme + " is not supported by the test cluster (HTTP only)";
      return false;
    }
    spec.host = StringAt(get, "host");
    spec.path = StringAt(get, "path", "/");
    if (spec.path.empty() || spec.path[0] != '/') spec.path = "/" + spec.path;
    if (!ResolvePort(get.value("port", Json()), container, &spec.port, error)) {
      *error = "httpGet." + *error;
      return false;
    }
    if (const Json* headers = JsonAt(get, "httpHeaders"); headers && headers->is_array()) {
      for (const auto& h : *headers)
        spec.headers.emplace_back(StringAt(h, "name"), StringAt(h, "value"));
    }
  } else if (probe.contains("tcpSocket")) {
    spec.kind = ProbeSpec::Kind::kTcpSocket;
    spec.host = StringAt(probe["tcpSocket"], "host");
    if (!ResolvePort(probe["tcpSocket"].value("port", Json()), container, &spec.port, error)) {
      *error = "tcpSocket." + *error;
      return false;
    }
  } else if (probe.contains("exec")) {
    spec.kind = ProbeSpec::Kind::kExec;
    if (const Json* cmd = JsonAt(probe, "exec.command"); cmd && cmd->is_array()) {
      for (const auto& a : *cmd) spec.command.push_back(a.is_string() ? a.get<std::string>() : "");
    }
    if (spec.command.empty()) {
      *error = "exec.command must not be empty";
      return false;
    }
  } else {
    *error =
        "the probe needs httpGet, tcpSocket or exec (grpc is not supported by the test "
        "cluster)";
    return false;
  }
  spec.initial_delay_seconds = IntOr(probe, "initialDelaySeconds", 0);
  spec.period_seconds = std::max(1, IntOr(probe, "periodSeconds", 10));
  spec.timeout_seconds = std::max(1, IntOr(probe, "timeoutSeconds", 1));
  spec.success_threshold = std::max(1, IntOr(probe, "successThreshold", 1));
  spec.failure_threshold = std::max(1, IntOr(probe, "failureThreshold", 3));
  if (const Json* g = JsonAt(probe, "terminationGracePeriodSeconds"); g && g->is_number_integer())
    spec.termination_grace_period_seconds = g->get<int64_t>();
  *out = std::move(spec);
  return true;
}

ProbeOutcome TcpConnectOnce(const std::string& host, int port, milliseconds timeout) {
  std::string error;
  int fd = Connect(host, port, steady_clock::now() + timeout, &error);
  if (fd < 0) return {false, error};
  close(fd);
  return {true, ""};
}

ProbeOutcome HttpGetOnce(const std::string& host, int port, const std::string& path,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  const std::string url = "http://" + host + ":" + std::to_string(port) + path;
  std::string error;
  int fd = Connect(host, port, deadline, &error);
  if (fd < 0) return {false, "Get \"" + url + "\": " + error};
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                        "\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\n";
  for (const auto& [k, v] : headers) request += k + ": " + v + "\r\n";
  request += "Connection: close\r\n\r\n";
  std::string response;
  size_t sent = 0;
  bool timed_out = false;
  while (response.find("\r\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    pollfd p{fd, static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      timed_out = true;
      break;
    }
    if (sent < request.size()) {
      ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (n > 0) response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (timed_out) {
    return {false, "Get \"" + url +
                       "\": context deadline exceeded (Client.Timeout exceeded while awaiting "
                       "headers)"};
  }
  int code = 0;
  if (response.compare(0, 5, "HTTP/") == 0) {
    auto space = response.find(' ');
    if (space != std::string::npos) code = std::atoi(response.c_str() + space + 1);
  }
  if (code == 0) return {false, "Get \"" + url + "\": malformed HTTP response"};
  if (code >= 200 && code < 400) return {true, ""};
  return {false, "HTTP probe failed with statuscode: " + std::to_string(code)};
}

void ProbeWorker::Reset(SteadyTime started) {
  result_ = Result::kUnknown;
  successes_ = 0;
  failures_ = 0;
  failures_messages_.clear();
  next_attempt_ = started + std::chrono::seconds(spec_.initial_delay_seconds);
  if (in_flight_.valid()) in_flight_.wait();  // at most timeoutSeconds
  in_flight_ = {};
}

ProbeWorker::SteadyTime ProbeWorker::Poll(SteadyTime now, const Attempt& attempt, bool* changed) {
  *changed = false;
  if (in_flight_.valid()) {
    if (in_flight_.wait_for(milliseconds(0)) != std::future_status::ready) {
      return now + milliseconds(20);
    }
    ProbeOutcome outcome = in_flight_.get();
    in_flight_ = {};
    if (outcome.success) {
      failures_ = 0;
      if (++successes_ >= spec_.success_threshold && result_ != Result::kSuccess) {
        result_ = Result::kSuccess;
        *changed = true;
      }
    } else {
      successes_ = 0;
      failures_messages_.push_back(outcome.message);
      if (++failures_ >= spec_.failure_threshold && result_ != Result::kFailure) {
        result_ = Result::kFailure;
        *changed = true;
      }
    }
  }
  if (now >= next_attempt_) {
    in_flight_ = std::async(std::launch::async, attempt);
    next_attempt_ = now + std::chrono::seconds(spec_.period_seconds);
    return now + milliseconds(20);
  }
  return next_attempt_;
}

std::vector<std::string> ProbeWorker::TakeFailures() {
  std::vector<std::string> out;
  out.swap(failures_messages_);
  return out;
}

}  // namespace parallelrun::rt::cluster
