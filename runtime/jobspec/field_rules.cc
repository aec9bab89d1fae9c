// The rules a job spec's string fields follow (field_rules.h).

#include "runtime/jobspec/field_rules.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <system_error>

namespace parallelrun::rt::jobspec {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

bool IsAssetName(std::string_view s) {
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (s.empty() || s.size() > 255 || !alnum(s.front())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '-' || c == '.'; });
}

bool IsJobName(std::string_view s) {
  return s.size() >= 3 && s.size() <= 32 && s.front() >= 'a' && s.front() <= 'z' && IsDnsLabel(s);
}

bool IsContainedRelativePath(std::string_view s) {
  if (s.empty() || s.front() == '/' || s.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('/', start);
    if (end == std::string_view::npos) end = s.size();
    if (s.substr(start, end - start) == "..") return false;
    start = end + 1;
  }
  return true;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsEntryScriptPath(std::string_view s) {
  if (!IsContainedRelativePath(s)) return false;
  if (!EndsWith(s, ".py") && !EndsWith(s, ".so")) return false;
  const size_t slash = s.rfind('/');
  const std::string_view base = slash == std::string_view::npos ? s : s.substr(slash + 1);
  return base.size() > 3;  // a name before the extension
}

bool IsPlainFileName(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------
// Mini-batch size.

constexpr const char* kFileMiniBatchExpected =
    "a positive count of files such as 10 (file inputs take no unit)";
constexpr const char* kTabularMiniBatchExpected =
    "a positive size in bytes such as 1048576, \"512KB\" or \"1MB\" (^\\d+([kKmMgG][bB])?$, "
    "powers of 1024)";

const char* MiniBatchExpected(InputType type) {
  return type == InputType::kFile ? kFileMiniBatchExpected : kTabularMiniBatchExpected;
}

std::optional<int64_t> MiniBatchSizeValue(std::string_view text, InputType type) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  int64_t number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (ec != std::errc() || ptr != text.data() + digits) return std::nullopt;  // overflow
  const std::string_view unit = text.substr(digits);
  int shift = 0;
  if (!unit.empty()) {
    if (type == InputType::kFile || unit.size() != 2 || (unit[1] != 'b' && unit[1] != 'B')) {
      return std::nullopt;
    }
    switch (unit[0]) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      default:
        return std::nullopt;
    }
  }
  if (number <= 0 || number > (kInt64Max >> shift)) return std::nullopt;
  return number << shift;
}

}  // namespace parallelrun::rt::jobspec
