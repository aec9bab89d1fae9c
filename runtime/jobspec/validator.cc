// The validator's walk over a manifest: the envelope, spec's scalar fields, arguments,
// miniBatchSize, partitionKeys and the pod fields (validator.h). The data sources are in
// validator_sources.cc.

#include "runtime/jobspec/validator.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jobspec/field_rules.h"
#include "runtime/jobspec/partition_format.h"

namespace parallelrun::rt::jobspec {
namespace {

using json = nlohmann::json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

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

}  // namespace

void Validator::ReadDocument(const json& doc, JobSpec* out) {
  if (!doc.is_object()) {
    Fail("", doc.is_null() ? nullptr : &doc, "a mapping with apiVersion, kind, metadata and spec");
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

void Validator::ReadMetadata(const json* metadata, JobSpec* out) {
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

void Validator::ReadSpec(const json& spec, JobSpec* out) {
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
    out->output_action = *s == "append_row" ? OutputAction::kAppendRow : OutputAction::kSummaryOnly;
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
  if (auto s = Enum(Get(spec, "loggingLevel"), "spec.loggingLevel", {"WARNING", "INFO", "DEBUG"})) {
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
  if (auto v =
          Int(Get(spec, "ttlSecondsAfterFinished"), "spec.ttlSecondsAfterFinished", 0, kInt32Max)) {
    out->ttl_seconds_after_finished = *v;
  }
  ReadInt(spec, p, "backoffLimit", 0, kInt32Max, &out->backoff_limit);
}

void Validator::ReadArguments(const json& spec, JobSpec* out) {
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

void Validator::CheckReferences(const std::string& arg, const json& value, const std::string& path,
                                const std::vector<std::string>& input_names,
                                const std::vector<std::string>& side_names) {
  const std::string forms = "$(inputs.NAME), $(sideInputs.NAME) or $(output)";
  size_t pos = 0;
  while ((pos = arg.find("$(", pos)) != std::string::npos) {
    const size_t start = pos + 2;
    const size_t close = arg.find(')', start);
    const std::string_view rest(arg.data() + start, arg.size() - start);
    const bool ours =
        rest.starts_with("inputs") || rest.starts_with("sideInputs") || rest.starts_with("output");
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

void Validator::ReadMiniBatchSize(const json& spec, JobSpec* out) {
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
void Validator::ReadPartitionKeys(const json& spec, JobSpec* out) {
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

void Validator::ReadPodFields(const json& spec, JobSpec* out) {
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

}  // namespace parallelrun::rt::jobspec
