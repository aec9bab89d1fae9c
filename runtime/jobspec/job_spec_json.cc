// ToJson: the defaulted JobSpec back in the CR form (job_spec.h). Every field the model defaults is
// written, so the operator's pods see the same values the CLI would; optional ones only when set.

#include <utility>

#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt {
namespace {

using nlohmann::json;

json DataRefJson(const DataRef& ref) {
  json out = json::object();
  if (!ref.volume.empty()) out["volume"] = ref.volume;
  out["path"] = ref.path;
  return out;
}

json InputJson(const Input& in) {
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
  return j;
}

json MetadataJson(const JobSpec& spec) {
  json metadata = spec.metadata.is_object() ? spec.metadata : json::object();
  metadata["name"] = spec.name;
  if (!spec.namespace_.empty()) metadata["namespace"] = spec.namespace_;
  if (!spec.uid.empty()) metadata["uid"] = spec.uid;
  return metadata;
}

// entryScript, sourceDirectory, volumes, inputs, sideInputs, models, output and arguments.
void AddSources(const JobSpec& spec, json* s) {
  (*s)["entryScript"] = spec.entry_script;
  (*s)["sourceDirectory"] = DataRefJson(spec.source_directory);
  (*s)["volumes"] = spec.volumes;
  json inputs = json::array();
  for (const Input& in : spec.inputs) inputs.push_back(InputJson(in));
  (*s)["inputs"] = std::move(inputs);
  json side_inputs = json::array();
  for (const SideInput& side : spec.side_inputs) {
    side_inputs.push_back({{"name", side.name}, {"source", DataRefJson(side.source)}});
  }
  (*s)["sideInputs"] = std::move(side_inputs);
  if (!spec.models.empty()) {
    json models = json::array();
    for (const Model& m : spec.models) {
      json j = {{"name", m.name}};
      if (!m.version.empty()) j["version"] = m.version;
      j["source"] = DataRefJson(m.source);
      models.push_back(std::move(j));
    }
    (*s)["models"] = std::move(models);
  }
  (*s)["output"] = DataRefJson(spec.output);
  (*s)["arguments"] = spec.arguments;
}

// How the job runs: mini-batches, failure limits, output, processes, timeouts, retryFrom.
void AddRunSettings(const JobSpec& spec, json* s) {
  if (spec.partition_keys.empty()) {
    (*s)["miniBatchSize"] = spec.mini_batch_size_text;
  } else {
    (*s)["partitionKeys"] = spec.partition_keys;  // miniBatchSize does not apply
  }
  (*s)["errorThreshold"] = spec.error_threshold;
  (*s)["allowedFailedCount"] = spec.allowed_failed_count;
  (*s)["allowedFailedPercent"] = spec.allowed_failed_percent;
  (*s)["outputAction"] =
      spec.output_action == OutputAction::kAppendRow ? "append_row" : "summary_only";
  (*s)["appendRowFileName"] = spec.append_row_file_name;
  (*s)["appendRowHeader"] = spec.append_row_header;
  (*s)["nodeCount"] = spec.node_count;
  (*s)["processCountPerNode"] = spec.process_count_per_node;
  (*s)["loggingLevel"] = spec.logging_level;
  (*s)["runInvocationTimeout"] = spec.run_invocation_timeout;
  (*s)["runMaxTry"] = spec.run_max_try;
  (*s)["progressUpdateTimeout"] = spec.progress_update_timeout;
  (*s)["initTimeout"] = spec.init_timeout;
  (*s)["resourceMonitorInterval"] = spec.resource_monitor_interval;
  if (!spec.retry_from.empty()) (*s)["retryFrom"] = spec.retry_from;
}

// The Kubernetes pod fields (as given) and job fields.
void AddKubernetesFields(const JobSpec& spec, json* s) {
  if (spec.pod.is_object()) {
    for (const auto& [key, value] : spec.pod.items()) (*s)[key] = value;
  }
  (*s)["suspend"] = spec.suspend;
  if (spec.active_deadline_seconds) (*s)["activeDeadlineSeconds"] = *spec.active_deadline_seconds;
  if (spec.ttl_seconds_after_finished) {
    (*s)["ttlSecondsAfterFinished"] = *spec.ttl_seconds_after_finished;
  }
  (*s)["backoffLimit"] = spec.backoff_limit;
}

}  // namespace

nlohmann::json ToJson(const JobSpec& spec) {
  json s = json::object();
  AddSources(spec, &s);
  AddRunSettings(spec, &s);
  AddKubernetesFields(spec, &s);
  return json{{"apiVersion", spec.api_version},
              {"kind", spec.kind},
              {"metadata", MetadataJson(spec)},
              {"spec", std::move(s)}};
}

}  // namespace parallelrun::rt
