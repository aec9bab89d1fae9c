// A CoordinatorClient that calls a CoordinatorService in the same process, without HTTP: for
// tests of the coordinator and of agents. Its errors are the HTTP client's for the same answers:
// the service's InvalidArgument as is, Aborted when every result of a Report was refused (HTTP
// 409), anything else as Unavailable (HTTP 500: send again).
#pragma once

#include <memory>

#include "runtime/protocol/coordinator_client.h"
#include "runtime/protocol/coordinator_service.h"

namespace parallelrun::rt::protocol {

// `service` must outlive the client. Thread-safe as the service is.
std::unique_ptr<CoordinatorClient> MakeInProcessCoordinatorClient(CoordinatorService* service);

}  // namespace parallelrun::rt::protocol
