// The one model of a ParallelRunJob manifest (SPEC.md §2), shared by the runtime, the CLI and the
// operator. Parse → default → validate happen in ParseJobSpec; ToJson serializes the defaulted
// spec back in the CR form (the operator hands it to pods as /etc/parallelrun/spec.json).
//
// Guarantees: a JobSpec returned by ParseJobSpec passed every rule of SPEC.md §2.1; every error is
// reported at once with its field path (`spec.inputs[1].pattern`), the offending value and what
// was expected. Unknown fields under `spec` are errors; `metadata` and `status` are lenient.
// Kubernetes sub-objects (volumes, resources, env, tolerations, affinity, securityContext, ...)
// are kept as opaque JSON.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt {

inline constexpr const char* kApiVersion = "parallelrun.io/v1alpha1";
inline constexpr const char* kKind = "ParallelRunJob";

struct DataRef {
  std::string volume;  // name in spec.volumes; empty: a path in the image / next to the manifest
  std::string path;    // relative inside the volume
};

enum class InputType { kFile, kTabular };
enum class TabularFormat { kAuto, kCsv, kJsonl };  // kAuto: from each file's extension
enum class OutputAction { kAppendRow, kSummaryOnly };

struct Input {
  std::string name;
  InputType type = InputType::kFile;
  DataRef source;
  std::string pattern;  // empty = every file
  TabularFormat format = TabularFormat::kAuto;
  bool header = true;  // csv only
  // Tabular only: column name -> "string" | "int64" | "float64" | "bool" | "datetime", overriding
  // the dtypes inferred for each whole file.
  std::map<std::string, std::string> column_types;
  // File only, with spec.partition_keys: Azure ML's partition format, e.g.
  // "{user}/{season}/{genres}.wav" (runtime/jobspec/partition_format.h).
  std::string partition_format;
};

struct SideInput {
  std::string name;
  DataRef source;
};

// spec.models: mounted read-only on every node like side inputs (/mnt/models/<name> in pods);
// worker processes get AZUREML_MODEL_DIR (their root) and PARALLELRUN_MODELS (ModelsEnvValue).
struct Model {
  std::string name;     // Azure ML's rule: [A-Za-z0-9][A-Za-z0-9._-]*, 1 to 255 characters
  std::string version;  // "" when not given
  DataRef source;       // the model's folder (or single file)
};
inline constexpr const char* kMountedModelsDir = "/mnt/models";

struct JobSpec {
  // CR envelope.
  std::string api_version = kApiVersion;
  std::string kind = kKind;
  std::string name;                                    // metadata.name
  std::string namespace_;                              // metadata.namespace (may be empty)
  std::string uid;                                     // metadata.uid (empty outside a cluster)
  nlohmann::json metadata = nlohmann::json::object();  // as given (lenient)

  // spec
  std::string entry_script;
  DataRef source_directory;
  nlohmann::json volumes = nlohmann::json::array();  // Kubernetes Volume objects, opaque
  std::vector<Input> inputs;
  std::vector<SideInput> side_inputs;
  std::vector<Model> models;
  DataRef output;
  std::vector<std::string> arguments;
  std::string mini_batch_size_text;  // as written ("10", "1MB"); defaulted by input type
  int64_t mini_batch_size = 0;       // items (file) or bytes (tabular), after defaulting
  int64_t error_threshold = -1;
  int64_t allowed_failed_count = -1;
  int allowed_failed_percent = 100;
  OutputAction output_action = OutputAction::kAppendRow;
  std::string append_row_file_name = "parallel_run_step.txt";
  bool append_row_header = false;
  int node_count = 1;
  int process_count_per_node = 1;
  std::string logging_level = "INFO";
  int run_invocation_timeout = 60;
  int run_max_try = 3;
  int progress_update_timeout = 0;  // defaulted to 3 * (runInvocationTimeout + 30)
  int init_timeout = 0;             // defaulted to max(600, runInvocationTimeout + 30)
  int resource_monitor_interval = 600;
  std::string retry_from;  // empty = none
  // Azure ML's partition_keys: one mini-batch per combination of these keys' values (file
  // inputs: captured by partitionFormat; tabular: columns). miniBatchSize does not apply.
  std::vector<std::string> partition_keys;

  // Kubernetes pod fields, opaque: image, imagePullPolicy, resources, env, nodeSelector,
  // tolerations, affinity, serviceAccountName, priorityClassName, podLabels, podAnnotations,
  // securityContext. Only the keys present in the manifest are stored.
  nlohmann::json pod = nlohmann::json::object();
  // Kubernetes job fields.
  bool suspend = false;
  std::optional<int64_t> active_deadline_seconds;
  std::optional<int64_t> ttl_seconds_after_finished;
  int backoff_limit = 6;

  InputType input_type() const { return inputs.empty() ? InputType::kFile : inputs[0].type; }
  bool is_native() const;  // entry script ends in .so
};

struct FieldError {
  std::string path;      // spec.inputs[1].pattern ("" for the document itself)
  std::string value;     // the offending value as JSON text, or "" when missing
  std::string expected;  // what was expected
  // Said instead of "got <value>" when set, e.g. "unknown field (did you mean nodeCount?)".
  std::string problem;
  // "spec.nodeCount: got 0, expected an integer >= 1", "spec.entryScript: missing, expected a
  // string", "spec.nodeCont: unknown field (did you mean nodeCount?), expected one of ...".
  std::string ToString() const;
};

// Parses YAML or JSON text (JSON is YAML). `source_name` names the file in parse errors.
// A YAML error is InvalidArgument "SOURCE:LINE:COLUMN: what" (`errors` stays empty). On validation
// failure the Status is InvalidArgument "SOURCE: N errors in the manifest:" followed by one
// "  - <FieldError::ToString()>" line per error; `errors` (optional) receives them structured.
// A field set to null counts as absent, as the API server prunes nulls from custom resources.
StatusOr<JobSpec> ParseJobSpec(std::string_view text, const std::string& source_name,
                               std::vector<FieldError>* errors = nullptr);
// Reads and parses a file.
StatusOr<JobSpec> LoadJobSpec(const std::string& path, std::vector<FieldError>* errors = nullptr);

// The defaulted spec in CR form; ParseJobSpec(ToJson(s).dump()) round-trips.
nlohmann::json ToJson(const JobSpec& spec);

// "10" / "1MB" / "512kb" / "2GB" (powers of 1024). File inputs: a positive count with no unit.
StatusOr<int64_t> ParseMiniBatchSize(const std::string& text, InputType type);

// Where each DataRef of a job lives on this machine.
struct ResolvedPaths {
  std::string code_dir;                            // sourceDirectory
  std::map<std::string, std::string> inputs;       // input name -> folder
  std::map<std::string, std::string> side_inputs;  // side input name -> folder
  std::map<std::string, std::string> models;       // model name -> folder (or file)
  std::string output_dir;
  std::string retry_from_dir;  // empty when spec.retry_from is empty
};

// Local mode: a hostPath volume is used as is, other volumes must be bound with
// `--volume NAME=DIR` (`bindings`); a DataRef with no volume is relative to `manifest_dir`.
// Errors name the field (`spec.inputs[0].source.volume`) and say what to pass.
StatusOr<ResolvedPaths> ResolveLocalPaths(const JobSpec& spec, const std::string& manifest_dir,
                                          const std::map<std::string, std::string>& bindings);
// Inside a pod made by the operator: /mnt/code, /mnt/inputs/<name>, /mnt/side-inputs/<name>,
// /mnt/models/<name>, /mnt/output (a DataRef with no volume stays a path inside the image).
ResolvedPaths MountedPaths(const JobSpec& spec);

// How folder `a` overlaps folder `b` (named `b_name` in the text): "" when they are apart, else
// e.g. "\"out/x\" is inside spec.inputs[0].source". Compared component by component after
// lexical normalization ("a/./b/" is "a/b"; "" and "." are the root of their volume).
std::string FolderOverlap(const std::string& a, const std::string& b, const std::string& b_name);

// The overlap rule of ParseJobSpec on the folders as resolved on this machine, symbolic links
// followed (the output folder may not exist yet: its nearest existing ancestor is resolved): the
// output folder apart from the code folder and every input, the code folder apart from every
// input. InvalidArgument naming both fields and folders.
Status CheckResolvedFoldersApart(const JobSpec& spec, const ResolvedPaths& paths);

// The value of PARALLELRUN_MODELS, which the azureml.core.Model stand-in reads:
// {"<name>": {"version": "<version>" | null, "path": "<path>"}, ...} (compact JSON), with each
// path from `paths` (name -> where the worker processes see the model).
std::string ModelsEnvValue(const JobSpec& spec, const std::map<std::string, std::string>& paths);

// Expands $(inputs.X), $(sideInputs.X) and $(output) in spec.arguments.
std::vector<std::string> ExpandArguments(const JobSpec& spec, const ResolvedPaths& paths);

}  // namespace parallelrun::rt
