// Status and StatusOr<T>: the error type that crosses module boundaries in parallelrun.
//
// GCC 12 has no std::expected, so this is a small hand-written equivalent. A Status is cheap to
// copy when ok (no allocation). Exceptions from third-party libraries are caught in the adapter
// that calls them and turned into a Status there.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace parallelrun::rt {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad manifest, flag, input data, request
  kNotFound,         // a file, folder or object that should exist does not
  kAlreadyExists,
  kFailedPrecondition,  // state does not allow the operation (e.g. output owned by another job)
  kPermissionDenied,
  kUnauthenticated,
  kUnavailable,  // transient: retry may help (network, 5xx)
  kDeadlineExceeded,
  kAborted,  // conflict, fenced write
  kInternal,
  kGone,  // existed once, no longer available (HTTP 410: a resourceVersion or token too old)
};

const char* StatusCodeName(StatusCode code);

// [[nodiscard]]: a function's Status or StatusOr must be looked at. Where an error truly changes
// nothing, say so: `Cleanup().IgnoreError("best effort: the folder is removed at exit anyway")`.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NotFound: message", or "OK".
  std::string ToString() const;

  // Returns a copy with `context + ": "` prepended to the message.
  Status WithContext(const std::string& context) const;

  // Discards this status on purpose; `why` says why an error changes nothing here (it is for the
  // reader: nothing is logged).
  void IgnoreError(const char* why) const { (void)why; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) {
  return {StatusCode::kAlreadyExists, std::move(m)};
}
inline Status FailedPreconditionError(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status PermissionDeniedError(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status UnauthenticatedError(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceededError(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status AbortedError(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status GoneError(std::string m) { return {StatusCode::kGone, std::move(m)}; }

// Holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : v_(status) {
    assert(!status.ok());
  }  // NOLINT: implicit by design
  StatusOr(Status&& status) : v_(std::move(status)) {
    assert(!std::get<Status>(v_).ok());
  }                                              // NOLINT
  StatusOr(const T& value) : v_(value) {}        // NOLINT
  StatusOr(T&& value) : v_(std::move(value)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Discards the value and any error on purpose (see Status::IgnoreError).
  void IgnoreError(const char* why) const { (void)why; }

 private:
  std::variant<Status, T> v_;
};

}  // namespace parallelrun::rt

// Early-return helpers. PR_ASSIGN_OR_RETURN(auto x, Expr()) declares x.
#define PR_RETURN_IF_ERROR(expr)               \
  do {                                         \
    ::parallelrun::rt::Status _pr_st = (expr); \
    if (!_pr_st.ok()) return _pr_st;           \
  } while (0)

#define PR_CONCAT_INNER(a, b) a##b
#define PR_CONCAT(a, b) PR_CONCAT_INNER(a, b)
#define PR_ASSIGN_OR_RETURN(lhs, expr) \
  PR_ASSIGN_OR_RETURN_IMPL(PR_CONCAT(_pr_sor_, __LINE__), lhs, expr)
#define PR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
