#include "tests/cluster/kubelet/cluster_view.h"

#include <time.h>

#include <cctype>
#include <cmath>
#include <sstream>

namespace parallelrun::rt::cluster {

std::string FormatTimestamp(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<std::string> Base64Decode(const std::string& in) {
  std::string out;
  unsigned int buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+' || c == '-') {
      v = 62;
    } else if (c == '/' || c == '_') {
      v = 63;
    } else if (c == '=' || std::isspace(static_cast<unsigned char>(c))) {
      continue;
    } else {
      return std::nullopt;
    }
    buffer = (buffer << 6) | static_cast<unsigned int>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

std::optional<long double> ParseQuantity(const std::string& q) {
  size_t i = 0;
  while (i < q.size() && (std::isdigit(static_cast<unsigned char>(q[i])) || q[i] == '.' ||
                          q[i] == '+' || q[i] == '-')) {
    ++i;
  }
  if (i == 0) return std::nullopt;
  long double number;
  try {
    number = std::stold(q.substr(0, i));
  } catch (...) {
    return std::nullopt;
  }
  std::string suffix = q.substr(i);
  static const std::pair<const char*, long double> kSuffixes[] = {{"", 1},
                                                                  {"m", 1e-3},
                                                                  {"k", 1e3},
                                                                  {"M", 1e6},
                                                                  {"G", 1e9},
                                                                  {"T", 1e12},
                                                                  {"P", 1e15},
                                                                  {"E", 1e18},
                                                                  {"Ki", 1024.0L},
                                                                  {"Mi", 1048576.0L},
                                                                  {"Gi", 1073741824.0L},
                                                                  {"Ti", 1099511627776.0L},
                                                                  {"Pi", 1125899906842624.0L},
                                                                  {"Ei", 1152921504606846976.0L}};
  for (const auto& [name, factor] : kSuffixes) {
    if (suffix == name) return number * factor;
  }
  return std::nullopt;
}

bool SelectorMatches(const Json& selector, const Json& labels) {
  if (!selector.is_object() || selector.empty()) return false;
  for (const auto& [key, value] : selector.items()) {
    if (!labels.is_object() || !labels.contains(key) || labels[key] != value) return false;
  }
  return true;
}

const Json* JsonAt(const Json& obj, const std::string& dotted_path) {
  const Json* cur = &obj;
  std::stringstream in(dotted_path);
  std::string part;
  while (std::getline(in, part, '.')) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(part);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string StringAt(const Json& obj, const std::string& dotted_path, const std::string& fallback) {
  const Json* v = JsonAt(obj, dotted_path);
  return v != nullptr && v->is_string() ? v->get<std::string>() : fallback;
}

}  // namespace parallelrun::rt::cluster
