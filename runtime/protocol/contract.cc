#include "runtime/protocol/contract.h"

#include <iterator>
#include <ostream>

namespace parallelrun::rt {
namespace {

constexpr const char* kStatusNames[] = {
    "RUN_DONE",  "RUN_EXCEPTION", "RUN_TIMEOUT", "RUN_WRONG_TYPE", "WORKER_DIED",
    "CANCELLED", "LEASE_EXPIRED", "INIT_FAILED", "INIT_TIMEOUT",
};

}  // namespace

std::optional<AttemptStatus> ParseAttemptStatus(std::string_view name) {
  for (size_t i = 0; i < std::size(kStatusNames); ++i) {
    if (name == kStatusNames[i]) return static_cast<AttemptStatus>(i);
  }
  return std::nullopt;
}

const char* AttemptStatusName(AttemptStatus status) {
  return kStatusNames[static_cast<size_t>(status)];
}

std::string AttemptStatusNames() {
  std::string names;
  for (const char* name : kStatusNames) names += (names.empty() ? "" : ", ") + std::string(name);
  return names;
}

std::ostream& operator<<(std::ostream& os, AttemptStatus status) {
  return os << AttemptStatusName(status);
}

}  // namespace parallelrun::rt
