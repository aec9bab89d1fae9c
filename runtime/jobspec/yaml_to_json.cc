#include "runtime/jobspec/yaml_to_json.h"

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/emitterstyle.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace parallelrun::rt {
namespace {

using nlohmann::json;

constexpr const char* kTagStr = "tag:yaml.org,2002:str";
constexpr const char* kTagInt = "tag:yaml.org,2002:int";
constexpr const char* kTagFloat = "tag:yaml.org,2002:float";
constexpr const char* kTagBool = "tag:yaml.org,2002:bool";
constexpr const char* kTagNull = "tag:yaml.org,2002:null";
constexpr const char* kTagMap = "tag:yaml.org,2002:map";
constexpr const char* kTagSeq = "tag:yaml.org,2002:seq";

// Thrown inside the converter only; YamlToJson turns it into a Status.
struct ConvertError {
  YAML::Mark mark;
  std::string message;
};

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += static_cast<size_t>(len);
  }
  return true;
}

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsOctDigit(char c) { return c >= '0' && c <= '7'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> BoolWord(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// YAML 1.2 core: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool LooksLikeFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && IsDigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

bool IsInfOrNanWord(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return s == ".inf" || s == ".Inf" || s == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN";
}

// Integers in decimal ([-+]?[0-9]+), 0o octal or 0x hex. nullopt: not an integer literal.
// A decimal too large for 64 bits becomes a float, as in JSON.
std::optional<json> ParseIntLiteral(std::string_view s, const YAML::Mark& mark) {
  int base = 10;
  std::string_view digits = s;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    digits = s.substr(2);
    if (!AllOf(digits, base == 16 ? IsHexDigit : IsOctDigit)) return std::nullopt;
  } else {
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
      negative = digits[0] == '-';
      digits.remove_prefix(1);
    }
    if (!AllOf(digits, IsDigit)) return std::nullopt;
  }
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc() && ptr == digits.data() + digits.size()) {
    if (!negative) {
      if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return json(static_cast<int64_t>(magnitude));
      }
      return json(magnitude);
    }
    constexpr uint64_t kMinMagnitude = uint64_t{1} << 63;
    if (magnitude < kMinMagnitude) return json(-static_cast<int64_t>(magnitude));
    if (magnitude == kMinMagnitude) return json(std::numeric_limits<int64_t>::min());
  }
  if (base != 10)
    throw ConvertError{mark, "integer " + std::string(s) + " does not fit in 64 bits"};
  return std::nullopt;  // a huge decimal: parsed as a float by the caller
}

json ParseFloatLiteral(std::string_view s, const YAML::Mark& mark) {
  std::string_view t = s;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  double d = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
  if (ec != std::errc() || ptr != t.data() + t.size() || !std::isfinite(d)) {
    throw ConvertError{mark, "number " + std::string(s) + " cannot be represented in JSON"};
  }
  return json(d);
}

json TypedScalar(const std::string& tag, const std::string& s, const YAML::Mark& mark) {
  if (tag == "!" || tag == kTagStr) return json(s);
  if (tag == "?") {
    if (IsNullWord(s)) return nullptr;
    if (auto b = BoolWord(s)) return json(*b);
    if (auto i = ParseIntLiteral(s, mark)) return *std::move(i);
    if (LooksLikeFloat(s)) return ParseFloatLiteral(s, mark);
    if (IsInfOrNanWord(s)) {
      throw ConvertError{mark, "number " + s + " cannot be represented in JSON"};
    }
    return json(s);
  }
  if (tag == kTagNull) {
    if (IsNullWord(s)) return nullptr;
  } else if (tag == kTagBool) {
    if (auto b = BoolWord(s)) return json(*b);
  } else if (tag == kTagInt) {
    if (auto i = ParseIntLiteral(s, mark)) return *std::move(i);
    if (LooksLikeFloat(s) && s.find_first_of(".eE") == std::string::npos) {
      throw ConvertError{mark, "integer " + s + " does not fit in 64 bits"};
    }
  } else if (tag == kTagFloat) {
    if (auto i = ParseIntLiteral(s, mark)) return json(i->get<double>());
    if (LooksLikeFloat(s)) return ParseFloatLiteral(s, mark);
    if (IsInfOrNanWord(s)) {
      throw ConvertError{mark, "number " + s + " cannot be represented in JSON"};
    }
  } else {
    throw ConvertError{mark, "unsupported tag " + tag};
  }
  throw ConvertError{mark, "\"" + s + "\" is not a valid " + tag.substr(tag.rfind(':') + 1)};
}

// Builds JSON straight from yaml-cpp's parser events. (yaml-cpp's Node graph is not used: it
// links an alias inside its own anchor into a cycle, and its map iterators hand out proxies.)
class JsonBuilder : public YAML::EventHandler {
 public:
  explicit JsonBuilder(size_t budget) : budget_(budget) {}

  // The root of the last document handled; null when it was empty.
  json TakeRoot() { return std::exchange(root_, nullptr); }
  const YAML::Mark& root_mark() const { return root_mark_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    stack_.clear();
    root_ = nullptr;
    root_mark_ = mark;
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (ExpectingKey()) throw ConvertError{mark, "mapping keys must be strings"};
    Emit(nullptr, mark, anchor, 1);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      // yaml-cpp rejects undefined aliases, so an unknown one is still being built.
      throw ConvertError{mark, "an anchor is used inside itself (alias cycle)"};
    }
    const auto& [value, units] = it->second;
    if (ExpectingKey()) {
      if (!value.is_string()) throw ConvertError{mark, "mapping keys must be strings"};
      Spend(units, mark);
      stack_.back().units += units;
      Key(value.get<std::string>(), mark, /*plain=*/false);
      return;
    }
    Emit(value, mark, YAML::NullAnchor, units);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Spend(1 + value.size(), mark);
    if (!IsValidUtf8(value)) throw ConvertError{mark, "string is not valid UTF-8"};
    if (ExpectingKey()) {
      if (anchor != YAML::NullAnchor) anchors_[anchor] = {json(value), 1 + value.size()};
      stack_.back().units += 1 + value.size();
      Key(value, mark, tag == "?");
      return;
    }
    Emit(TypedScalar(tag, value, mark), mark, anchor, 1 + value.size(), /*spent=*/true);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, /*is_map=*/false);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, /*is_map=*/true);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    json value;
    YAML::Mark mark;
    YAML::anchor_t anchor = YAML::NullAnchor;
    size_t units = 1;  // budget units of everything inside, for aliases of this anchor
    // Mappings alternate key and value.
    bool expecting_key = true;
    std::string key;
    bool key_is_merge = false;
    std::vector<std::pair<YAML::Mark, json>> merges;
  };

  bool ExpectingKey() const {
    return !stack_.empty() && stack_.back().value.is_object() && stack_.back().expecting_key;
  }

  void Spend(size_t units, const YAML::Mark& mark) {
    if (units > budget_) {
      throw ConvertError{mark, "the document is too large once its aliases are expanded"};
    }
    budget_ -= units;
  }

  void Key(const std::string& key, const YAML::Mark& mark, bool plain) {
    Frame& f = stack_.back();
    f.expecting_key = false;
    f.key_is_merge = plain && key == "<<";
    if (f.key_is_merge) return;
    if (f.value.contains(key)) throw ConvertError{mark, "duplicate key \"" + key + "\""};
    f.key = key;
  }

  void Open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, bool is_map) {
    if (ExpectingKey()) throw ConvertError{mark, "mapping keys must be strings"};
    if (tag != "?" && tag != "!" && tag != (is_map ? kTagMap : kTagSeq)) {
      throw ConvertError{mark,
                         "unsupported tag " + tag + " on a " + (is_map ? "mapping" : "sequence")};
    }
    if (stack_.size() >= static_cast<size_t>(kMaxYamlDepth)) {
      throw ConvertError{mark, "nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels"};
    }
    Spend(1, mark);
    Frame f;
    f.value = is_map ? json::object() : json::array();
    f.mark = mark;
    f.anchor = anchor;
    stack_.push_back(std::move(f));
  }

  void Close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    // `<<: *base` or `<<: [*a, *b]`: keys of the mapping win, then earlier merge sources.
    for (auto& [mark, source] : f.merges) {
      std::vector<json*> sources;
      if (source.is_object()) {
        sources.push_back(&source);
      } else if (source.is_array()) {
        for (json& s : source) {
          if (!s.is_object()) throw ConvertError{mark, "a << merge list must hold mappings"};
          sources.push_back(&s);
        }
      } else {
        throw ConvertError{mark, "a << merge value must be a mapping or a list of mappings"};
      }
      for (json* s : sources) {
        for (auto& [k, v] : s->items()) {
          if (!f.value.contains(k)) f.value[k] = std::move(v);
        }
      }
    }
    Emit(std::move(f.value), f.mark, f.anchor, f.units, /*spent=*/true);
  }

  // Hands a finished value to its parent (or makes it the document root). `spent`: its budget
  // units were already taken (scalars and collections as they were read; aliases are copies).
  void Emit(json value, const YAML::Mark& mark, YAML::anchor_t anchor, size_t units,
            bool spent = false) {
    if (!spent) Spend(units, mark);
    if (anchor != YAML::NullAnchor) anchors_[anchor] = {value, units};
    if (stack_.empty()) {
      root_ = std::move(value);
      return;
    }
    Frame& parent = stack_.back();
    parent.units += units;
    if (parent.value.is_array()) {
      parent.value.push_back(std::move(value));
    } else if (parent.key_is_merge) {
      parent.merges.emplace_back(mark, std::move(value));
      parent.expecting_key = true;
    } else {
      parent.value[parent.key] = std::move(value);
      parent.expecting_key = true;
    }
  }

  size_t budget_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, std::pair<json, size_t>> anchors_;
  json root_;
  YAML::Mark root_mark_;
};

std::string Where(const std::string& source_name, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return source_name;
  return source_name + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// yaml-cpp 0.7 can keep reporting empty documents without consuming input after some syntax
// errors (fixed upstream in jbeder/yaml-cpp#1319); no real stream has this many in a row.
constexpr int kMaxEmptyDocuments = 1000;

}  // namespace

StatusOr<nlohmann::json> YamlToJson(std::string_view text, const std::string& source_name) {
  // Aliases may multiply a small text; a manifest has no reason to expand 64-fold.
  const size_t budget = std::min(kMaxYamlExpansion, std::max(size_t{1} << 20, 64 * text.size()));
  YAML::Mark mark = YAML::Mark::null_mark();
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    JsonBuilder builder(budget);
    std::optional<json> result;
    int empty_in_a_row = 0;
    while (parser.HandleNextDocument(builder)) {
      mark = builder.root_mark();
      json doc = builder.TakeRoot();
      if (doc.is_null()) {
        if (++empty_in_a_row > kMaxEmptyDocuments) {
          const size_t pos = mark.pos >= 0 ? static_cast<size_t>(mark.pos) : text.size();
          return InvalidArgumentError(
              Where(source_name, mark) + ": syntax error" +
              (pos < text.size() ? " at \"" + std::string(1, text[pos]) + "\"" : ""));
        }
        continue;
      }
      empty_in_a_row = 0;
      if (result) {
        return InvalidArgumentError(Where(source_name, mark) +
                                    ": expected one YAML document, found a second one");
      }
      result = std::move(doc);
    }
    return result ? *std::move(result) : json(nullptr);
  } catch (const ConvertError& e) {
    return InvalidArgumentError(Where(source_name, e.mark) + ": " + e.message);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(Where(source_name, e.mark) + ": " + e.msg);
  } catch (const std::bad_alloc&) {
    return InvalidArgumentError(source_name + ": out of memory while reading the document");
  } catch (const std::exception& e) {
    return InvalidArgumentError(source_name + ": cannot read the document: " + e.what());
  }
}

}  // namespace parallelrun::rt
