#include "runtime/jobspec/yaml_to_json.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
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
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

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
  if (base != 10) throw ConvertError{mark, "integer " + std::string(s) + " does not fit in 64 bits"};
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

class Converter {
 public:
  Converter(size_t budget) : budget_(budget) {}

  json Convert(const YAML::Node& node, int depth) {
    if (depth > kMaxYamlDepth) {
      throw ConvertError{node.Mark(),
                         "nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels"};
    }
    Spend(1, node.Mark());
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Scalar:
        return ConvertScalar(node);
      case YAML::NodeType::Sequence:
      case YAML::NodeType::Map:
        break;
    }
    const std::string& tag = node.Tag();
    const bool is_map = node.IsMap();
    if (tag != "?" && tag != "!" && tag != (is_map ? kTagMap : kTagSeq)) {
      throw ConvertError{node.Mark(), "unsupported tag " + tag + " on a " +
                                          (is_map ? "mapping" : "sequence")};
    }
    // An alias inside its own anchor makes yaml-cpp's node graph cyclic.
    for (const YAML::Node& ancestor : path_) {
      if (ancestor.is(node)) {
        throw ConvertError{node.Mark(), "an anchor is used inside itself (alias cycle)"};
      }
    }
    path_.push_back(node);
    json out = is_map ? ConvertMap(node, depth) : ConvertSequence(node, depth);
    path_.pop_back();
    return out;
  }

 private:
  void Spend(size_t units, const YAML::Mark& mark) {
    if (units > budget_) {
      throw ConvertError{mark, "the document is too large once its aliases are expanded"};
    }
    budget_ -= units;
  }

  std::string CheckedString(const YAML::Node& node) {
    const std::string& s = node.Scalar();
    Spend(s.size(), node.Mark());
    if (!IsValidUtf8(s)) throw ConvertError{node.Mark(), "string is not valid UTF-8"};
    return s;
  }

  json ConvertScalar(const YAML::Node& node) {
    const std::string& tag = node.Tag();
    const YAML::Mark mark = node.Mark();
    std::string s = CheckedString(node);
    if (tag == "!" || tag == kTagStr) return json(std::move(s));
    if (tag == "?") {
      if (IsNullWord(s)) return nullptr;
      if (auto b = BoolWord(s)) return json(*b);
      if (auto i = ParseIntLiteral(s, mark)) return *std::move(i);
      if (LooksLikeFloat(s)) return ParseFloatLiteral(s, mark);
      if (IsInfOrNanWord(s)) {
        throw ConvertError{mark, "number " + s + " cannot be represented in JSON"};
      }
      return json(std::move(s));
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

  json ConvertSequence(const YAML::Node& node, int depth) {
    json out = json::array();
    for (const YAML::Node& item : node) out.push_back(Convert(item, depth + 1));
    return out;
  }

  json ConvertMap(const YAML::Node& node, int depth) {
    json out = json::object();
    std::vector<std::pair<YAML::Mark, json>> merges;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node& key = it->first;
      if (!key.IsScalar()) {
        throw ConvertError{key.Mark(), "mapping keys must be strings"};
      }
      if (key.Tag() == "?" && key.Scalar() == "<<") {
        merges.emplace_back(it->second.Mark(), Convert(it->second, depth + 1));
        continue;
      }
      Spend(1, key.Mark());
      std::string name = CheckedString(key);
      if (out.contains(name)) {
        throw ConvertError{key.Mark(), "duplicate key \"" + name + "\""};
      }
      out[std::move(name)] = Convert(it->second, depth + 1);
    }
    // `<<: *base` or `<<: [*a, *b]`: keys of the mapping win, then earlier merge sources.
    for (auto& [mark, source] : merges) {
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
          if (!out.contains(k)) out[k] = std::move(v);
        }
      }
    }
    return out;
  }

  size_t budget_;
  std::vector<YAML::Node> path_;
};

std::string Where(const std::string& source_name, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return source_name;
  return source_name + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

}  // namespace

StatusOr<nlohmann::json> YamlToJson(std::string_view text, const std::string& source_name) {
  // Aliases may multiply a small text; a manifest has no reason to expand 64-fold.
  const size_t budget = std::min(kMaxYamlExpansion, std::max(size_t{1} << 20, 64 * text.size()));
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(text));
    const YAML::Node* doc = nullptr;
    for (const YAML::Node& d : docs) {
      if (d.IsNull()) continue;
      if (doc != nullptr) {
        return InvalidArgumentError(Where(source_name, d.Mark()) +
                                    ": expected one YAML document, found a second one");
      }
      doc = &d;
    }
    if (doc == nullptr) return json(nullptr);
    Converter converter(budget);
    return converter.Convert(*doc, 0);
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
