// Azure ML's partition format for file inputs (`inputs[].partitionFormat`, SPEC.md §2.1/§3):
// a path relative to the input's folder in which `{name}` captures one partition key value and
// `*` matches anything, e.g. "{user}/{season}/{genres}.wav".
//
// Syntax: `{name}` matches one or more characters other than '/'; `*` matches zero or more
// characters other than '/'; every other character matches itself. A name is non-empty, has no
// '{', '}', '/' or '*', and appears once. Azure ML's date captures (`{name:yyyy/MM/dd}`) are not
// supported: they are an error saying so. A path matches when the whole of it matches (no
// partial matches).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

class PartitionFormat {
 public:
  // InvalidArgument with a message that says what is wrong and where (without a field path:
  // callers prepend it).
  static StatusOr<PartitionFormat> Parse(std::string_view text);

  // The names captured, in the order they appear.
  const std::vector<std::string>& names() const { return names_; }
  // True when `path` matches; `values` (one per names(), same order) receives the captures.
  bool Match(std::string_view path, std::vector<std::string>* values) const;

 private:
  struct Piece {
    enum Kind { kLiteral, kCapture, kStar } kind = kLiteral;
    std::string text;  // kLiteral: the text; kCapture: the name
    int capture = -1;  // kCapture: index into names_
  };
  bool MatchFrom(size_t piece, std::string_view rest, std::vector<std::string>* values) const;

  std::vector<Piece> pieces_;
  std::vector<std::string> names_;
};

}  // namespace parallelrun::rt
