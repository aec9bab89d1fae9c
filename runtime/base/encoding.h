// Base64 (RFC 4648, standard alphabet, padded): the one encoder and decoder of the project
// (Kubernetes Secret data, kubeconfig `*-data` fields).
#pragma once

#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace parallelrun::rt {

std::string Base64Encode(std::string_view bytes);

// Decodes standard base64 with padding; whitespace (line breaks in long values) is skipped.
// InvalidArgument naming the offending character or the truncated length otherwise.
StatusOr<std::string> Base64Decode(std::string_view text);

}  // namespace parallelrun::rt
