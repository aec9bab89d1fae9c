#include "runtime/jobspec/partition_format.h"

#include <algorithm>

namespace parallelrun::rt {

StatusOr<PartitionFormat> PartitionFormat::Parse(std::string_view text) {
  PartitionFormat f;
  if (text.empty()) return InvalidArgumentError("an empty partition format");
  if (text.front() == '/') {
    return InvalidArgumentError("\"" + std::string(text) +
                                "\" starts with '/': the format is relative to the input's "
                                "source folder");
  }
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '}') {
      return InvalidArgumentError("a '}' without its '{' at character " + std::to_string(i + 1));
    }
    if (c == '*') {
      f.pieces_.push_back(Piece{Piece::kStar, "", -1});
      ++i;
      continue;
    }
    if (c != '{') {
      if (f.pieces_.empty() || f.pieces_.back().kind != Piece::kLiteral) {
        f.pieces_.push_back(Piece{Piece::kLiteral, "", -1});
      }
      f.pieces_.back().text += c;
      ++i;
      continue;
    }
    const size_t close = text.find('}', i + 1);
    if (close == std::string_view::npos) {
      return InvalidArgumentError("a '{' without its '}' at character " + std::to_string(i + 1));
    }
    const std::string name(text.substr(i + 1, close - i - 1));
    if (name.find(':') != std::string::npos) {
      return InvalidArgumentError("{" + name +
                                  "}: date captures ({name:format}) are not supported; capture "
                                  "each part as its own key, e.g. {year}/{month}/{day}");
    }
    if (name.empty() || name.find_first_of("{/*") != std::string::npos) {
      return InvalidArgumentError("{" + name +
                                  "}: expected a key name (non-empty, without '{', '/' or '*')");
    }
    if (std::find(f.names_.begin(), f.names_.end(), name) != f.names_.end()) {
      return InvalidArgumentError("{" + name + "} appears twice");
    }
    if (!f.pieces_.empty() && f.pieces_.back().kind == Piece::kCapture) {
      return InvalidArgumentError("{" + f.pieces_.back().text + "}{" + name +
                                  "}: two captures need text between them to be told apart");
    }
    f.pieces_.push_back(Piece{Piece::kCapture, name, static_cast<int>(f.names_.size())});
    f.names_.push_back(name);
    i = close + 1;
  }
  return f;
}

bool PartitionFormat::Match(std::string_view path, std::vector<std::string>* values) const {
  values->assign(names_.size(), std::string());
  return MatchFrom(0, path, values);
}

bool PartitionFormat::MatchFrom(size_t piece, std::string_view rest,
                                std::vector<std::string>* values) const {
  if (piece == pieces_.size()) return rest.empty();
  const Piece& p = pieces_[piece];
  if (p.kind == Piece::kLiteral) {
    if (!rest.starts_with(p.text)) return false;
    return MatchFrom(piece + 1, rest.substr(p.text.size()), values);
  }
  // A capture or a star: within one path component, shortest first (backtracking).
  const size_t limit = std::min(rest.find('/'), rest.size());
  for (size_t n = p.kind == Piece::kCapture ? 1 : 0; n <= limit; ++n) {
    if (MatchFrom(piece + 1, rest.substr(n), values)) {
      if (p.kind == Piece::kCapture) (*values)[static_cast<size_t>(p.capture)] = rest.substr(0, n);
      return true;
    }
  }
  return false;
}

}  // namespace parallelrun::rt
