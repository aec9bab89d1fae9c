// The listening side of StartHttpServer (http_server_setup.h).
#include "runtime/protocol/http_server_setup.h"

#include <openssl/ssl.h>
#include <sys/resource.h>

#include <algorithm>
#include <exception>

namespace parallelrun::rt::protocol {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

// Loads the certificate and key once up front so a wrong path or a key that does not match is
// reported at start, not as a TLS failure on the first connection.
StatusOr<ssl::context> MakeTlsContext(const std::string& cert, const std::string& key) {
  try {
    ssl::context ctx(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                    ssl::context::single_dh_use);
    try {
      ctx.use_certificate_chain_file(cert);
    } catch (const std::exception& e) {
      return InvalidArgumentError("TLS certificate " + cert + ": " + e.what());
    }
    try {
      ctx.use_private_key_file(key, ssl::context::pem);
    } catch (const std::exception& e) {
      return InvalidArgumentError("TLS key " + key + ": " + e.what());
    }
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      return InvalidArgumentError("TLS key " + key + " does not match the certificate " + cert);
    }
    return ctx;
  } catch (const std::exception& e) {
    return InternalError(std::string("TLS setup: ") + e.what());
  }
}

StatusOr<tcp::acceptor> Listen(net::io_context& ioc, const std::string& host, int port) {
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  std::string bare =
      host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  auto endpoints = resolver.resolve(bare, std::to_string(port), ec);
  if (ec || endpoints.empty()) {
    return InvalidArgumentError("cannot resolve listen address " + host + ": " + ec.message());
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor acceptor(net::make_strand(ioc));
  acceptor.open(endpoint.protocol(), ec);
  // Like any server: a restarted coordinator binds its address again despite TIME_WAIT.
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  // The acceptor drains its backlog with synchronous accepts that must not block (Acceptor).
  if (!ec) acceptor.non_blocking(true, ec);
  if (ec) {
    return UnavailableError("cannot listen on " + host + ":" +
                            (port == 0 ? std::string("<free port>") : std::to_string(port)) + ": " +
                            ec.message());
  }
  return acceptor;
}

// Room for max_connections sockets besides the files the process already has: the soft limit
// on open files (often 1,024) is raised, up to the hard limit. Beyond it, accept fails with
// EMFILE and the acceptor retries after 100 ms (as before).
void RaiseOpenFileLimit(int max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t want = static_cast<rlim_t>(max_connections) + 256;
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= want) return;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? want : std::min(want, limit.rlim_max);
  (void)::setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace parallelrun::rt::protocol
