#include "runtime/protocol/in_process_client.h"

namespace parallelrun::rt::protocol {
namespace {

template <typename T>
StatusOr<T> AsClientSees(StatusOr<T> reply) {
  if (reply.ok() || reply.status().code() == StatusCode::kInvalidArgument) return reply;
  return UnavailableError(reply.status().message());
}

class InProcessClient : public CoordinatorClient {
 public:
  explicit InProcessClient(CoordinatorService* service) : service_(service) {}

  StatusOr<RegisterResponse> Register(const RegisterRequest& req) override {
    return AsClientSees(service_->Register(req));
  }
  StatusOr<LeaseResponse> Lease(const LeaseRequest& req) override {
    return AsClientSees(service_->Lease(req));
  }
  StatusOr<ResultsResponse> Report(const ResultsRequest& req) override {
    auto reply = AsClientSees(ReportAndLease(*service_, req));
    if (!reply.ok()) return reply;
    if (std::string reason = AllRefusedReason(req, *reply); !reason.empty()) {
      return AbortedError("POST /v1/results: 409 " + reason);
    }
    return reply;
  }
  StatusOr<Progress> GetProgress() override { return service_->GetProgress(); }

 private:
  CoordinatorService* service_;
};

}  // namespace

std::unique_ptr<CoordinatorClient> MakeInProcessCoordinatorClient(CoordinatorService* service) {
  return std::make_unique<InProcessClient>(service);
}

}  // namespace parallelrun::rt::protocol
