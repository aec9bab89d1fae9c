// How an API server's answer becomes a Status, as client.h documents it: one mapping for the
// HTTPS client and for the in-process test client (fake_client.h).
#pragma once

#include <string>

#include "operator/kube/client.h"

namespace parallelrun::op::kube {

// "<what>: <code> <reason>: <message>" for an HTTP error answer. `body` is a metav1.Status when
// the API server wrote it (its reason and message are used), anything when a proxy did (quoted,
// cut at 500 bytes). 404 → kNotFound, 409 AlreadyExists → kAlreadyExists, other 409 → kAborted,
// 410 → kGone, 400/422 → kInvalidArgument, 401 → kUnauthenticated, 403 → kPermissionDenied,
// 429/5xx → kUnavailable, anything else → kInternal.
Status HttpError(const std::string& what, int code, const std::string& phrase,
                 const std::string& body);

// The Content-Type of a PATCH request.
std::string PatchContentType(PatchType type);

// A body as error messages quote it: cut at 500 bytes.
std::string Quote(const std::string& body);

}  // namespace parallelrun::op::kube
