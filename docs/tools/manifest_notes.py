"""Hand-written part of docs/manifest-reference.md: what the CRD cannot say.

Everything else in the reference (field names, types, defaults, enums, ranges, patterns and the
descriptions) comes from crds/parallelrun.io_parallelrunjobs.yaml, which tests/crd proves equal to
the C++ job-spec model. Keys below are field paths under `spec` (`inputs[].source.path`);
gen_manifest_reference.py refuses a key that names no field of the CRD, so this table cannot drift.

Per field, all optional:
  description    used when the CRD has none
  note           appended to the CRD's description
  model_default  a default the job-spec model applies (the CRD cannot carry it)
  v1             the Azure ML ParallelRunConfig / ParallelRunStep (SDK v1) name
  v2             the Azure ML parallel job (SDK v2 / CLI v2 YAML `type: parallel`) name
Sources for the original names: ../shared/reference/prs-semantics.md (§1.1-1.3).
"""

# Top-level spec fields, grouped for reading. Every top-level field of the CRD must be in one
# group (the generator fails otherwise), in the order of the CRD within the group.
GROUPS = [
    ("What runs", ["entryScript", "sourceDirectory", "arguments", "image", "env"]),
    ("Data", ["volumes", "inputs", "sideInputs", "models", "output"]),
    ("Mini-batches, retries and failure limits",
     ["miniBatchSize", "errorThreshold", "allowedFailedCount", "allowedFailedPercent",
      "runInvocationTimeout", "runMaxTry", "progressUpdateTimeout", "initTimeout",
      "partitionKeys", "retryFrom"]),
    ("Output", ["outputAction", "appendRowFileName", "appendRowHeader"]),
    ("Scale and logs", ["nodeCount", "processCountPerNode", "loggingLevel",
                        "resourceMonitorInterval"]),
    ("Kubernetes pod fields (ignored in local mode, with one warning)",
     ["imagePullPolicy", "resources", "nodeSelector", "tolerations", "affinity",
      "serviceAccountName", "priorityClassName", "podLabels", "podAnnotations",
      "securityContext"]),
    ("Kubernetes job fields (batch/v1 Job semantics)",
     ["suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "backoffLimit"]),
]

FIELDS = {
    "entryScript": {
        "v1": "`entry_script`",
        "v2": "`task.entry_script`",
    },
    "sourceDirectory": {
        "v1": "`source_directory`",
        "v2": "`task.code`",
    },
    "volumes": {
        "note": "Locally a `hostPath` volume is used as is; any other kind is bound with "
                "`parallelrun run --volume NAME=DIR`.",
        "v1": "datastores / datasets",
        "v2": "`inputs`/`outputs` `path`",
    },
    "volumes[].name": {
        "note": "Referenced by the `volume` of a data reference.",
    },
    "inputs": {
        "v1": "`ParallelRunStep(inputs=...)`",
        "v2": "`inputs` + `input_data`",
    },
    "inputs[].name": {
        "v1": "`as_named_input(name)`",
        "v2": "key under `inputs`",
    },
    "inputs[].type": {
        "v1": "`FileDataset` / `TabularDataset`",
        "v2": "`uri_folder` / `mltable`",
    },
    "inputs[].source": {
        "note": "Its folder is walked in byte order of names, following symbolic links. Entries "
                "that are not regular files (FIFOs, sockets, devices) and dangling symbolic "
                "links are left out with one warning listing them.",
        "v1": "dataset path",
        "v2": "`inputs.<name>.path`",
    },
    "inputs[].pattern": {
        "v1": "a glob in `Dataset.File.from_files(path=...)`",
    },
    "inputs[].format": {
        "v1": "`Dataset.Tabular.from_delimited_files` / `from_json_lines_files`",
        "v2": "MLTable `read_delimited` / `read_json_lines`",
    },
    "inputs[].header": {
        "model_default": "`true` on tabular inputs",
        "v1": "`from_delimited_files(header=...)`",
        "v2": "MLTable `read_delimited` `header`",
    },
    "inputs[].partitionFormat": {
        "note": "Files that do not match are left out with one warning naming them; no file "
                "matching is an error. See [partition keys](entry-scripts.md#partition-keys).",
        "v1": "`Dataset.File.from_files(partition_format=...)`",
        "v2": "MLTable `extract_columns_from_partition_format`",
    },
    "sideInputs": {
        "v1": "`side_inputs`",
        "v2": "an ordinary entry of `inputs`",
    },
    "models": {
        "note": "Worker processes get `AZUREML_MODEL_DIR` (the models' root) and "
                "`PARALLELRUN_MODELS` (JSON: each model's version and path). In a pod a model with "
                "no `volume` stays at its path in the image (named in `PARALLELRUN_MODELS`, not "
                "under `/mnt/models`). Locally the root is a folder of the run with one symbolic "
                "link per model (`<name>` → its source), removed when the run ends. "
                "`azureml.core.Model.get_model_path(name, version)` resolves them when the Azure "
                "ML SDK is not installed; see "
                "[entry scripts](entry-scripts.md#azuremlcore-model-and-run).",
        "v1": "registered models read with `Model.get_model_path(name, version)` in `init()`",
        "v2": "a `custom_model` / `mlflow_model` input (`azureml:<name>:<version>`)",
    },
    "models[].name": {
        "v1": "`Model.register(model_name=...)`",
        "v2": "`<name>` of `azureml:<name>:<version>`",
    },
    "models[].version": {
        "note": "When set, `get_model_path(name, version=V)` must ask for this version (or none); "
                "the folder is not split by version.",
        "v1": "the registered model's `version`",
        "v2": "`<version>` of `azureml:<name>:<version>`",
    },
    "models[].source": {
        "note": "A model folder that holds a single file resolves to that file, as in Azure ML.",
        "v1": "`Model.register(model_path=...)`",
        "v2": "the model's `path`",
    },
    "output": {
        "note": "Must not be, hold or lie inside an input or `sourceDirectory` (compared by volume "
                "and path; locally also through `--volume` bindings and symbolic links). One run "
                "at a time writes it: a second is refused with `OutputInUse`.",
        "v1": "`ParallelRunStep(output=...)`",
        "v2": "`outputs`",
    },
    "arguments": {
        "note": "Scripts read them with `argparse`'s `parse_known_args`.",
        "v1": "`arguments`",
        "v2": "`task.program_arguments`",
    },
    "miniBatchSize": {
        "model_default": "`10` (file) / `1MB` (tabular)",
        "v1": "`mini_batch_size`",
        "v2": "`mini_batch_size`",
    },
    "errorThreshold": {
        "note": "As in Azure ML, a job with no succeeded item fails (`NoSucceededItems`) unless "
                "this is -1; with -1 it fails only if no mini-batch completed, so a `run()` that "
                "returns `[]` (a training script) succeeds.",
        "v1": "`error_threshold`",
        "v2": "`error_threshold` (or `--error_threshold`)",
    },
    "allowedFailedCount": {
        "note": "Checked as soon as a mini-batch fails for good.",
        "v1": "`allowed_failed_count`",
        "v2": "`mini_batch_error_threshold`",
    },
    "allowedFailedPercent": {
        "v1": "`allowed_failed_percent`",
        "v2": "`--allowed_failed_percent`",
    },
    "outputAction": {
        "v1": "`output_action`",
        "v2": "`task.append_row_to` set / unset",
    },
    "appendRowFileName": {
        "v1": "`append_row_file_name`",
        "v2": "`task.append_row_to`",
    },
    "appendRowHeader": {
        "v1": "`--append_row_dataframe_header True`",
        "v2": "`--append_row_dataframe_header True`",
    },
    "nodeCount": {
        "note": "Locally: agent processes (`parallelrun run --nodes N` overrides it).",
        "v1": "`node_count`",
        "v2": "`resources.instance_count`",
    },
    "processCountPerNode": {
        "v1": "`process_count_per_node`",
        "v2": "`max_concurrency_per_instance`",
    },
    "loggingLevel": {
        "v1": "`logging_level`",
        "v2": "`logging_level`",
    },
    "runInvocationTimeout": {
        "note": "A longer call is killed with its worker process and recorded as `RUN_TIMEOUT`.",
        "v1": "`run_invocation_timeout`",
        "v2": "`retry_settings.timeout`",
    },
    "runMaxTry": {
        "note": "Counts attempts, the first one included.",
        "v1": "`run_max_try`",
        "v2": "`retry_settings.max_retries`",
    },
    "progressUpdateTimeout": {
        "model_default": "3 × (`runInvocationTimeout` + 30)",
        "v1": "`--progress_update_timeout`",
        "v2": "`--progress_update_timeout`",
    },
    "initTimeout": {
        "model_default": "max(600, `runInvocationTimeout` + 30)",
    },
    "resourceMonitorInterval": {
        "v1": "`--resource_monitor_interval`",
        "v2": "`--resource_monitor_interval`",
    },
    "partitionKeys": {
        "note": "Setting `miniBatchSize` too is an error (Azure ML lets partition_keys win "
                "silently). Tabular: a file without one of the columns is an error naming both. "
                "See [partition keys](entry-scripts.md#partition-keys).",
        "v1": "`partition_keys`",
        "v2": "`partition_keys`",
    },
    "retryFrom": {
        "note": "See [getting started](getting-started.md#run-only-what-failed).",
        "v2": "resume (documented as under development)",
    },
    "image": {
        "model_default": "the operator's `--default-image`",
        "v1": "`environment` (its Docker image)",
        "v2": "`task.environment`",
    },
    "imagePullPolicy": {
        "description": "Kubernetes image pull policy of every container.",
    },
    "resources": {
        "note": "GPUs: `{limits: {nvidia.com/gpu: N}}`; see [operations](operations.md#gpus).",
        "v1": "`compute_target` (its VM size)",
        "v2": "`resources.instance_type`",
    },
    "env": {
        "note": "Local mode applies it too: the agents and worker processes get these variables "
                "(in order, `$(NAME)` expanded from earlier entries as Kubernetes does); a "
                "`valueFrom` entry cannot be resolved locally and is left out with a warning.",
        "v1": "`environment_variables`",
        "v2": "`environment_variables`",
    },
    "nodeSelector": {
        "description": "Kubernetes node selector of every pod.",
    },
    "serviceAccountName": {
        "description": "Service account of every pod.",
    },
    "priorityClassName": {
        "description": "PriorityClass of every pod.",
    },
    "suspend": {
        "note": "See [operations](operations.md#suspend-resume-and-kueue).",
    },
    "backoffLimit": {
        "note": "Restarts resume from the journal.",
    },
}

# Descriptions of status fields the CRD leaves undescribed (keys are paths under `status`).
STATUS_FIELDS = {
    "phase": {"description": "Where the job is in its life."},
    "conditions[].type": {
        "description": "Scheduled, Running, Complete, Failed or Suspended."},
    "conditions[].status": {"description": "Whether the condition holds."},
    "conditions[].reason": {
        "description": "InvalidSpec, Unschedulable, FailedMount, ImagePullBackOff, InitFailed, "
                       "ErrorThresholdExceeded, AllowedFailedPercentExceeded, NoSucceededItems, "
                       "NoProgress, DeadlineExceeded, BackoffLimitExceeded, OutputInUse, "
                       "OutputNotWritable, Suspended or Completed."},
    "conditions[].message": {"description": "What happened, in words."},
    "conditions[].lastTransitionTime": {"description": "When `status` last changed."},
    "conditions[].observedGeneration": {
        "description": "The metadata.generation the condition was computed for."},
    "startTime": {"description": "When the job started running."},
    "completionTime": {"description": "When the job finished."},
    "miniBatches": {"description": "Mini-batch counts."},
    "miniBatches.total": {"description": "Mini-batches planned so far."},
    "miniBatches.failed": {"description": "Mini-batches that failed after all tries."},
    "miniBatches.running": {"description": "Mini-batches leased to a worker now."},
    "miniBatches.retried": {
        "description": "Failed attempts that were tried again, over all mini-batches."},
    "items": {"description": "Item counts (files or rows)."},
    "items.total": {"description": "Items planned so far."},
    "items.succeeded": {"description": "Items that succeeded."},
    "items.failed": {"description": "Items that failed."},
    "nodes": {"description": "Worker nodes."},
    "nodes.desired": {"description": "`spec.nodeCount`."},
    "estimatedCompletionTime": {"description": "When the job should end, at the current pace."},
    "outputFile": {"description": "Path of the append_row output file."},
    "message": {"description": "The job's state in words; when it failed, why."},
}

# Names for the CRD's patterns; a pattern not named here is listed as "pattern N".
PATTERN_NAMES = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "DNS label",
    r"^(\.?[^/.\x00][^/\x00]*|\.\.[^/\x00]+|\.)(/(\.?[^/.\x00][^/\x00]*|\.\.[^/\x00]+|\.)?)*$":
        "relative path",
    r"^((\.?[^/.\x00][^/\x00]*|\.\.[^/\x00]+|\.)(/(\.?[^/.\x00][^/\x00]*|\.\.[^/\x00]+|\.)?)*/)?"
    r"[^/\x00]+\.(py|so)$": "entry script",
    r"^0*[1-9][0-9]*([kKmMgG][bB])?$": "mini-batch size",
    r"^(\.?[^/.\x00][^/\x00]*|\.\.[^/\x00]+)$": "file name",
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$": "model name",
}

PATTERN_MEANINGS = {
    "DNS label": "lower-case letters, digits and `-`, starting and ending with a letter or digit.",
    "relative path": "a path inside the volume: no leading `/`, no `..` component; `.` is the "
                     "whole volume.",
    "entry script": "a relative path ending in `.py` (Python host) or `.so` (native host).",
    "mini-batch size": "a positive number with an optional `KB`, `MB` or `GB` unit (any case, "
                       "powers of 1024); a unit is allowed on tabular inputs only.",
    "file name": "a plain file name: no `/`, not `.` or `..`.",
    "model name": "Azure ML's rule for model names and versions: a letter or digit, then "
                  "letters, digits, `_`, `-` or `.`.",
}

# Rules the job-spec model checks and a schema cannot express (the CRD's header says the same).
MODEL_ONLY_RULES = [
    "`metadata.name`: 3 to 32 characters matching `^[a-z]([-a-z0-9]*[a-z0-9])?$` (the name "
    "rule of the original `ParallelRunStep`).",
    "`miniBatchSize`, `progressUpdateTimeout` and `initTimeout` defaults, which depend on other "
    "fields, and "
    "`miniBatchSize`'s unit rule: a count for file inputs, a size for tabular inputs.",
    "Every `volume` of a data reference names an entry of `spec.volumes`; volume names are "
    "unique; input and side-input names share one namespace and are unique in it.",
    "All inputs have the same `type`; `format` and `header` are allowed on tabular inputs only.",
    "`partitionKeys`: names non-empty and unique, no `miniBatchSize` with them; every file input "
    "has a `partitionFormat` (allowed only with `partitionKeys`) that parses and captures every "
    "key; no `partitionKeys` on tabular inputs with a native (`.so`) entry script.",
    "`$(inputs.NAME)`, `$(sideInputs.NAME)` and `$(output)` in `arguments` name existing inputs.",
    "Model names are unique; with `models`, `env` may not set `AZUREML_MODEL_DIR` or "
    "`PARALLELRUN_MODELS` (the job sets them).",
    "Kubernetes sub-objects (`volumes` entries, `resources`, `env`, `tolerations`, `affinity`, "
    "`securityContext`) are checked by the API server when the operator creates the pods; a "
    "rejection ends the job with reason `InvalidSpec` and the API server's message.",
]

# The reverse direction: every setting of Azure ML's ParallelRunConfig / ParallelRunStep (v1) and
# parallel job (v2) and where it goes here. `spec.X` references must name fields of the CRD (the
# generator checks them).
AZURE_ML_V1 = [
    ("`ParallelRunConfig(environment=...)`",
     "`spec.image` (the Docker image; Python packages are the image's)"),
    ("`entry_script`", "`spec.entryScript`"),
    ("`source_directory`", "`spec.sourceDirectory`"),
    ("`error_threshold`", "`spec.errorThreshold`"),
    ("`output_action`", "`spec.outputAction`"),
    ("`compute_target`", "the cluster and `spec.resources`, `spec.nodeSelector`, "
                         "`spec.tolerations`"),
    ("`node_count`", "`spec.nodeCount`"),
    ("`process_count_per_node`", "`spec.processCountPerNode`"),
    ("`mini_batch_size`", "`spec.miniBatchSize`"),
    ("`description`", "`metadata.annotations`"),
    ("`logging_level`", "`spec.loggingLevel`"),
    ("`run_invocation_timeout`", "`spec.runInvocationTimeout`"),
    ("`run_max_try`", "`spec.runMaxTry`"),
    ("`append_row_file_name`", "`spec.appendRowFileName`"),
    ("`allowed_failed_count`", "`spec.allowedFailedCount`"),
    ("`allowed_failed_percent`", "`spec.allowedFailedPercent`"),
    ("`partition_keys`", "`spec.partitionKeys` (file inputs: `inputs[].partitionFormat`)"),
    ("`environment_variables`", "`spec.env` (applied in local mode too)"),
    ("`ParallelRunStep(name=...)`", "`metadata.name` (same rule: 3 to 32 characters)"),
    ("`inputs`", "`spec.inputs` (`FileDataset` → `type: file`, `TabularDataset` → "
                 "`type: tabular`)"),
    ("`output`", "`spec.output`"),
    ("`side_inputs`", "`spec.sideInputs` (path passed with `$(sideInputs.NAME)`)"),
    ("`arguments`", "`spec.arguments`"),
    ("`allow_reuse`", "— (a finished output is never rerun: `--restart` or `spec.retryFrom`)"),
    ("registered models, `Model.get_model_path(name, version)`", "`spec.models`"),
    ("`Run.get_context().log(...)` and the other metrics calls",
     "`logs/user/metrics/<node>/<process>.jsonl` (no Azure service)"),
    ("`--progress_update_timeout`", "`spec.progressUpdateTimeout`"),
    ("`--resource_monitor_interval`", "`spec.resourceMonitorInterval`"),
    ("`--append_row_dataframe_header True`", "`spec.appendRowHeader`"),
    ("`--first_task_creation_timeout`", "— (`spec.initTimeout` bounds each worker's `init()`)"),
]

AZURE_ML_V2 = [
    ("`type: parallel`", "`kind: ParallelRunJob`"),
    ("`inputs` + `input_data`", "`spec.inputs` (`uri_folder` → `type: file`, `mltable` → "
                                "`type: tabular`)"),
    ("other entries of `inputs`", "`spec.sideInputs`"),
    ("`custom_model` / `mlflow_model` inputs", "`spec.models`"),
    ("`outputs`", "`spec.output`"),
    ("`mini_batch_size`", "`spec.miniBatchSize`"),
    ("`partition_keys`", "`spec.partitionKeys` (file inputs: `inputs[].partitionFormat`)"),
    ("`resources.instance_count`", "`spec.nodeCount`"),
    ("`resources.instance_type`", "`spec.resources`, `spec.nodeSelector`"),
    ("`max_concurrency_per_instance`", "`spec.processCountPerNode`"),
    ("`mini_batch_error_threshold`", "`spec.allowedFailedCount`"),
    ("`error_threshold`", "`spec.errorThreshold`"),
    ("`retry_settings.max_retries`", "`spec.runMaxTry` (attempts: `max_retries` + 1)"),
    ("`retry_settings.timeout`", "`spec.runInvocationTimeout`"),
    ("`logging_level`", "`spec.loggingLevel`"),
    ("`environment_variables`", "`spec.env`"),
    ("`task.code`", "`spec.sourceDirectory`"),
    ("`task.entry_script`", "`spec.entryScript`"),
    ("`task.environment`", "`spec.image`"),
    ("`task.program_arguments`", "`spec.arguments`"),
    ("`task.append_row_to`", "`spec.outputAction: append_row` and `spec.appendRowFileName`"),
    ("`compute`", "the cluster (and `spec.nodeSelector`)"),
    ("`is_deterministic`", "— (see `allow_reuse` above)"),
]
