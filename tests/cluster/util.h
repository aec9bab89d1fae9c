#pragma once
// Small helpers of the test cluster: files, time stamps, random tokens, URL decoding and JSON
// paths. Kept here because tests/cluster depends on nothing else in the repository.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parallelrun::rt::cluster {
// Inline namespace: the kubelet library defines helpers with the same names.
inline namespace apiserver_util {

using Json = nlohmann::json;

// Reads a whole file; nullopt if it cannot be opened.
std::optional<std::string> ReadFileText(const std::string& path);
// Writes through a temporary file and a rename, so readers see the old or the new content.
bool WriteFileAtomic(const std::string& path, const std::string& content, int mode = 0644);
bool MakeDirs(const std::string& path);

// RFC 3339 UTC with seconds, e.g. 2026-01-02T03:04:05Z.
std::string FormatRfc3339(std::chrono::system_clock::time_point t);
std::string NowRfc3339();
// Parses the RFC 3339 forms the API uses; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& s);
// kubectl's short age: 5s, 3m2s, 10m, 2h5m, 3d4h, 400d.
std::string HumanDuration(std::chrono::seconds d);

// Hex of n random bytes from OpenSSL's generator.
std::string RandomHex(size_t n);
// A uid in the 8-4-4-4-12 form.
std::string NewUid();
// 5 characters of [a-z0-9] for generateName (no vowels, as the real server).
std::string RandomSuffix(size_t n = 5);

std::string UrlDecode(const std::string& s);
std::string UrlEncode(const std::string& s);
// Splits a query string into decoded name -> value (the last value wins).
std::map<std::string, std::string> ParseQuery(const std::string& query);
std::vector<std::string> Split(const std::string& s, char sep);
std::string Trim(const std::string& s);
std::string ToLower(std::string s);

std::string Base64Encode(const std::string& data);
std::optional<std::string> Base64Decode(const std::string& data);

// Evaluates a simple JSONPath (".a.b[0].c", ".metadata.labels.app", ".a['x.y']") against a
// JSON value; nullptr when a step is missing.
const Json* JsonPathGet(const Json& root, const std::string& path);

}  // namespace apiserver_util
}  // namespace parallelrun::rt::cluster
