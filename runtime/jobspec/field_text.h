// The text of the job-spec model's error messages: field paths (`spec.inputs[1].pattern`), values
// quoted as JSON, lists, and "did you mean" suggestions for misspelt keys and names. Internal to
// runtime/jobspec.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace parallelrun::rt::jobspec {

// JSON text of a value for messages, cut to 80 bytes on a UTF-8 boundary ("..." marks the cut).
std::string ValueText(const nlohmann::json& v);

// `s` as a JSON string literal (invalid UTF-8 replaced).
std::string Quote(std::string_view s);

// spec + nodeCount → spec.nodeCount; spec.nodeSelector + kubernetes.io/os →
// spec.nodeSelector["kubernetes.io/os"]; "" + spec → spec.
std::string Child(const std::string& path, std::string_view key);

// spec.inputs + 1 → spec.inputs[1].
std::string Index(const std::string& path, size_t i);

template <typename Range>
std::string JoinList(const Range& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// `s` lowercased without '_' and '-': names that differ only in case and separators match.
std::string Lowered(std::string_view s);

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
size_t EditDistance(std::string_view a, std::string_view b);

// The option `got` was most likely meant to be, or "" when none is close.
template <typename Range>
std::string Suggest(std::string_view got, const Range& options) {
  if (got.size() > 64) return "";  // no typo is that long; keeps the distance table small
  const std::string lowered = Lowered(got);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& option_like : options) {
    const std::string_view option(option_like);
    if (Lowered(option) == lowered) return std::string(option);
    const size_t limit = std::max<size_t>(1, std::min<size_t>(2, option.size() / 3));
    const size_t distance = EditDistance(got, option);
    if (distance <= limit && distance < best_distance) {
      best = std::string(option);
      best_distance = distance;
    }
  }
  return best;
}

// " (did you mean X?)", or "" when there is no suggestion.
std::string DidYouMean(const std::string& suggestion);

}  // namespace parallelrun::rt::jobspec
