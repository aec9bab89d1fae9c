// Parse → default → validate of a ParallelRunJob manifest (SPEC.md §2.1, §2.2), and ToJson.
//
// The Validator walks the JSON form of the manifest once, filling the JobSpec and collecting every
// FieldError on the way; nothing stops at the first error. A null value counts as absent, as the
// Kubernetes API server prunes nulls from custom resources before defaulting: the same manifest
// means the same thing locally and in a cluster.

#include "runtime/jobspec/job_spec.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/jobspec/partition_format.h"
#include "runtime/jobspec/yaml_to_json.h"

namespace parallelrun::rt {
namespace {

using nlohmann::json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr size_t kMaxValueText = 80;

constexpr std::string_view kTopLevelKeys[] = {"apiVersion", "kind", "metadata", "spec", "status"};

// In the order of SPEC.md §2.1, which is also the order of the "expected one of" list.
constexpr std::string_view kSpecKeys[] = {"entryScript",
                                          "sourceDirectory",
                                          "volumes",
                                          "inputs",
                                          "sideInputs",
                                          "models",
                                          "output",
                                          "arguments",
                                          "miniBatchSize",
                                          "errorThreshold",
                                          "allowedFailedCount",
                                          "allowedFailedPercent",
                                          "outputAction",
                                          "appendRowFileName",
                                          "appendRowHeader",
                                          "nodeCount",
                                          "processCountPerNode",
                                          "loggingLevel",
                                          "runInvocationTimeout",
                                          "runMaxTry",
                                          "progressUpdateTimeout",
                                          "initTimeout",
                                          "resourceMonitorInterval",
                                          "retryFrom",
                                          "partitionKeys",
                                          "image",
                                          "imagePullPolicy",
                                          "resources",
                                          "env",
                                          "nodeSelector",
                                          "tolerations",
                                          "affinity",
                                          "serviceAccountName",
                                          "priorityClassName",
                                          "podLabels",
                                          "podAnnotations",
                                          "securityContext",
                                          "suspend",
                                          "activeDeadlineSeconds",
                                          "ttlSecondsAfterFinished",
                                          "backoffLimit"};

constexpr std::string_view kDataRefKeys[] = {"volume", "path"};
constexpr std::string_view kInputKeys[] = {"name",   "type",   "source",      "pattern",
                                           "format", "header", "columnTypes", "partitionFormat"};
constexpr std::string_view kSideInputKeys[] = {"name", "source"};
constexpr std::string_view kModelKeys[] = {"name", "version", "source"};
// Set for worker processes from spec.models; spec.env may not set them too.
constexpr std::string_view kModelEnvNames[] = {"AZUREML_MODEL_DIR", "PARALLELRUN_MODELS"};

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// JSON text of a value for messages, cut to kMaxValueText bytes on a UTF-8 boundary.
std::string ValueText(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() <= kMaxValueText) return s;
  size_t cut = kMaxValueText;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  s.resize(cut);
  return s + "...";
}

std::string Quote(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool IsIdentifier(std::string_view key) {
  if (key.empty()) return false;
  const auto ok_first = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  const auto ok_rest = [&](char c) { return ok_first(c) || (c >= '0' && c <= '9') || c == '-'; };
  return ok_first(key[0]) && std::all_of(key.begin() + 1, key.end(), ok_rest);
}

// spec + nodeCount → spec.nodeCount; spec.nodeSelector + kubernetes.io/os →
// spec.nodeSelector["kubernetes.io/os"]; "" + spec → spec.
std::string Child(const std::string& path, std::string_view key) {
  if (!IsIdentifier(key)) return path + "[" + Quote(key) + "]";
  if (path.empty()) return std::string(key);
  return path + "." + std::string(key);
}

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

template <typename Range>
std::string JoinList(const Range& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::string Lowered(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '-') continue;
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
size_t EditDistance(std::string_view a, std::string_view b) {
  const size_t n = a.size();
  const size_t m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

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

std::string DidYouMean(const std::string& suggestion) {
  return suggestion.empty() ? "" : " (did you mean " + suggestion + "?)";
}

// ---------------------------------------------------------------------------------------------
// Rules on strings.

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// RFC 1123 label: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, at most 63 characters.
bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

// Azure ML's rule for model names and versions: a letter or digit, then letters, digits, '_',
// '-' or '.'; at most 255 characters.
bool IsAssetName(std::string_view s) {
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (s.empty() || s.size() > 255 || !alnum(s.front())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '-' || c == '.'; });
}

constexpr const char* kAssetNameExpected =
    "1 to 255 letters, digits, '_', '-' or '.', starting with a letter or digit";

constexpr const char* kDnsLabelExpected =
    "a DNS label (1 to 63 lowercase letters, digits or '-', starting and ending with a letter or "
    "digit)";

// The seed's step-name rule: 3-32 characters, ^[a-z]([-a-z0-9]*[a-z0-9])?$.
bool IsJobName(std::string_view s) {
  return s.size() >= 3 && s.size() <= 32 && s.front() >= 'a' && s.front() <= 'z' && IsDnsLabel(s);
}

constexpr const char* kJobNameExpected =
    "a name of 3 to 32 characters matching ^[a-z]([-a-z0-9]*[a-z0-9])?$";

// A relative path that stays inside its base: not empty, no leading '/', no '..' component.
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

// ---------------------------------------------------------------------------------------------
// The validator.

class Validator {
 public:
  explicit Validator(std::vector<FieldError>* errors) : errors_(errors) {}

  void ReadDocument(const json& doc, JobSpec* out) {
    if (!doc.is_object()) {
      Fail("", doc.is_null() ? nullptr : &doc,
           "a mapping with apiVersion, kind, metadata and spec");
      return;
    }
    UnknownKeys(doc, "", kTopLevelKeys);
    const std::string expected_api = Quote(kApiVersion);
    if (auto api = String(Get(doc, "apiVersion"), "apiVersion", expected_api, true)) {
      if (*api != kApiVersion) Fail("apiVersion", Get(doc, "apiVersion"), expected_api);
      out->api_version = *api;
    }
    const std::string expected_kind = Quote(kKind);
    if (auto kind = String(Get(doc, "kind"), "kind", expected_kind, true)) {
      if (*kind != kKind) Fail("kind", Get(doc, "kind"), expected_kind);
      out->kind = *kind;
    }
    ReadMetadata(Get(doc, "metadata"), out);
    const json* spec = Get(doc, "spec");
    if (Object(spec, "spec", true)) ReadSpec(*spec, out);
  }

 private:
  // ----- primitives -----

  void Fail(std::string path, const json* value, std::string expected, std::string problem = "") {
    errors_->push_back(FieldError{std::move(path), value == nullptr ? "" : ValueText(*value),
                                  std::move(expected), std::move(problem)});
  }

  // The field's value, or nullptr when it is absent or null.
  static const json* Get(const json& object, std::string_view key) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    return &*it;
  }

  template <typename Range>
  void UnknownKeys(const json& object, const std::string& path, const Range& known) {
    for (const auto& [key, value] : object.items()) {
      if (std::find(std::begin(known), std::end(known), key) != std::end(known)) continue;
      std::vector<std::string> names(std::begin(known), std::end(known));
      Fail(Child(path, key), &value, "one of " + JoinList(names),
           "unknown field" + DidYouMean(Suggest(key, known)));
    }
  }

  bool Required(const json* v, const std::string& path, const std::string& expected,
                bool required) {
    if (v == nullptr && required) Fail(path, nullptr, expected);
    return v != nullptr;
  }

  bool Object(const json* v, const std::string& path, bool required,
              const std::string& expected = "a mapping") {
    if (!Required(v, path, expected, required)) return false;
    if (!v->is_object()) {
      Fail(path, v, expected);
      return false;
    }
    return true;
  }

  bool Array(const json* v, const std::string& path, bool required,
             const std::string& expected = "a list") {
    if (!Required(v, path, expected, required)) return false;
    if (!v->is_array()) {
      Fail(path, v, expected);
      return false;
    }
    return true;
  }

  std::optional<std::string> String(const json* v, const std::string& path,
                                    const std::string& expected = "a string",
                                    bool required = false) {
    if (!Required(v, path, expected, required)) return std::nullopt;
    if (!v->is_string()) {
      Fail(path, v, expected + (v->is_primitive() ? " (quote it)" : ""));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  std::optional<bool> Bool(const json* v, const std::string& path) {
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) {
      const bool quoted = v->is_string() && (*v == "true" || *v == "false");
      Fail(path, v, quoted ? "true or false, without quotes" : "true or false");
      return std::nullopt;
    }
    return v->get<bool>();
  }

  // `bounded`: the maximum is part of the rule and always shown; otherwise it is the width of the
  // field and shown only to a value beyond it.
  std::optional<int64_t> Int(const json* v, const std::string& path, int64_t min, int64_t max,
                             bool bounded = false, bool required = false) {
    const std::string range =
        "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    const std::string expected = bounded ? range : "an integer >= " + std::to_string(min);
    if (!Required(v, path, expected, required)) return std::nullopt;
    if (!v->is_number_integer()) {
      bool digits = false;
      if (v->is_string()) {
        const auto& s = v->get_ref<const std::string&>();
        digits = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
          return (c >= '0' && c <= '9') || c == '-';
        });
      }
      Fail(path, v, expected + (digits ? ", without quotes" : ""));
      return std::nullopt;
    }
    const bool too_big = v->is_number_unsigned() ? v->get<uint64_t>() > static_cast<uint64_t>(max)
                                                 : v->get<int64_t>() > max;
    if (too_big) {
      Fail(path, v, range);
      return std::nullopt;
    }
    const int64_t value = v->get<int64_t>();
    if (value < min) {
      Fail(path, v, expected);
      return std::nullopt;
    }
    return value;
  }

  template <typename T>
  void ReadInt(const json& object, const std::string& parent, std::string_view key, int64_t min,
               int64_t max, T* out, bool bounded = false) {
    if (auto value = Int(Get(object, key), Child(parent, key), min, max, bounded)) {
      *out = static_cast<T>(*value);
    }
  }

  std::optional<std::string> Enum(const json* v, const std::string& path,
                                  std::initializer_list<std::string_view> options) {
    if (v == nullptr) return std::nullopt;
    const std::string expected = "one of " + JoinList(options);
    if (!v->is_string()) {
      Fail(path, v, expected);
      return std::nullopt;
    }
    const auto& s = v->get_ref<const std::string&>();
    if (std::find(options.begin(), options.end(), s) == options.end()) {
      Fail(path, v, expected + DidYouMean(Suggest(s, options)));
      return std::nullopt;
    }
    return s;
  }

  // ----- envelope -----

  void ReadMetadata(const json* metadata, JobSpec* out) {
    if (!Object(metadata, "metadata", true, "a mapping with a name")) return;
    out->metadata = *metadata;
    const json* name = Get(*metadata, "name");
    if (auto s = String(name, "metadata.name", kJobNameExpected, true)) {
      if (IsJobName(*s)) {
        out->name = *s;
      } else {
        Fail("metadata.name", name, kJobNameExpected);
      }
    }
    if (auto s = String(Get(*metadata, "namespace"), "metadata.namespace")) out->namespace_ = *s;
    if (auto s = String(Get(*metadata, "uid"), "metadata.uid")) out->uid = *s;
  }

  // ----- spec -----

  void ReadSpec(const json& spec, JobSpec* out) {
    const std::string p = "spec";
    UnknownKeys(spec, p, kSpecKeys);

    ReadVolumes(spec, out);

    const char* entry_expected = "a relative path to a .py or .so file inside sourceDirectory";
    const json* entry = Get(spec, "entryScript");
    if (auto s = String(entry, "spec.entryScript", "a string", true)) {
      if (IsEntryScriptPath(*s)) {
        out->entry_script = *s;
      } else {
        Fail("spec.entryScript", entry, entry_expected);
      }
    }
    ReadDataRef(Get(spec, "sourceDirectory"), "spec.sourceDirectory", true, &out->source_directory);

    ReadInputs(spec, out);
    ReadSideInputs(spec, out);
    CheckInputNames(*out);
    ReadDataRef(Get(spec, "output"), "spec.output", true, &out->output);
    CheckFoldersApart(*out);
    ReadArguments(spec, out);
    ReadMiniBatchSize(spec, out);
    ReadPartitionKeys(spec, out);

    ReadInt(spec, p, "errorThreshold", -1, kInt32Max, &out->error_threshold, true);
    ReadInt(spec, p, "allowedFailedCount", -1, kInt64Max, &out->allowed_failed_count);
    ReadInt(spec, p, "allowedFailedPercent", 0, 100, &out->allowed_failed_percent, true);
    if (auto s =
            Enum(Get(spec, "outputAction"), "spec.outputAction", {"append_row", "summary_only"})) {
      out->output_action =
          *s == "append_row" ? OutputAction::kAppendRow : OutputAction::kSummaryOnly;
    }
    const json* file_name = Get(spec, "appendRowFileName");
    if (auto s = String(file_name, "spec.appendRowFileName")) {
      if (IsPlainFileName(*s)) {
        out->append_row_file_name = *s;
      } else {
        Fail("spec.appendRowFileName", file_name, "a plain file name (no '/', not '.' or '..')");
      }
    }
    if (auto b = Bool(Get(spec, "appendRowHeader"), "spec.appendRowHeader")) {
      out->append_row_header = *b;
    }
    ReadInt(spec, p, "nodeCount", 1, kInt32Max, &out->node_count);
    ReadInt(spec, p, "processCountPerNode", 1, kInt32Max, &out->process_count_per_node);
    if (auto s =
            Enum(Get(spec, "loggingLevel"), "spec.loggingLevel", {"WARNING", "INFO", "DEBUG"})) {
      out->logging_level = *s;
    }
    ReadInt(spec, p, "runInvocationTimeout", 1, kInt32Max, &out->run_invocation_timeout);
    ReadInt(spec, p, "runMaxTry", 1, kInt32Max, &out->run_max_try);
    const int64_t derived = 3 * (int64_t{out->run_invocation_timeout} + 30);
    out->progress_update_timeout = static_cast<int>(std::min(derived, kInt32Max));
    ReadInt(spec, p, "progressUpdateTimeout", 1, kInt32Max, &out->progress_update_timeout);
    out->init_timeout = static_cast<int>(std::min<int64_t>(
        std::max<int64_t>(600, int64_t{out->run_invocation_timeout} + 30), kInt32Max));
    ReadInt(spec, p, "initTimeout", 1, kInt32Max, &out->init_timeout);
    ReadInt(spec, p, "resourceMonitorInterval", 0, kInt32Max, &out->resource_monitor_interval);
    if (auto s = String(Get(spec, "retryFrom"), "spec.retryFrom", "a path to an earlier output")) {
      out->retry_from = *s;
    }

    ReadPodFields(spec, out);
    ReadModels(spec, out);

    if (auto b = Bool(Get(spec, "suspend"), "spec.suspend")) out->suspend = *b;
    if (auto v =
            Int(Get(spec, "activeDeadlineSeconds"), "spec.activeDeadlineSeconds", 1, kInt64Max)) {
      out->active_deadline_seconds = *v;
    }
    if (auto v = Int(Get(spec, "ttlSecondsAfterFinished"), "spec.ttlSecondsAfterFinished", 0,
                     kInt32Max)) {
      out->ttl_seconds_after_finished = *v;
    }
    ReadInt(spec, p, "backoffLimit", 0, kInt32Max, &out->backoff_limit);
  }

  void ReadVolumes(const json& spec, JobSpec* out) {
    const json* volumes = Get(spec, "volumes");
    if (!Array(volumes, "spec.volumes", false, "a list of Kubernetes volumes")) return;
    out->volumes = *volumes;
    for (size_t i = 0; i < volumes->size(); ++i) {
      const json& volume = (*volumes)[i];
      const std::string path = Index("spec.volumes", i);
      if (!Object(&volume, path, true, "a Kubernetes volume (a mapping with a name)")) continue;
      const json* name = Get(volume, "name");
      auto s = String(name, path + ".name", kDnsLabelExpected, true);
      if (!s) continue;
      if (!IsDnsLabel(*s)) {
        Fail(path + ".name", name, kDnsLabelExpected);
      } else if (std::find(volume_names_.begin(), volume_names_.end(), *s) != volume_names_.end()) {
        Fail(path + ".name", name, "a name not used by another volume");
      } else {
        volume_names_.push_back(*s);
      }
    }
  }

  bool ReadDataRef(const json* v, const std::string& path, bool required, DataRef* out) {
    if (!Object(v, path, required, "a mapping with a path and an optional volume")) return false;
    UnknownKeys(*v, path, kDataRefKeys);
    bool ok = true;
    const json* p = Get(*v, "path");
    const char* path_expected = "a relative path without '..' (use . for the whole volume)";
    if (auto s = String(p, path + ".path", path_expected, true)) {
      if (IsContainedRelativePath(*s)) {
        out->path = *s;
      } else {
        Fail(path + ".path", p, path_expected);
        ok = false;
      }
    } else {
      ok = false;
    }
    const json* volume = Get(*v, "volume");
    const std::string volume_expected =
        volume_names_.empty()
            ? std::string("the name of an entry of spec.volumes (there are none)")
            : "the name of an entry of spec.volumes (" + JoinList(volume_names_) + ")";
    if (auto s = String(volume, path + ".volume", volume_expected)) {
      if (std::find(volume_names_.begin(), volume_names_.end(), *s) != volume_names_.end()) {
        out->volume = *s;
      } else {
        Fail(path + ".volume", volume, volume_expected + DidYouMean(Suggest(*s, volume_names_)));
        ok = false;
      }
    } else if (volume != nullptr) {
      ok = false;
    }
    return ok;
  }

  std::optional<std::string> ReadName(const json& item, const std::string& path) {
    const json* name = Get(item, "name");
    auto s = String(name, path + ".name", kDnsLabelExpected, true);
    if (s && !IsDnsLabel(*s)) {
      Fail(path + ".name", name, kDnsLabelExpected);
      return std::nullopt;
    }
    return s;
  }

  void ReadInputs(const json& spec, JobSpec* out) {
    const json* inputs = Get(spec, "inputs");
    const char* expected = "a list of at least one input";
    if (!Array(inputs, "spec.inputs", true, expected)) return;
    if (inputs->empty()) {
      Fail("spec.inputs", inputs, expected);
      return;
    }
    std::optional<InputType> first_type;
    for (size_t i = 0; i < inputs->size(); ++i) {
      const json& item = (*inputs)[i];
      const std::string path = Index("spec.inputs", i);
      Input input;
      if (!Object(&item, path, true, "a mapping with name, type and source")) {
        out->inputs.push_back(input);
        continue;
      }
      UnknownKeys(item, path, kInputKeys);
      if (auto name = ReadName(item, path)) input.name = *name;
      const json* type = Get(item, "type");
      bool type_known = true;
      if (type != nullptr) {
        if (auto s = Enum(type, path + ".type", {"file", "tabular"})) {
          input.type = *s == "file" ? InputType::kFile : InputType::kTabular;
        } else {
          type_known = false;
        }
      }
      if (type_known) {
        if (!first_type) {
          first_type = input.type;
          mini_batch_type_ = input.type;
        } else if (*first_type != input.type) {
          const std::string first = *first_type == InputType::kFile ? "file" : "tabular";
          Fail(path + ".type", type,
               Quote(first) +
                   ", the type of the first input (all inputs of a job have the same type)");
        }
      }
      ReadDataRef(Get(item, "source"), path + ".source", true, &input.source);
      if (auto s = String(Get(item, "pattern"), path + ".pattern", "a glob such as \"*.jpg\"")) {
        input.pattern = *s;
      }
      const json* format = Get(item, "format");
      const json* header = Get(item, "header");
      const json* column_types = Get(item, "columnTypes");
      if (type_known && input.type == InputType::kFile && column_types != nullptr) {
        Fail(path + ".columnTypes", column_types,
             "no columnTypes on a file input (columnTypes is for tabular inputs)");
      } else if (Object(column_types, path + ".columnTypes", false,
                        "a mapping of column name to type")) {
        for (const auto& [column, type] : column_types->items()) {
          if (auto t = Enum(&type, Child(path + ".columnTypes", column),
                            {"string", "int64", "float64", "bool", "datetime"})) {
            input.column_types[column] = *t;
          }
        }
      }
      ReadPartitionFormat(item, path, type_known, &input);
      if (type_known && input.type == InputType::kFile) {
        if (format != nullptr) {
          Fail(path + ".format", format,
               "no format on a file input (format is for tabular inputs)");
        }
        if (header != nullptr) {
          Fail(path + ".header", header, "no header on a file input (header is for csv inputs)");
        }
      } else {
        if (auto s = Enum(format, path + ".format", {"csv", "jsonl"})) {
          input.format = *s == "csv" ? TabularFormat::kCsv : TabularFormat::kJsonl;
        }
        if (auto b = Bool(header, path + ".header")) input.header = *b;
      }
      out->inputs.push_back(std::move(input));
    }
  }

  // inputs[].partitionFormat (file inputs); checked against spec.partitionKeys later.
  void ReadPartitionFormat(const json& item, const std::string& path, bool type_known,
                           Input* input) {
    const json* partition_format = Get(item, "partitionFormat");
    if (type_known && input->type == InputType::kTabular && partition_format != nullptr) {
      Fail(path + ".partitionFormat", partition_format,
           "no partitionFormat on a tabular input (tabular inputs partition by columns)");
    } else if (auto s = String(partition_format, path + ".partitionFormat",
                               "a format such as \"{user}/{season}/{genres}.wav\"")) {
      input->partition_format = *s;
    }
  }

  void ReadSideInputs(const json& spec, JobSpec* out) {
    const json* side_inputs = Get(spec, "sideInputs");
    if (!Array(side_inputs, "spec.sideInputs", false)) return;
    for (size_t i = 0; i < side_inputs->size(); ++i) {
      const json& item = (*side_inputs)[i];
      const std::string path = Index("spec.sideInputs", i);
      SideInput side;
      if (Object(&item, path, true, "a mapping with name and source")) {
        UnknownKeys(item, path, kSideInputKeys);
        if (auto name = ReadName(item, path)) side.name = *name;
        ReadDataRef(Get(item, "source"), path + ".source", true, &side.source);
      }
      out->side_inputs.push_back(std::move(side));
    }
  }

  // spec.models: unique names (each is a folder under /mnt/models), an optional version string,
  // a source.
  void ReadModels(const json& spec, JobSpec* out) {
    const json* models = Get(spec, "models");
    if (!Array(models, "spec.models", false, "a list of models (name, version, source)")) return;
    for (size_t i = 0; i < models->size(); ++i) {
      const json& item = (*models)[i];
      const std::string path = Index("spec.models", i);
      Model model;
      if (Object(&item, path, true, "a mapping with name, source and optionally version")) {
        UnknownKeys(item, path, kModelKeys);
        const json* name = Get(item, "name");
        if (auto s = String(name, path + ".name", kAssetNameExpected, true)) {
          if (!IsAssetName(*s)) {
            Fail(path + ".name", name, kAssetNameExpected);
          } else {
            for (size_t j = 0; j < out->models.size(); ++j) {
              if (out->models[j].name != *s) continue;
              Fail(path + ".name", name,
                   "a name not used by another model (" + Index("spec.models", j) + ".name)");
            }
            model.name = *s;
          }
        }
        const json* version = Get(item, "version");
        const std::string version_expected =
            std::string("a version string such as \"1\" (") + kAssetNameExpected + ")";
        if (auto s = String(version, path + ".version", version_expected)) {
          if (IsAssetName(*s)) {
            model.version = *s;
          } else {
            Fail(path + ".version", version, version_expected);
          }
        }
        ReadDataRef(Get(item, "source"), path + ".source", true, &model.source);
      }
      out->models.push_back(std::move(model));
    }
    if (!out->models.empty()) CheckModelEnv(spec);
  }

  // With spec.models the job sets AZUREML_MODEL_DIR and PARALLELRUN_MODELS: spec.env may not.
  void CheckModelEnv(const json& spec) {
    const json* env = Get(spec, "env");
    if (env == nullptr || !env->is_array()) return;
    for (size_t i = 0; i < env->size(); ++i) {
      const json& entry = (*env)[i];
      const json* name = entry.is_object() ? Get(entry, "name") : nullptr;
      if (name == nullptr || !name->is_string()) continue;
      const std::string n = name->get<std::string>();
      if (std::find(std::begin(kModelEnvNames), std::end(kModelEnvNames), n) ==
          std::end(kModelEnvNames)) {
        continue;
      }
      Fail(Index("spec.env", i) + ".name", name,
           "a variable other than AZUREML_MODEL_DIR and PARALLELRUN_MODELS, which spec.models "
           "sets (drop this entry)");
    }
  }

  // Input and side input names share one namespace (they name pod volume mounts).
  void CheckInputNames(const JobSpec& spec) {
    std::vector<std::pair<std::string, std::string>> seen;  // name, path of its field
    auto check = [&](const std::string& name, const std::string& path) {
      if (name.empty()) return;
      for (const auto& [other, other_path] : seen) {
        if (other == name) {
          const json value = name;
          Fail(path, &value, "a name not used by another input or side input (" + other_path + ")");
          return;
        }
      }
      seen.emplace_back(name, path);
    };
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      check(spec.inputs[i].name, Index("spec.inputs", i) + ".name");
    }
    for (size_t i = 0; i < spec.side_inputs.size(); ++i) {
      check(spec.side_inputs[i].name, Index("spec.sideInputs", i) + ".name");
    }
  }

  // The output folder must not be inside an input or the code folder (or hold them): the job
  // would read its own journal, logs and parts, or `--restart` would move the code away. Nor may
  // the code folder overlap an input. Compared by volume and lexically normalized path; folders
  // that only meet through different volumes or symbolic links are caught where they are
  // resolved (CheckResolvedFoldersApart).
  void CheckFoldersApart(const JobSpec& spec) {
    struct Ref {
      std::string field;
      const DataRef* ref;
    };
    std::vector<Ref> refs = {{"spec.output", &spec.output},
                             {"spec.sourceDirectory", &spec.source_directory}};
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      refs.push_back({Index("spec.inputs", i) + ".source", &spec.inputs[i].source});
    }
    // Pairs (0, *): the output against the others; (1, k >= 2): the code folder against inputs.
    for (size_t a = 0; a < 2 && a < refs.size(); ++a) {
      for (size_t b = a + 1; b < refs.size(); ++b) {
        const DataRef& x = *refs[a].ref;
        const DataRef& y = *refs[b].ref;
        if (x.volume != y.volume || x.path.empty() || y.path.empty()) continue;
        std::string how = FolderOverlap(x.path, y.path, refs[b].field);
        if (how.empty()) continue;
        const json value = x.path;
        Fail(refs[a].field + ".path", &value,
             "a folder apart from " + refs[b].field + " (\"" + y.path + "\"" +
                 (x.volume.empty() ? "" : " in volume \"" + x.volume + "\"") + ")",
             how);
      }
    }
  }

  void ReadArguments(const json& spec, JobSpec* out) {
    const json* arguments = Get(spec, "arguments");
    if (!Array(arguments, "spec.arguments", false, "a list of strings")) return;
    std::vector<std::string> input_names;
    std::vector<std::string> side_names;
    for (const Input& in : out->inputs) input_names.push_back(in.name);
    for (const SideInput& side : out->side_inputs) side_names.push_back(side.name);
    for (size_t i = 0; i < arguments->size(); ++i) {
      const json& item = (*arguments)[i];
      const std::string path = Index("spec.arguments", i);
      auto s = String(&item, path, "a string", true);
      if (!s) continue;
      CheckReferences(*s, item, path, input_names, side_names);
      out->arguments.push_back(*std::move(s));
    }
  }

  void CheckReferences(const std::string& arg, const json& value, const std::string& path,
                       const std::vector<std::string>& input_names,
                       const std::vector<std::string>& side_names) {
    const std::string forms = "$(inputs.NAME), $(sideInputs.NAME) or $(output)";
    size_t pos = 0;
    while ((pos = arg.find("$(", pos)) != std::string::npos) {
      const size_t start = pos + 2;
      const size_t close = arg.find(')', start);
      const std::string_view rest(arg.data() + start, arg.size() - start);
      const bool ours = rest.starts_with("inputs") || rest.starts_with("sideInputs") ||
                        rest.starts_with("output");
      if (close == std::string::npos) {
        if (ours) Fail(path, &value, "a closed reference: " + forms);
        return;
      }
      const std::string ref = arg.substr(start, close - start);
      pos = close + 1;
      if (!ours || ref == "output") continue;
      auto check = [&](std::string_view prefix, const std::vector<std::string>& names,
                       const char* what) {
        const std::string name = ref.substr(prefix.size());
        if (std::find(names.begin(), names.end(), name) != names.end()) return;
        std::string expected = std::string("a reference to ") + what +
                               (names.empty() ? " (there are none)" : " (" + JoinList(names) + ")");
        Fail(path, &value, expected + DidYouMean(Suggest(name, names)),
             "unknown reference $(" + ref + ") in " + ValueText(value));
      };
      if (ref.starts_with("inputs.")) {
        check("inputs.", input_names, "an input");
      } else if (ref.starts_with("sideInputs.")) {
        check("sideInputs.", side_names, "a side input");
      } else {
        Fail(path, &value, forms, "malformed reference $(" + ref + ") in " + ValueText(value));
      }
    }
  }

  void ReadMiniBatchSize(const json& spec, JobSpec* out) {
    const json* v = Get(spec, "miniBatchSize");
    // Without a valid first input the type is unknown: check the looser (tabular) syntax only.
    const InputType type = mini_batch_type_.value_or(InputType::kTabular);
    const std::string path = "spec.miniBatchSize";
    if (v == nullptr) {
      out->mini_batch_size_text = type == InputType::kFile ? "10" : "1MB";
      out->mini_batch_size = *MiniBatchSizeValue(out->mini_batch_size_text, type);
      return;
    }
    std::string text;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() || v->get<int64_t>() > 0) text = v->dump();
    } else if (v->is_string()) {
      text = v->get<std::string>();
    }
    const auto value = MiniBatchSizeValue(text, type);
    if (!value) {
      Fail(path, v,
           mini_batch_type_ ? MiniBatchExpected(type)
                            : "a positive count (file inputs) or size (tabular inputs)");
      return;
    }
    out->mini_batch_size_text = text;
    out->mini_batch_size = *value;
  }

  // spec.partitionKeys and what it implies for miniBatchSize and each input's partitionFormat.
  void ReadPartitionKeys(const json& spec, JobSpec* out) {
    const json* keys = Get(spec, "partitionKeys");
    if (Array(keys, "spec.partitionKeys", false, "a list of key names")) {
      for (size_t i = 0; i < keys->size(); ++i) {
        const json& item = (*keys)[i];
        const std::string path = Index("spec.partitionKeys", i);
        auto s = String(&item, path, "a key name", true);
        if (!s) continue;
        if (s->empty()) {
          Fail(path, &item, "a non-empty key name");
        } else if (std::find(out->partition_keys.begin(), out->partition_keys.end(), *s) !=
                   out->partition_keys.end()) {
          Fail(path, &item, "a key name not listed before (each key once)");
        } else {
          out->partition_keys.push_back(*s);
        }
      }
    }
    const bool keyed = keys != nullptr && keys->is_array() && !keys->empty();
    if (const json* size = Get(spec, "miniBatchSize"); keyed && size != nullptr) {
      Fail("spec.miniBatchSize", size,
           "no miniBatchSize with spec.partitionKeys (each mini-batch is one combination of key "
           "values, whatever its size)");
    }
    if (keyed && out->is_native() && out->input_type() == InputType::kTabular) {
      Fail("spec.partitionKeys", keys,
           "no partitionKeys on tabular inputs with a native (.so) entry script (a partition's "
           "rows come from several byte ranges, which the native ABI cannot express)");
    }
    for (size_t i = 0; i < out->inputs.size(); ++i) {
      const Input& in = out->inputs[i];
      const std::string path = Index("spec.inputs", i) + ".partitionFormat";
      if (in.type != InputType::kFile) continue;
      if (!keyed) {
        if (!in.partition_format.empty()) {
          const json value = in.partition_format;
          Fail(path, &value, "no partitionFormat without spec.partitionKeys (set both)");
        }
        continue;
      }
      if (in.partition_format.empty()) {
        Fail(path, nullptr,
             "a format such as \"{user}/{season}/{genres}.wav\" capturing " +
                 JoinList(out->partition_keys) + " (spec.partitionKeys)");
        continue;
      }
      const json value = in.partition_format;
      auto format = PartitionFormat::Parse(in.partition_format);
      if (!format.ok()) {
        Fail(path, &value, "Azure ML's partition format: {name} captures, * wildcards",
             format.status().message());
        continue;
      }
      for (const std::string& key : out->partition_keys) {
        const auto& names = format->names();
        if (std::find(names.begin(), names.end(), key) == names.end()) {
          Fail(path, &value, "a format that captures {" + key + "}, a key of spec.partitionKeys",
               "spec.partitionKeys names \"" + key + "\", which " + value.dump() +
                   " does not capture");
        }
      }
    }
  }

  void ReadPodFields(const json& spec, JobSpec* out) {
    auto keep = [&](std::string_view key) { out->pod[std::string(key)] = spec.at(key); };
    auto string_field = [&](std::string_view key) {
      if (String(Get(spec, key), Child("spec", key))) keep(key);
    };
    auto object_field = [&](std::string_view key) {
      if (Object(Get(spec, key), Child("spec", key), false)) keep(key);
    };
    auto array_field = [&](std::string_view key) {
      if (Array(Get(spec, key), Child("spec", key), false)) keep(key);
    };
    auto string_map_field = [&](std::string_view key) {
      const std::string path = Child("spec", key);
      const json* v = Get(spec, key);
      if (!Object(v, path, false, "a mapping of strings")) return;
      bool ok = true;
      for (const auto& [k, value] : v->items()) {
        if (!value.is_string()) {
          Fail(Child(path, k), &value, "a string (quote it)");
          ok = false;
        }
      }
      if (ok) keep(key);
    };
    string_field("image");
    if (Enum(Get(spec, "imagePullPolicy"), "spec.imagePullPolicy",
             {"Always", "IfNotPresent", "Never"})) {
      keep("imagePullPolicy");
    }
    object_field("resources");
    array_field("env");
    string_map_field("nodeSelector");
    array_field("tolerations");
    object_field("affinity");
    string_field("serviceAccountName");
    string_field("priorityClassName");
    string_map_field("podLabels");
    string_map_field("podAnnotations");
    object_field("securityContext");
  }

  std::vector<FieldError>* errors_;
  std::vector<std::string> volume_names_;
  std::optional<InputType> mini_batch_type_;  // the first input's type, when valid
};

json DataRefJson(const DataRef& ref) {
  json out = json::object();
  if (!ref.volume.empty()) out["volume"] = ref.volume;
  out["path"] = ref.path;
  return out;
}

std::string ErrorSummary(const std::string& source_name, const std::vector<FieldError>& errors) {
  std::string out = source_name + ": " + std::to_string(errors.size()) +
                    (errors.size() == 1 ? " error" : " errors") + " in the manifest:";
  for (const FieldError& e : errors) out += "\n  - " + e.ToString();
  return out;
}

}  // namespace

bool JobSpec::is_native() const { return EndsWith(entry_script, ".so"); }

std::string FieldError::ToString() const {
  std::string out = path.empty() ? "document" : path;
  out += ": ";
  if (!problem.empty()) {
    out += problem;
  } else if (value.empty()) {
    out += "missing";
  } else {
    out += "got " + value;
  }
  out += ", expected " + expected;
  return out;
}

StatusOr<int64_t> ParseMiniBatchSize(const std::string& text, InputType type) {
  if (auto value = MiniBatchSizeValue(text, type)) return *value;
  return InvalidArgumentError("miniBatchSize: got " + Quote(text) + ", expected " +
                              MiniBatchExpected(type));
}

StatusOr<JobSpec> ParseJobSpec(std::string_view text, const std::string& source_name,
                               std::vector<FieldError>* errors) {
  if (errors != nullptr) errors->clear();
  PR_ASSIGN_OR_RETURN(json doc, YamlToJson(text, source_name));
  std::vector<FieldError> found;
  JobSpec spec;
  try {
    Validator(&found).ReadDocument(doc, &spec);
  } catch (const std::exception& e) {
    // The validator checks types before every access; this is a bug, not a user error.
    return InternalError(source_name + ": cannot validate the manifest: " + e.what());
  }
  if (!found.empty()) {
    Status status = InvalidArgumentError(ErrorSummary(source_name, found));
    if (errors != nullptr) *errors = std::move(found);
    return status;
  }
  return spec;
}

StatusOr<JobSpec> LoadJobSpec(const std::string& path, std::vector<FieldError>* errors) {
  if (errors != nullptr) errors->clear();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseJobSpec(*text, path, errors);
}

nlohmann::json ToJson(const JobSpec& spec) {
  json metadata = spec.metadata.is_object() ? spec.metadata : json::object();
  metadata["name"] = spec.name;
  if (!spec.namespace_.empty()) metadata["namespace"] = spec.namespace_;
  if (!spec.uid.empty()) metadata["uid"] = spec.uid;

  json s = json::object();
  s["entryScript"] = spec.entry_script;
  s["sourceDirectory"] = DataRefJson(spec.source_directory);
  s["volumes"] = spec.volumes;
  json inputs = json::array();
  for (const Input& in : spec.inputs) {
    json j = json::object();
    j["name"] = in.name;
    j["type"] = in.type == InputType::kFile ? "file" : "tabular";
    j["source"] = DataRefJson(in.source);
    if (!in.pattern.empty()) j["pattern"] = in.pattern;
    if (in.type == InputType::kTabular) {
      if (in.format != TabularFormat::kAuto) {
        j["format"] = in.format == TabularFormat::kCsv ? "csv" : "jsonl";
      }
      j["header"] = in.header;
      if (!in.column_types.empty()) j["columnTypes"] = in.column_types;
    }
    if (!in.partition_format.empty()) j["partitionFormat"] = in.partition_format;
    inputs.push_back(std::move(j));
  }
  s["inputs"] = std::move(inputs);
  json side_inputs = json::array();
  for (const SideInput& side : spec.side_inputs) {
    side_inputs.push_back({{"name", side.name}, {"source", DataRefJson(side.source)}});
  }
  s["sideInputs"] = std::move(side_inputs);
  if (!spec.models.empty()) {
    json models = json::array();
    for (const Model& m : spec.models) {
      json j = {{"name", m.name}};
      if (!m.version.empty()) j["version"] = m.version;
      j["source"] = DataRefJson(m.source);
      models.push_back(std::move(j));
    }
    s["models"] = std::move(models);
  }
  s["output"] = DataRefJson(spec.output);
  s["arguments"] = spec.arguments;
  if (spec.partition_keys.empty()) {
    s["miniBatchSize"] = spec.mini_batch_size_text;
  } else {
    s["partitionKeys"] = spec.partition_keys;  // miniBatchSize does not apply
  }
  s["errorThreshold"] = spec.error_threshold;
  s["allowedFailedCount"] = spec.allowed_failed_count;
  s["allowedFailedPercent"] = spec.allowed_failed_percent;
  s["outputAction"] =
      spec.output_action == OutputAction::kAppendRow ? "append_row" : "summary_only";
  s["appendRowFileName"] = spec.append_row_file_name;
  s["appendRowHeader"] = spec.append_row_header;
  s["nodeCount"] = spec.node_count;
  s["processCountPerNode"] = spec.process_count_per_node;
  s["loggingLevel"] = spec.logging_level;
  s["runInvocationTimeout"] = spec.run_invocation_timeout;
  s["runMaxTry"] = spec.run_max_try;
  s["progressUpdateTimeout"] = spec.progress_update_timeout;
  s["initTimeout"] = spec.init_timeout;
  s["resourceMonitorInterval"] = spec.resource_monitor_interval;
  if (!spec.retry_from.empty()) s["retryFrom"] = spec.retry_from;
  if (spec.pod.is_object()) {
    for (const auto& [key, value] : spec.pod.items()) s[key] = value;
  }
  s["suspend"] = spec.suspend;
  if (spec.active_deadline_seconds) s["activeDeadlineSeconds"] = *spec.active_deadline_seconds;
  if (spec.ttl_seconds_after_finished) {
    s["ttlSecondsAfterFinished"] = *spec.ttl_seconds_after_finished;
  }
  s["backoffLimit"] = spec.backoff_limit;

  return json{{"apiVersion", spec.api_version},
              {"kind", spec.kind},
              {"metadata", std::move(metadata)},
              {"spec", std::move(s)}};
}

}  // namespace parallelrun::rt
