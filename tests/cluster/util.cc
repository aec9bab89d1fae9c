#include "tests/cluster/util.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace parallelrun::rt::cluster {
// Inline namespace: the kubelet library defines helpers with the same names.
inline namespace apiserver_util {

std::optional<std::string> ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool WriteFileAtomic(const std::string& path, const std::string& content, int mode) {
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + RandomHex(4);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return false;
  bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  ok = (std::fclose(f) == 0) && ok;
  if (ok) ok = chmod(tmp.c_str(), mode) == 0;
  if (ok) ok = std::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) std::remove(tmp.c_str());
  return ok;
}

bool MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  return !ec;
}

std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NowRfc3339() { return FormatRfc3339(std::chrono::system_clock::now()); }

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& s) {
  std::tm tm{};
  int frac_end = 0;
  if (s.size() < 20) return std::nullopt;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac_end) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::time_t tt = timegm(&tm);
  size_t i = static_cast<size_t>(frac_end);
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  }
  if (i >= s.size()) return std::nullopt;
  if (s[i] == 'Z' || s[i] == 'z') {
    // UTC
  } else if ((s[i] == '+' || s[i] == '-') && i + 6 <= s.size()) {
    int hh = std::stoi(s.substr(i + 1, 2));
    int mm = std::stoi(s.substr(i + 4, 2));
    int off = (hh * 3600 + mm * 60) * (s[i] == '+' ? 1 : -1);
    tt -= off;
  } else {
    return std::nullopt;
  }
  return std::chrono::system_clock::from_time_t(tt);
}

std::string HumanDuration(std::chrono::seconds d) {
  // Mirrors apimachinery's duration.HumanDuration closely enough for column output.
  int64_t s = d.count();
  if (s < 0) return "<invalid>";
  if (s < 120) return std::to_string(s) + "s";
  int64_t m = s / 60;
  if (m < 10) {
    int64_t rs = s % 60;
    return rs == 0 ? std::to_string(m) + "m" : std::to_string(m) + "m" + std::to_string(rs) + "s";
  }
  if (m < 180) return std::to_string(m) + "m";
  int64_t h = s / 3600;
  if (h < 8) {
    int64_t rm = m % 60;
    return rm == 0 ? std::to_string(h) + "h" : std::to_string(h) + "h" + std::to_string(rm) + "m";
  }
  if (h < 48) return std::to_string(h) + "h";
  if (h < 24 * 8) {
    int64_t rh = h % 24;
    return rh == 0 ? std::to_string(h / 24) + "d"
                   : std::to_string(h / 24) + "d" + std::to_string(rh) + "h";
  }
  if (h < 24 * 365 * 2) return std::to_string(h / 24) + "d";
  if (h < 24 * 365 * 8) {
    int64_t dy = (h / 24) % 365;
    return dy == 0 ? std::to_string(h / 24 / 365) + "y"
                   : std::to_string(h / 24 / 365) + "y" + std::to_string(dy) + "d";
  }
  return std::to_string(h / 24 / 365) + "y";
}

std::string RandomHex(size_t n) {
  std::vector<unsigned char> bytes(n);
  RAND_bytes(bytes.data(), static_cast<int>(n));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string NewUid() {
  std::string h = RandomHex(16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

std::string RandomSuffix(size_t n) {
  static const char* kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::vector<unsigned char> bytes(n);
  RAND_bytes(bytes.data(), static_cast<int>(n));
  std::string out;
  for (unsigned char b : bytes) out.push_back(kAlphabet[b % 27]);
  return out;
}

std::string UrlDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  static const char* kHex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  for (const std::string& part : Split(query, '&')) {
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == std::string::npos) {
      out[UrlDecode(part)] = "";
    } else {
      out[UrlDecode(part.substr(0, eq))] = UrlDecode(part.substr(eq + 1));
    }
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Base64Encode(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(const std::string& data) {
  if (data.size() % 4 != 0) return std::nullopt;
  std::string out(data.size() / 4 * 3 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  if (!data.empty() && data.back() == '=') --len;
  if (data.size() > 1 && data[data.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

const Json* JsonPathGet(const Json& root, const std::string& path) {
  const Json* cur = &root;
  size_t i = 0;
  std::string p = path;
  if (!p.empty() && p.front() == '{' && p.back() == '}') p = p.substr(1, p.size() - 2);
  if (!p.empty() && p[0] == '$') i = 1;
  while (i < p.size()) {
    if (p[i] == '.') {
      ++i;
      size_t j = i;
      while (j < p.size() && p[j] != '.' && p[j] != '[') ++j;
      std::string key = p.substr(i, j - i);
      i = j;
      if (key.empty()) continue;
      if (!cur->is_object()) return nullptr;
      auto it = cur->find(key);
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (p[i] == '[') {
      size_t j = p.find(']', i);
      if (j == std::string::npos) return nullptr;
      std::string inner = p.substr(i + 1, j - i - 1);
      i = j + 1;
      if (!inner.empty() && (inner[0] == '\'' || inner[0] == '"')) {
        std::string key = inner.substr(1, inner.size() - 2);
        if (!cur->is_object()) return nullptr;
        auto it = cur->find(key);
        if (it == cur->end()) return nullptr;
        cur = &*it;
      } else {
        if (!cur->is_array()) return nullptr;
        long idx = std::strtol(inner.c_str(), nullptr, 10);
        if (idx < 0) idx += static_cast<long>(cur->size());
        if (idx < 0 || static_cast<size_t>(idx) >= cur->size()) return nullptr;
        cur = &(*cur)[static_cast<size_t>(idx)];
      }
    } else {
      return nullptr;
    }
  }
  return cur;
}

}  // namespace apiserver_util
}  // namespace parallelrun::rt::cluster
