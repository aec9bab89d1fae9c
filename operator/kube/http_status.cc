#include "operator/kube/http_status.h"

#include <nlohmann/json.hpp>

namespace parallelrun::op::kube {
namespace {

using nlohmann::json;

// Error bodies are quoted up to this length when they are not a metav1.Status.
constexpr size_t kMaxQuotedBody = 500;

}  // namespace

std::string Quote(const std::string& body) {
  return body.size() > kMaxQuotedBody ? body.substr(0, kMaxQuotedBody) + "..." : body;
}

// "<what>: <code> <reason>: <message>" mapped as client.h says. `body` is a metav1.Status when
// the API server wrote it, anything when a proxy did.
Status HttpError(const std::string& what, int code, const std::string& phrase,
                 const std::string& body) {
  std::string reason = phrase;
  std::string message = Quote(body);
  try {
    json status = json::parse(body);
    if (status.is_object()) {
      if (status.value("reason", json()).is_string()) reason = status["reason"];
      if (status.value("message", json()).is_string()) message = status["message"];
    }
  } catch (const json::exception&) {
  }
  if (code == 410 && reason != "Gone") reason = reason.empty() ? "Gone" : "Gone (" + reason + ")";
  std::string text = what + ": " + std::to_string(code) + (reason.empty() ? "" : " " + reason) +
                     (message.empty() ? "" : ": " + message);
  switch (code) {
    case 400:
    case 422:
      return rt::InvalidArgumentError(std::move(text));
    case 401:
      return rt::UnauthenticatedError(std::move(text));
    case 403:
      return rt::PermissionDeniedError(std::move(text));
    case 404:
      return rt::NotFoundError(std::move(text));
    case 409:
      if (reason == "AlreadyExists") return rt::AlreadyExistsError(std::move(text));
      return rt::AbortedError(std::move(text));
    case 410:
      return rt::GoneError(std::move(text));
    case 429:
      return rt::UnavailableError(std::move(text));
    default:
      if (code >= 500) return rt::UnavailableError(std::move(text));
      return rt::InternalError(std::move(text));
  }
}

std::string PatchContentType(PatchType type) {
  switch (type) {
    case PatchType::kMerge:
      return "application/merge-patch+json";
    case PatchType::kJson:
      return "application/json-patch+json";
    case PatchType::kStrategicMerge:
      return "application/strategic-merge-patch+json";
    case PatchType::kApply:
      return "application/apply-patch+yaml";
  }
  return "application/json";
}

}  // namespace parallelrun::op::kube
