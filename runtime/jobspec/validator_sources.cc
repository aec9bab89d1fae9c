// The validator's rules for a job's data sources: volumes, data references, inputs, side inputs,
// models, and the names and folders they must not share (validator.h).

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jobspec/field_rules.h"
#include "runtime/jobspec/validator.h"

namespace parallelrun::rt::jobspec {
namespace {

using json = nlohmann::json;

constexpr std::string_view kDataRefKeys[] = {"volume", "path"};
constexpr std::string_view kInputKeys[] = {"name",   "type",   "source",      "pattern",
                                           "format", "header", "columnTypes", "partitionFormat"};
constexpr std::string_view kSideInputKeys[] = {"name", "source"};
constexpr std::string_view kModelKeys[] = {"name", "version", "source"};
// Set for worker processes from spec.models; spec.env may not set them too.
constexpr std::string_view kModelEnvNames[] = {"AZUREML_MODEL_DIR", "PARALLELRUN_MODELS"};

}  // namespace

void Validator::ReadVolumes(const json& spec, JobSpec* out) {
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

bool Validator::ReadDataRef(const json* v, const std::string& path, bool required, DataRef* out) {
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

std::optional<std::string> Validator::ReadName(const json& item, const std::string& path) {
  const json* name = Get(item, "name");
  auto s = String(name, path + ".name", kDnsLabelExpected, true);
  if (s && !IsDnsLabel(*s)) {
    Fail(path + ".name", name, kDnsLabelExpected);
    return std::nullopt;
  }
  return s;
}

void Validator::ReadInputs(const json& spec, JobSpec* out) {
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
        Fail(path + ".format", format, "no format on a file input (format is for tabular inputs)");
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
void Validator::ReadPartitionFormat(const json& item, const std::string& path, bool type_known,
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

void Validator::ReadSideInputs(const json& spec, JobSpec* out) {
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
void Validator::ReadModels(const json& spec, JobSpec* out) {
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
void Validator::CheckModelEnv(const json& spec) {
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
void Validator::CheckInputNames(const JobSpec& spec) {
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
void Validator::CheckFoldersApart(const JobSpec& spec) {
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

}  // namespace parallelrun::rt::jobspec
