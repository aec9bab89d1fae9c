// The rules a job spec's string fields follow (names, paths, file names, mini-batch sizes) and the
// "expected ..." text that names each rule in an error. Internal to runtime/jobspec.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::jobspec {

// RFC 1123 label: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, at most 63 characters (volume, input and side
// input names).
bool IsDnsLabel(std::string_view s);
inline constexpr const char* kDnsLabelExpected =
    "a DNS label (1 to 63 lowercase letters, digits or '-', starting and ending with a letter or "
    "digit)";

// Azure ML's rule for model names and versions: a letter or digit, then letters, digits, '_',
// '-' or '.'; at most 255 characters.
bool IsAssetName(std::string_view s);
inline constexpr const char* kAssetNameExpected =
    "1 to 255 letters, digits, '_', '-' or '.', starting with a letter or digit";

// The seed's step-name rule: 3-32 characters, ^[a-z]([-a-z0-9]*[a-z0-9])?$.
bool IsJobName(std::string_view s);
inline constexpr const char* kJobNameExpected =
    "a name of 3 to 32 characters matching ^[a-z]([-a-z0-9]*[a-z0-9])?$";

// A relative path that stays inside its base: not empty, no leading '/', no '..' component.
bool IsContainedRelativePath(std::string_view s);

bool EndsWith(std::string_view s, std::string_view suffix);

// A contained relative path to a .py or .so file with a name before the extension.
bool IsEntryScriptPath(std::string_view s);

// A file name without '/', not "." or "..".
bool IsPlainFileName(std::string_view s);

// miniBatchSize: "10" (file inputs: a count, no unit) or "1MB" / "512kb" / "2GB" (tabular: bytes,
// powers of 1024). nullopt when `text` is not one, is not positive or overflows.
std::optional<int64_t> MiniBatchSizeValue(std::string_view text, InputType type);
// What MiniBatchSizeValue accepts for inputs of `type`, for error messages.
const char* MiniBatchExpected(InputType type);

}  // namespace parallelrun::rt::jobspec
