// The listening side of StartHttpServer (http_server.cc): the TLS context, the acceptor and the
// open-file limit, each checked up front so that a mistake is reported at start.
#pragma once

// clang-format off
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange
// clang-format on
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <string>

#include "runtime/base/status.h"

namespace parallelrun::rt::protocol {

// Loads the certificate and key; a wrong path or a key that does not match the certificate is an
// InvalidArgument naming the file.
StatusOr<boost::asio::ssl::context> MakeTlsContext(const std::string& cert, const std::string& key);

// Listens on host:port (0: a free port) with a non-blocking acceptor on `ioc`.
StatusOr<boost::asio::ip::tcp::acceptor> Listen(boost::asio::io_context& ioc,
                                                const std::string& host, int port);

// Raises the soft limit on open files towards max_connections + 256 (up to the hard limit).
void RaiseOpenFileLimit(int max_connections);

}  // namespace parallelrun::rt::protocol
