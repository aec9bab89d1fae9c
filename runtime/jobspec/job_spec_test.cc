#include "runtime/jobspec/job_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/jobspec/yaml_to_json.h"

namespace parallelrun::rt {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The example of SPEC.md §2.
constexpr const char* kSpecExample = R"yaml(apiVersion: parallelrun.io/v1alpha1
kind: ParallelRunJob
metadata:
  name: score-images            # 3-32 chars
spec:
  entryScript: score.py         # relative to sourceDirectory
  sourceDirectory: {volume: data, path: code/scorer/}
  volumes:                      # ordinary Kubernetes volumes, referenced by name below
    - name: data                # read-write-many when nodeCount > 1 (every pod writes output)
      persistentVolumeClaim: {claimName: images}
  inputs:
    - name: images
      type: file                # file | tabular
      source: {volume: data, path: incoming/}
      pattern: "*.jpg"          # optional glob, file inputs
  sideInputs:
    - name: model
      source: {volume: data, path: models/resnet/}
  output: {volume: data, path: runs/score-images/}
  arguments: ["--model-dir", "$(sideInputs.model)", "--threshold", "0.7"]
  miniBatchSize: "10"           # file: count; tabular: size, e.g. 1MB
  errorThreshold: 10
  outputAction: append_row      # append_row | summary_only
  appendRowFileName: parallel_run_step.txt
  nodeCount: 4
  processCountPerNode: 2
  loggingLevel: INFO            # WARNING | INFO | DEBUG
  runInvocationTimeout: 60
  runMaxTry: 3
  image: parallelrun:0.1        # default from the operator's --default-image
  resources: {limits: {nvidia.com/gpu: 2}}
)yaml";

// The smallest valid manifest, as JSON so tests can change one thing at a time.
json MinimalManifest() {
  return json::parse(R"({
    "apiVersion": "parallelrun.io/v1alpha1",
    "kind": "ParallelRunJob",
    "metadata": {"name": "my-job"},
    "spec": {
      "entryScript": "score.py",
      "sourceDirectory": {"path": "code"},
      "inputs": [{"name": "images", "type": "file", "source": {"path": "in"}}],
      "output": {"path": "out"}
    }
  })");
}

json TabularManifest() {
  json m = MinimalManifest();
  m["spec"]["inputs"][0] = {{"name", "rows"}, {"type", "tabular"}, {"source", {{"path", "in"}}}};
  return m;
}

StatusOr<JobSpec> ParseJson(const json& manifest, std::vector<FieldError>* errors = nullptr) {
  return ParseJobSpec(manifest.dump(), "job.yaml", errors);
}

std::vector<std::string> ErrorStrings(const std::vector<FieldError>& errors) {
  std::vector<std::string> out;
  for (const FieldError& e : errors) out.push_back(e.ToString());
  return out;
}

TEST(JobSpecTest, SpecExampleParsesWithEveryValue) {
  auto spec = ParseJobSpec(kSpecExample, "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->api_version, "parallelrun.io/v1alpha1");
  EXPECT_EQ(spec->kind, "ParallelRunJob");
  EXPECT_EQ(spec->name, "score-images");
  EXPECT_EQ(spec->namespace_, "");
  EXPECT_EQ(spec->entry_script, "score.py");
  EXPECT_FALSE(spec->is_native());
  EXPECT_EQ(spec->source_directory.volume, "data");
  EXPECT_EQ(spec->source_directory.path, "code/scorer/");
  ASSERT_EQ(spec->volumes.size(), 1u);
  EXPECT_EQ(spec->volumes[0]["persistentVolumeClaim"]["claimName"], "images");
  ASSERT_EQ(spec->inputs.size(), 1u);
  EXPECT_EQ(spec->inputs[0].name, "images");
  EXPECT_EQ(spec->inputs[0].type, InputType::kFile);
  EXPECT_EQ(spec->inputs[0].source.volume, "data");
  EXPECT_EQ(spec->inputs[0].source.path, "incoming/");
  EXPECT_EQ(spec->inputs[0].pattern, "*.jpg");
  ASSERT_EQ(spec->side_inputs.size(), 1u);
  EXPECT_EQ(spec->side_inputs[0].name, "model");
  EXPECT_EQ(spec->side_inputs[0].source.path, "models/resnet/");
  EXPECT_EQ(spec->output.volume, "data");
  EXPECT_EQ(spec->output.path, "runs/score-images/");
  EXPECT_THAT(spec->arguments,
              ElementsAre("--model-dir", "$(sideInputs.model)", "--threshold", "0.7"));
  EXPECT_EQ(spec->mini_batch_size_text, "10");
  EXPECT_EQ(spec->mini_batch_size, 10);
  EXPECT_EQ(spec->error_threshold, 10);
  EXPECT_EQ(spec->output_action, OutputAction::kAppendRow);
  EXPECT_EQ(spec->append_row_file_name, "parallel_run_step.txt");
  EXPECT_EQ(spec->node_count, 4);
  EXPECT_EQ(spec->process_count_per_node, 2);
  EXPECT_EQ(spec->logging_level, "INFO");
  EXPECT_EQ(spec->run_invocation_timeout, 60);
  EXPECT_EQ(spec->run_max_try, 3);
  EXPECT_EQ(spec->progress_update_timeout, 270);
  EXPECT_EQ(spec->pod["image"], "parallelrun:0.1");
  EXPECT_EQ(spec->pod["resources"]["limits"]["nvidia.com/gpu"], 2);
  EXPECT_FALSE(spec->pod.contains("env"));
}

TEST(JobSpecTest, DefaultsForAFileJob) {
  auto spec = ParseJson(MinimalManifest());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->input_type(), InputType::kFile);
  EXPECT_EQ(spec->mini_batch_size_text, "10");
  EXPECT_EQ(spec->mini_batch_size, 10);
  EXPECT_EQ(spec->error_threshold, -1);
  EXPECT_EQ(spec->allowed_failed_count, -1);
  EXPECT_EQ(spec->allowed_failed_percent, 100);
  EXPECT_EQ(spec->output_action, OutputAction::kAppendRow);
  EXPECT_EQ(spec->append_row_file_name, "parallel_run_step.txt");
  EXPECT_FALSE(spec->append_row_header);
  EXPECT_EQ(spec->node_count, 1);
  EXPECT_EQ(spec->process_count_per_node, 1);
  EXPECT_EQ(spec->logging_level, "INFO");
  EXPECT_EQ(spec->run_invocation_timeout, 60);
  EXPECT_EQ(spec->run_max_try, 3);
  EXPECT_EQ(spec->progress_update_timeout, 3 * (60 + 30));
  EXPECT_EQ(spec->resource_monitor_interval, 600);
  EXPECT_EQ(spec->retry_from, "");
  EXPECT_FALSE(spec->suspend);
  EXPECT_FALSE(spec->active_deadline_seconds.has_value());
  EXPECT_FALSE(spec->ttl_seconds_after_finished.has_value());
  EXPECT_EQ(spec->backoff_limit, 6);
  EXPECT_TRUE(spec->side_inputs.empty());
  EXPECT_TRUE(spec->arguments.empty());
  EXPECT_TRUE(spec->pod.empty());
  EXPECT_EQ(spec->source_directory.volume, "");
  EXPECT_EQ(spec->inputs[0].pattern, "");
}

TEST(JobSpecTest, DefaultsForATabularJob) {
  auto spec = ParseJson(TabularManifest());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->input_type(), InputType::kTabular);
  EXPECT_EQ(spec->mini_batch_size_text, "1MB");
  EXPECT_EQ(spec->mini_batch_size, 1048576);
  EXPECT_EQ(spec->inputs[0].format, TabularFormat::kAuto);
  EXPECT_TRUE(spec->inputs[0].header);
}

TEST(JobSpecTest, InputTypeDefaultsToFile) {
  json m = MinimalManifest();
  m["spec"]["inputs"][0].erase("type");
  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->inputs[0].type, InputType::kFile);
}

TEST(JobSpecTest, ProgressUpdateTimeoutDerivesFromRunInvocationTimeoutUnlessGiven) {
  json m = MinimalManifest();
  m["spec"]["runInvocationTimeout"] = 100;
  auto derived = ParseJson(m);
  ASSERT_TRUE(derived.ok()) << derived.status().ToString();
  EXPECT_EQ(derived->progress_update_timeout, 3 * (100 + 30));

  m["spec"]["progressUpdateTimeout"] = 45;
  auto given = ParseJson(m);
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->progress_update_timeout, 45);

  m["spec"].erase("progressUpdateTimeout");
  m["spec"]["runInvocationTimeout"] = 2147483647;
  auto huge = ParseJson(m);
  ASSERT_TRUE(huge.ok()) << huge.status().ToString();
  EXPECT_EQ(huge->progress_update_timeout, 2147483647);  // clamped, not overflowed
}

TEST(JobSpecTest, InitTimeoutIsAtLeast600AndFollowsRunInvocationTimeoutUnlessGiven) {
  json m = MinimalManifest();
  auto plain = ParseJson(m);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->init_timeout, 600);

  m["spec"]["runInvocationTimeout"] = 1000;
  auto derived = ParseJson(m);
  ASSERT_TRUE(derived.ok()) << derived.status().ToString();
  EXPECT_EQ(derived->init_timeout, 1030);
  EXPECT_EQ(ToJson(*derived)["spec"]["initTimeout"], 1030);

  m["spec"]["initTimeout"] = 20;
  auto given = ParseJson(m);
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->init_timeout, 20);

  m["spec"].erase("initTimeout");
  m["spec"]["runInvocationTimeout"] = 2147483647;
  auto huge = ParseJson(m);
  ASSERT_TRUE(huge.ok()) << huge.status().ToString();
  EXPECT_EQ(huge->init_timeout, 2147483647);  // clamped, not overflowed
}

TEST(JobSpecTest, EveryOptionalFieldIsRead) {
  json m = TabularManifest();
  json& s = m["spec"];
  s["volumes"] = json::parse(R"([{"name": "host", "hostPath": {"path": "/data"}}])");
  s["inputs"][0]["source"] = {{"volume", "host"}, {"path", "tables"}};
  s["inputs"][0]["pattern"] = "**.csv";
  s["inputs"][0]["format"] = "csv";
  s["inputs"][0]["header"] = false;
  s["inputs"].push_back(
      {{"name", "more"}, {"type", "tabular"}, {"source", {{"path", "more"}}}, {"format", "jsonl"}});
  s["miniBatchSize"] = "512kb";
  s["errorThreshold"] = 2147483647;
  s["allowedFailedCount"] = 5;
  s["allowedFailedPercent"] = 0;
  s["outputAction"] = "summary_only";
  s["appendRowFileName"] = "rows.txt";
  s["appendRowHeader"] = true;
  s["loggingLevel"] = "DEBUG";
  s["runMaxTry"] = 1;
  s["resourceMonitorInterval"] = 0;
  s["retryFrom"] = "../old-run";
  s["imagePullPolicy"] = "Never";
  s["env"] = json::parse(R"([{"name": "A", "value": "1"}])");
  s["nodeSelector"] = {{"kubernetes.io/os", "linux"}};
  s["tolerations"] = json::array();
  s["affinity"] = json::object();
  s["serviceAccountName"] = "runner";
  s["priorityClassName"] = "high";
  s["podLabels"] = {{"team", "ml"}};
  s["podAnnotations"] = {{"note", "x"}};
  s["securityContext"] = {{"runAsUser", 1000}};
  s["suspend"] = true;
  s["activeDeadlineSeconds"] = 3600;
  s["ttlSecondsAfterFinished"] = 0;
  s["backoffLimit"] = 0;
  m["metadata"]["namespace"] = "team-a";
  m["metadata"]["uid"] = "1234-abcd";
  m["metadata"]["labels"] = {{"app", "x"}};
  m["status"] = {{"phase", "Running"}, {"whatever", 1}};

  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->inputs[0].format, TabularFormat::kCsv);
  EXPECT_FALSE(spec->inputs[0].header);
  EXPECT_EQ(spec->inputs[0].pattern, "**.csv");
  EXPECT_EQ(spec->inputs[1].format, TabularFormat::kJsonl);
  EXPECT_EQ(spec->mini_batch_size, 512 * 1024);
  EXPECT_EQ(spec->mini_batch_size_text, "512kb");
  EXPECT_EQ(spec->error_threshold, 2147483647);
  EXPECT_EQ(spec->allowed_failed_count, 5);
  EXPECT_EQ(spec->allowed_failed_percent, 0);
  EXPECT_EQ(spec->output_action, OutputAction::kSummaryOnly);
  EXPECT_EQ(spec->append_row_file_name, "rows.txt");
  EXPECT_TRUE(spec->append_row_header);
  EXPECT_EQ(spec->logging_level, "DEBUG");
  EXPECT_EQ(spec->run_max_try, 1);
  EXPECT_EQ(spec->resource_monitor_interval, 0);
  EXPECT_EQ(spec->retry_from, "../old-run");
  EXPECT_EQ(spec->pod.size(), 10u);
  EXPECT_EQ(spec->pod["nodeSelector"]["kubernetes.io/os"], "linux");
  EXPECT_TRUE(spec->suspend);
  EXPECT_EQ(spec->active_deadline_seconds, 3600);
  EXPECT_EQ(spec->ttl_seconds_after_finished, 0);
  EXPECT_EQ(spec->backoff_limit, 0);
  EXPECT_EQ(spec->namespace_, "team-a");
  EXPECT_EQ(spec->uid, "1234-abcd");
  EXPECT_EQ(spec->metadata["labels"]["app"], "x");
}

TEST(JobSpecTest, NativeEntryScript) {
  json m = MinimalManifest();
  m["spec"]["entryScript"] = "lib/libscore.so";
  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_TRUE(spec->is_native());
}

TEST(JobSpecTest, NullMeansNotSet) {
  auto spec = ParseJobSpec(R"(apiVersion: parallelrun.io/v1alpha1
kind: ParallelRunJob
metadata: {name: my-job}
spec:
  entryScript: score.py
  sourceDirectory: {path: code}
  inputs: [{name: a, source: {path: in}}]
  output: {path: out}
  nodeCount:
  sideInputs: ~
  image: null
)",
                           "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->node_count, 1);
  EXPECT_FALSE(spec->pod.contains("image"));
}

// One broken rule per row: exactly one error, at `path`, whose text contains `message`.
struct RuleCase {
  const char* name;
  std::function<void(json&)> mutate;
  const char* path;
  const char* message;
};

class RuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(RuleTest, ReportsOneErrorAtThePath) {
  const RuleCase& c = GetParam();
  json m = MinimalManifest();
  c.mutate(m);
  std::vector<FieldError> errors;
  auto spec = ParseJson(m, &errors);
  ASSERT_FALSE(spec.ok()) << c.name;
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(errors.size(), 1u) << spec.status().message();
  EXPECT_EQ(errors[0].path, c.path);
  EXPECT_THAT(errors[0].ToString(), HasSubstr(c.message));
  EXPECT_THAT(spec.status().message(), HasSubstr("  - " + errors[0].ToString()));
}

json& Spec(json& m) { return m["spec"]; }
json& In0(json& m) { return m["spec"]["inputs"][0]; }
void AddVolume(json& m) {
  Spec(m)["volumes"] =
      json::parse(R"([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}])");
}

const RuleCase kRuleCases[] = {
    // Envelope.
    {"ApiVersion", [](json& m) { m["apiVersion"] = "v1"; }, "apiVersion",
     R"(apiVersion: got "v1", expected "parallelrun.io/v1alpha1")"},
    {"ApiVersionMissing", [](json& m) { m.erase("apiVersion"); }, "apiVersion",
     "apiVersion: missing, expected"},
    {"Kind", [](json& m) { m["kind"] = "Job"; }, "kind",
     R"(kind: got "Job", expected "ParallelRunJob")"},
    {"MetadataMissing", [](json& m) { m.erase("metadata"); }, "metadata",
     "metadata: missing, expected a mapping"},
    {"NameMissing", [](json& m) { m["metadata"].erase("name"); }, "metadata.name",
     "metadata.name: missing, expected a name of 3 to 32 characters"},
    {"NameTooShort", [](json& m) { m["metadata"]["name"] = "ab"; }, "metadata.name",
     R"(got "ab", expected a name of 3 to 32)"},
    {"NameTooLong", [](json& m) { m["metadata"]["name"] = std::string(33, 'a'); }, "metadata.name",
     "expected a name of 3 to 32"},
    {"NameUppercase", [](json& m) { m["metadata"]["name"] = "My-job"; }, "metadata.name",
     "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
    {"NameStartsWithDigit", [](json& m) { m["metadata"]["name"] = "1job"; }, "metadata.name",
     "expected a name"},
    {"NameEndsWithDash", [](json& m) { m["metadata"]["name"] = "job-"; }, "metadata.name",
     "expected a name"},
    {"NamespaceNotString", [](json& m) { m["metadata"]["namespace"] = 3; }, "metadata.namespace",
     "got 3, expected a string"},
    {"SpecMissing", [](json& m) { m.erase("spec"); }, "spec", "spec: missing, expected a mapping"},
    {"TopLevelTypo", [](json& m) { m["sepc"] = json::object(); }, "sepc",
     "sepc: unknown field (did you mean spec?)"},
    // entryScript.
    {"EntryScriptMissing", [](json& m) { Spec(m).erase("entryScript"); }, "spec.entryScript",
     "spec.entryScript: missing, expected a string"},
    {"EntryScriptAbsolute", [](json& m) { Spec(m)["entryScript"] = "/abs/score.py"; },
     "spec.entryScript", "expected a relative path to a .py or .so file"},
    {"EntryScriptDotDot", [](json& m) { Spec(m)["entryScript"] = "../score.py"; },
     "spec.entryScript", "expected a relative path"},
    {"EntryScriptExtension", [](json& m) { Spec(m)["entryScript"] = "score.sh"; },
     "spec.entryScript", R"(got "score.sh")"},
    {"EntryScriptNotString", [](json& m) { Spec(m)["entryScript"] = 5; }, "spec.entryScript",
     "got 5, expected a string"},
    // DataRefs.
    {"SourceDirectoryMissing", [](json& m) { Spec(m).erase("sourceDirectory"); },
     "spec.sourceDirectory", "spec.sourceDirectory: missing, expected a mapping with a path"},
    {"DataRefPathMissing", [](json& m) { Spec(m)["output"] = json::object(); }, "spec.output.path",
     "spec.output.path: missing"},
    {"DataRefPathAbsolute", [](json& m) { Spec(m)["output"]["path"] = "/out"; }, "spec.output.path",
     "expected a relative path without '..'"},
    {"DataRefPathDotDot", [](json& m) { Spec(m)["output"]["path"] = "a/../../b"; },
     "spec.output.path", "expected a relative path without '..'"},
    {"DataRefPathEmpty", [](json& m) { Spec(m)["output"]["path"] = ""; }, "spec.output.path",
     "use . for the whole volume"},
    {"DataRefUnknownVolume",
     [](json& m) {
       AddVolume(m);
       Spec(m)["output"]["volume"] = "dta";
     },
     "spec.output.volume",
     R"(got "dta", expected the name of an entry of spec.volumes (data) (did you mean data?))"},
    {"DataRefVolumeWithoutVolumes", [](json& m) { Spec(m)["output"]["volume"] = "data"; },
     "spec.output.volume", "(there are none)"},
    {"DataRefUnknownField", [](json& m) { Spec(m)["output"]["pth"] = "x"; }, "spec.output.pth",
     "unknown field (did you mean path?), expected one of volume, path"},
    {"DataRefNotMapping", [](json& m) { Spec(m)["output"] = "out"; }, "spec.output",
     R"(got "out", expected a mapping)"},
    // volumes.
    {"VolumesNotList", [](json& m) { Spec(m)["volumes"] = json::object(); }, "spec.volumes",
     "expected a list of Kubernetes volumes"},
    {"VolumeWithoutName",
     [](json& m) { Spec(m)["volumes"] = json::parse(R"([{"emptyDir": {}}])"); },
     "spec.volumes[0].name", "missing, expected a DNS label"},
    {"VolumeBadName",
     [](json& m) { Spec(m)["volumes"] = json::parse(R"([{"name": "Data", "emptyDir": {}}])"); },
     "spec.volumes[0].name", "expected a DNS label"},
    {"VolumeDuplicateName",
     [](json& m) {
       Spec(m)["volumes"] = json::parse(R"([{"name": "a", "emptyDir": {}}, {"name": "a"}])");
     },
     "spec.volumes[1].name", "a name not used by another volume"},
    // inputs.
    {"InputsMissing", [](json& m) { Spec(m).erase("inputs"); }, "spec.inputs",
     "missing, expected a list of at least one input"},
    {"InputsEmpty", [](json& m) { Spec(m)["inputs"] = json::array(); }, "spec.inputs",
     "got [], expected a list of at least one input"},
    {"InputNameMissing", [](json& m) { In0(m).erase("name"); }, "spec.inputs[0].name",
     "missing, expected a DNS label"},
    {"InputNameNotDnsLabel", [](json& m) { In0(m)["name"] = "my_images"; }, "spec.inputs[0].name",
     R"(got "my_images", expected a DNS label)"},
    {"InputNameTooLong", [](json& m) { In0(m)["name"] = std::string(64, 'a'); },
     "spec.inputs[0].name", "expected a DNS label (1 to 63"},
    {"InputNamesUnique", [](json& m) { Spec(m)["inputs"].push_back(In0(m)); },
     "spec.inputs[1].name", "a name not used by another input or side input (spec.inputs[0].name)"},
    {"InputAndSideInputNamesUnique",
     [](json& m) {
       Spec(m)["sideInputs"] = json::parse(R"([{"name": "images", "source": {"path": "m"}}])");
     },
     "spec.sideInputs[0].name", "(spec.inputs[0].name)"},
    {"InputType", [](json& m) { In0(m)["type"] = "Tabular"; }, "spec.inputs[0].type",
     R"(got "Tabular", expected one of file, tabular (did you mean tabular?))"},
    {"InputTypesDiffer",
     [](json& m) {
       Spec(m)["inputs"].push_back(
           {{"name", "b"}, {"type", "tabular"}, {"source", {{"path", "b"}}}});
     },
     "spec.inputs[1].type", R"(expected "file", the type of the first input)"},
    {"InputSourceMissing", [](json& m) { In0(m).erase("source"); }, "spec.inputs[0].source",
     "missing, expected a mapping with a path"},
    {"InputPatternNotString", [](json& m) { In0(m)["pattern"] = json::array({"*.jpg"}); },
     "spec.inputs[0].pattern", "expected a glob"},
    {"InputFormatOnFileInput", [](json& m) { In0(m)["format"] = "csv"; }, "spec.inputs[0].format",
     "no format on a file input"},
    {"InputHeaderOnFileInput", [](json& m) { In0(m)["header"] = true; }, "spec.inputs[0].header",
     "no header on a file input"},
    {"InputFormat",
     [](json& m) {
       In0(m)["type"] = "tabular";
       In0(m)["format"] = "parquet";
     },
     "spec.inputs[0].format", R"(got "parquet", expected one of csv, jsonl)"},
    {"InputHeaderNotBool",
     [](json& m) {
       In0(m)["type"] = "tabular";
       In0(m)["header"] = "false";
     },
     "spec.inputs[0].header", "expected true or false, without quotes"},
    {"InputUnknownField", [](json& m) { In0(m)["patern"] = "*"; }, "spec.inputs[0].patern",
     "unknown field (did you mean pattern?)"},
    {"InputNotMapping", [](json& m) { Spec(m)["inputs"][0] = "images"; }, "spec.inputs[0]",
     "expected a mapping with name, type and source"},
    // sideInputs.
    {"SideInputsNotList", [](json& m) { Spec(m)["sideInputs"] = "x"; }, "spec.sideInputs",
     "expected a list"},
    {"SideInputSourceMissing",
     [](json& m) { Spec(m)["sideInputs"] = json::parse(R"([{"name": "model"}])"); },
     "spec.sideInputs[0].source", "missing"},
    {"SideInputUnknownField",
     [](json& m) {
       Spec(m)["sideInputs"] =
           json::parse(R"([{"name": "model", "source": {"path": "m"}, "type": "file"}])");
     },
     "spec.sideInputs[0].type", "unknown field, expected one of name, source"},
    // models.
    {"ModelsNotList", [](json& m) { Spec(m)["models"] = "iris"; }, "spec.models",
     "expected a list of models (name, version, source)"},
    {"ModelNotMapping", [](json& m) { Spec(m)["models"] = json::array({"iris"}); },
     "spec.models[0]", "expected a mapping with name, source and optionally version"},
    {"ModelNameMissing",
     [](json& m) { Spec(m)["models"] = json::parse(R"([{"source": {"path": "m"}}])"); },
     "spec.models[0].name", "missing, expected 1 to 255 letters"},
    {"ModelBadName",
     [](json& m) {
       Spec(m)["models"] = json::parse(R"([{"name": "-iris", "source": {"path": "m"}}])");
     },
     "spec.models[0].name", R"(got "-iris", expected 1 to 255 letters, digits)"},
    {"ModelNameWithSlash",
     [](json& m) {
       Spec(m)["models"] = json::parse(R"([{"name": "a/b", "source": {"path": "m"}}])");
     },
     "spec.models[0].name", "starting with a letter or digit"},
    {"ModelNamesUnique",
     [](json& m) {
       Spec(m)["models"] = json::parse(R"([{"name": "iris", "source": {"path": "a"}},
                                           {"name": "iris", "source": {"path": "b"}}])");
     },
     "spec.models[1].name", "a name not used by another model (spec.models[0].name)"},
    {"ModelSourceMissing",
     [](json& m) { Spec(m)["models"] = json::parse(R"([{"name": "iris"}])"); },
     "spec.models[0].source", "missing"},
    {"ModelVersionNumber",
     [](json& m) {
       Spec(m)["models"] =
           json::parse(R"([{"name": "iris", "version": 2, "source": {"path": "m"}}])");
     },
     "spec.models[0].version", "got 2, expected a version string such as \"1\""},
    {"ModelVersionBad",
     [](json& m) {
       Spec(m)["models"] =
           json::parse(R"([{"name": "iris", "version": "v 2", "source": {"path": "m"}}])");
     },
     "spec.models[0].version", R"(got "v 2", expected a version string)"},
    {"ModelUnknownField",
     [](json& m) {
       Spec(m)["models"] =
           json::parse(R"([{"name": "iris", "path": "m", "source": {"path": "m"}}])");
     },
     "spec.models[0].path", "unknown field, expected one of name, version, source"},
    {"ModelEnvSetTwice",
     [](json& m) {
       Spec(m)["models"] = json::parse(R"([{"name": "iris", "source": {"path": "m"}}])");
       Spec(m)["env"] = json::parse(R"([{"name": "A", "value": "1"},
                                        {"name": "AZUREML_MODEL_DIR", "value": "/m"}])");
     },
     "spec.env[1].name", "a variable other than AZUREML_MODEL_DIR and PARALLELRUN_MODELS"},
    // output.
    {"OutputMissing", [](json& m) { Spec(m).erase("output"); }, "spec.output",
     "spec.output: missing"},
    // Folders apart (issue 12): the output never inside an input or the code folder, nor the
    // code folder overlapping an input.
    {"OutputInsideInput", [](json& m) { Spec(m)["output"]["path"] = "in/./out/"; },
     "spec.output.path",
     R"(spec.output.path: "in/./out/" is inside spec.inputs[0].source, expected a folder apart )"
     R"(from spec.inputs[0].source ("in"))"},
    {"OutputHoldsInput", [](json& m) { In0(m)["source"]["path"] = "out/in"; }, "spec.output.path",
     R"("out" holds spec.inputs[0].source ("out/in"))"},
    {"OutputIsTheCodeFolder", [](json& m) { Spec(m)["output"]["path"] = "code/"; },
     "spec.output.path", R"("code/" is the same folder as spec.sourceDirectory)"},
    {"OutputIsTheVolumeRootOfTheInput",
     [](json& m) {
       AddVolume(m);
       Spec(m)["output"] = {{"volume", "data"}, {"path", "."}};
       In0(m)["source"] = {{"volume", "data"}, {"path", "images"}};
     },
     "spec.output.path",
     R"(holds spec.inputs[0].source ("images"), expected a folder apart )"
     R"(from spec.inputs[0].source ("images" in volume "data"))"},
    {"CodeFolderHoldsInput", [](json& m) { In0(m)["source"]["path"] = "code/data"; },
     "spec.sourceDirectory.path", R"("code" holds spec.inputs[0].source)"},
    // arguments.
    {"ArgumentsNotList", [](json& m) { Spec(m)["arguments"] = "--x"; }, "spec.arguments",
     "expected a list of strings"},
    {"ArgumentNotString",
     [](json& m) {
       Spec(m)["arguments"] = json::array({"--t", 0.7});
     },
     "spec.arguments[1]", "got 0.7, expected a string (quote it)"},
    {"ArgumentUnknownInput",
     [](json& m) { Spec(m)["arguments"] = json::array({"--in=$(inputs.imags)"}); },
     "spec.arguments[0]",
     "unknown reference $(inputs.imags) in \"--in=$(inputs.imags)\", expected a reference to an "
     "input (images) (did you mean images?)"},
    {"ArgumentUnknownSideInput",
     [](json& m) { Spec(m)["arguments"] = json::array({"$(sideInputs.model)"}); },
     "spec.arguments[0]", "expected a reference to a side input (there are none)"},
    {"ArgumentMalformedReference",
     [](json& m) { Spec(m)["arguments"] = json::array({"$(outputs)"}); }, "spec.arguments[0]",
     "malformed reference $(outputs)"},
    {"ArgumentUnclosedReference",
     [](json& m) { Spec(m)["arguments"] = json::array({"$(inputs.images"}); }, "spec.arguments[0]",
     "expected a closed reference"},
    // miniBatchSize.
    {"MiniBatchSizeZero", [](json& m) { Spec(m)["miniBatchSize"] = 0; }, "spec.miniBatchSize",
     "got 0, expected a positive count of files"},
    {"MiniBatchSizeUnitOnFileInput", [](json& m) { Spec(m)["miniBatchSize"] = "10MB"; },
     "spec.miniBatchSize", R"(got "10MB", expected a positive count of files such as 10)"},
    {"MiniBatchSizeFloat", [](json& m) { Spec(m)["miniBatchSize"] = 1.5; }, "spec.miniBatchSize",
     "got 1.5"},
    {"MiniBatchSizeTabularFraction",
     [](json& m) {
       In0(m)["type"] = "tabular";
       Spec(m)["miniBatchSize"] = "1.5MB";
     },
     "spec.miniBatchSize", R"(got "1.5MB", expected a positive size in bytes)"},
    {"MiniBatchSizeBool", [](json& m) { Spec(m)["miniBatchSize"] = true; }, "spec.miniBatchSize",
     "got true"},
    // Numbers.
    {"ErrorThresholdBelow", [](json& m) { Spec(m)["errorThreshold"] = -2; }, "spec.errorThreshold",
     "got -2, expected an integer from -1 to 2147483647"},
    {"ErrorThresholdAbove", [](json& m) { Spec(m)["errorThreshold"] = 2147483648LL; },
     "spec.errorThreshold", "expected an integer from -1 to 2147483647"},
    {"AllowedFailedCount", [](json& m) { Spec(m)["allowedFailedCount"] = -5; },
     "spec.allowedFailedCount", "got -5, expected an integer >= -1"},
    {"AllowedFailedPercentAbove", [](json& m) { Spec(m)["allowedFailedPercent"] = 101; },
     "spec.allowedFailedPercent", "got 101, expected an integer from 0 to 100"},
    {"AllowedFailedPercentFloat", [](json& m) { Spec(m)["allowedFailedPercent"] = 50.5; },
     "spec.allowedFailedPercent", "got 50.5, expected an integer from 0 to 100"},
    {"NodeCountZero", [](json& m) { Spec(m)["nodeCount"] = 0; }, "spec.nodeCount",
     "spec.nodeCount: got 0, expected an integer >= 1"},
    {"NodeCountFloat", [](json& m) { Spec(m)["nodeCount"] = 1.5; }, "spec.nodeCount",
     "spec.nodeCount: got 1.5, expected an integer >= 1"},
    {"NodeCountString", [](json& m) { Spec(m)["nodeCount"] = "3"; }, "spec.nodeCount",
     R"(spec.nodeCount: got "3", expected an integer >= 1, without quotes)"},
    {"NodeCountHuge", [](json& m) { Spec(m)["nodeCount"] = 1ULL << 63; }, "spec.nodeCount",
     "expected an integer from 1 to 2147483647"},
    {"ProcessCountPerNode", [](json& m) { Spec(m)["processCountPerNode"] = 0; },
     "spec.processCountPerNode", "expected an integer >= 1"},
    {"RunInvocationTimeout", [](json& m) { Spec(m)["runInvocationTimeout"] = 0; },
     "spec.runInvocationTimeout", "expected an integer >= 1"},
    {"RunMaxTry", [](json& m) { Spec(m)["runMaxTry"] = 0; }, "spec.runMaxTry",
     "expected an integer >= 1"},
    {"ProgressUpdateTimeout", [](json& m) { Spec(m)["progressUpdateTimeout"] = 0; },
     "spec.progressUpdateTimeout", "expected an integer >= 1"},
    {"InitTimeout", [](json& m) { Spec(m)["initTimeout"] = 0; }, "spec.initTimeout",
     "expected an integer >= 1"},
    {"InitTimeoutString", [](json& m) { Spec(m)["initTimeout"] = "10m"; }, "spec.initTimeout",
     "expected an integer"},
    {"ResourceMonitorInterval", [](json& m) { Spec(m)["resourceMonitorInterval"] = -1; },
     "spec.resourceMonitorInterval", "expected an integer >= 0"},
    {"ActiveDeadlineSeconds", [](json& m) { Spec(m)["activeDeadlineSeconds"] = 0; },
     "spec.activeDeadlineSeconds", "expected an integer >= 1"},
    {"TtlSecondsAfterFinished", [](json& m) { Spec(m)["ttlSecondsAfterFinished"] = -1; },
     "spec.ttlSecondsAfterFinished", "expected an integer >= 0"},
    {"BackoffLimit", [](json& m) { Spec(m)["backoffLimit"] = -1; }, "spec.backoffLimit",
     "expected an integer >= 0"},
    // Enums, booleans and strings.
    {"OutputAction", [](json& m) { Spec(m)["outputAction"] = "append-row"; }, "spec.outputAction",
     "expected one of append_row, summary_only (did you mean append_row?)"},
    {"AppendRowFileNameSlash", [](json& m) { Spec(m)["appendRowFileName"] = "a/b.txt"; },
     "spec.appendRowFileName", "expected a plain file name (no '/', not '.' or '..')"},
    {"AppendRowFileNameDotDot", [](json& m) { Spec(m)["appendRowFileName"] = ".."; },
     "spec.appendRowFileName", "expected a plain file name"},
    {"AppendRowFileNameEmpty", [](json& m) { Spec(m)["appendRowFileName"] = ""; },
     "spec.appendRowFileName", "expected a plain file name"},
    {"AppendRowHeader", [](json& m) { Spec(m)["appendRowHeader"] = "yes"; }, "spec.appendRowHeader",
     R"(got "yes", expected true or false)"},
    {"LoggingLevel", [](json& m) { Spec(m)["loggingLevel"] = "info"; }, "spec.loggingLevel",
     "expected one of WARNING, INFO, DEBUG (did you mean INFO?)"},
    {"RetryFrom", [](json& m) { Spec(m)["retryFrom"] = 1; }, "spec.retryFrom", "got 1"},
    {"Suspend", [](json& m) { Spec(m)["suspend"] = 1; }, "spec.suspend",
     "got 1, expected true or false"},
    // Kubernetes pod fields.
    {"Image", [](json& m) { Spec(m)["image"] = json::object(); }, "spec.image",
     "got {}, expected a string"},
    {"ImagePullPolicy", [](json& m) { Spec(m)["imagePullPolicy"] = "always"; },
     "spec.imagePullPolicy", "expected one of Always, IfNotPresent, Never (did you mean Always?)"},
    {"Resources", [](json& m) { Spec(m)["resources"] = json::array(); }, "spec.resources",
     "expected a mapping"},
    {"Env", [](json& m) { Spec(m)["env"] = json::object(); }, "spec.env", "expected a list"},
    {"NodeSelectorValue",
     [](json& m) {
       Spec(m)["nodeSelector"] = {{"kubernetes.io/os", 1}};
     },
     R"(spec.nodeSelector["kubernetes.io/os"])", "got 1, expected a string (quote it)"},
    {"Tolerations", [](json& m) { Spec(m)["tolerations"] = "x"; }, "spec.tolerations",
     "expected a list"},
    {"Affinity", [](json& m) { Spec(m)["affinity"] = 1; }, "spec.affinity", "expected a mapping"},
    {"ServiceAccountName", [](json& m) { Spec(m)["serviceAccountName"] = true; },
     "spec.serviceAccountName", "expected a string"},
    {"PriorityClassName", [](json& m) { Spec(m)["priorityClassName"] = 3; },
     "spec.priorityClassName", "expected a string"},
    {"PodLabels",
     [](json& m) {
       Spec(m)["podLabels"] = {{"tier", true}};
     },
     "spec.podLabels.tier", "got true, expected a string"},
    {"PodAnnotations", [](json& m) { Spec(m)["podAnnotations"] = "a=b"; }, "spec.podAnnotations",
     "expected a mapping of strings"},
    {"SecurityContext", [](json& m) { Spec(m)["securityContext"] = json::array(); },
     "spec.securityContext", "expected a mapping"},
    // Partition keys.
    {"PartitionKeysNotAList", [](json& m) { Spec(m)["partitionKeys"] = "user"; },
     "spec.partitionKeys", "expected a list of key names"},
    {"PartitionKeyEmpty",
     [](json& m) {
       Spec(m)["partitionKeys"] = {""};
       In0(m)["partitionFormat"] = "{user}/*";
     },
     "spec.partitionKeys[0]", "expected a non-empty key name"},
    {"PartitionKeyTwice",
     [](json& m) {
       Spec(m)["partitionKeys"] = {"user", "user"};
       In0(m)["partitionFormat"] = "{user}/*";
     },
     "spec.partitionKeys[1]", R"(got "user", expected a key name not listed before)"},
    {"PartitionKeysWithMiniBatchSize",
     [](json& m) {
       Spec(m)["partitionKeys"] = {"user"};
       Spec(m)["miniBatchSize"] = 5;
       In0(m)["partitionFormat"] = "{user}/*";
     },
     "spec.miniBatchSize", "expected no miniBatchSize with spec.partitionKeys"},
    {"PartitionFormatMissing", [](json& m) { Spec(m)["partitionKeys"] = {"user"}; },
     "spec.inputs[0].partitionFormat", "missing, expected a format such as"},
    {"PartitionFormatLacksAKey",
     [](json& m) {
       Spec(m)["partitionKeys"] = {"user", "genres"};
       In0(m)["partitionFormat"] = "{user}/{season}/*.wav";
     },
     "spec.inputs[0].partitionFormat",
     R"(spec.partitionKeys names "genres", which "{user}/{season}/*.wav" does not capture)"},
    {"PartitionFormatBadSyntax",
     [](json& m) {
       Spec(m)["partitionKeys"] = {"day"};
       In0(m)["partitionFormat"] = "{day:yyyy/MM/dd}/*";
     },
     "spec.inputs[0].partitionFormat", "date captures ({name:format}) are not supported"},
    {"PartitionFormatWithoutKeys", [](json& m) { In0(m)["partitionFormat"] = "{user}/*"; },
     "spec.inputs[0].partitionFormat", "expected no partitionFormat without spec.partitionKeys"},
    {"PartitionFormatOnTabular",
     [](json& m) {
       m = TabularManifest();
       Spec(m)["partitionKeys"] = {"Store"};
       In0(m)["partitionFormat"] = "{Store}.csv";
     },
     "spec.inputs[0].partitionFormat", "expected no partitionFormat on a tabular input"},
    {"PartitionKeysOnNativeTabular",
     [](json& m) {
       m = TabularManifest();
       Spec(m)["entryScript"] = "lib/libscore.so";
       Spec(m)["partitionKeys"] = {"Store"};
     },
     "spec.partitionKeys", "no partitionKeys on tabular inputs with a native (.so) entry script"},
    // Unknown fields.
    {"UnknownSpecField", [](json& m) { Spec(m)["nodeCont"] = 4; }, "spec.nodeCont",
     "spec.nodeCont: unknown field (did you mean nodeCount?), expected one of entryScript, "
     "sourceDirectory, volumes,"},
    {"UnknownSpecFieldSnakeCase", [](json& m) { Spec(m)["node_count"] = 4; }, "spec.node_count",
     "(did you mean nodeCount?)"},
    {"UnknownSpecFieldFarFromAny", [](json& m) { Spec(m)["zzzzzz"] = 4; }, "spec.zzzzzz",
     "spec.zzzzzz: unknown field, expected one of"},
};

INSTANTIATE_TEST_SUITE_P(JobSpecRules, RuleTest, ::testing::ValuesIn(kRuleCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(JobSpecTest, PartitionKeysParseAndRoundTripWithoutMiniBatchSize) {
  json m = MinimalManifest();
  Spec(m)["partitionKeys"] = {"user", "genres"};
  In0(m)["partitionFormat"] = "{user}/{season}/{genres}.wav";
  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_THAT(spec->partition_keys, ElementsAre("user", "genres"));
  EXPECT_EQ(spec->inputs[0].partition_format, "{user}/{season}/{genres}.wav");
  const json out = ToJson(*spec);
  EXPECT_FALSE(out["spec"].contains("miniBatchSize"));
  EXPECT_EQ(out["spec"]["partitionKeys"], json({"user", "genres"}));
  auto again = ParseJobSpec(out.dump(), "spec.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->partition_keys, spec->partition_keys);
  EXPECT_EQ(again->inputs[0].partition_format, spec->inputs[0].partition_format);

  json t = TabularManifest();
  Spec(t)["partitionKeys"] = {"Store", "Brand"};
  auto tab = ParseJson(t);
  ASSERT_TRUE(tab.ok()) << tab.status().ToString();
  EXPECT_THAT(tab->partition_keys, ElementsAre("Store", "Brand"));
}

TEST(JobSpecTest, FoldersOnDifferentVolumesOrSiblingPathsAreApart) {
  json m = MinimalManifest();
  AddVolume(m);
  Spec(m)["output"] = {{"volume", "data"}, {"path", "in"}};  // same path, another volume
  In0(m)["source"]["path"] = "in2";                          // a prefix, not a parent
  Spec(m)["sourceDirectory"]["path"] = "in";
  EXPECT_TRUE(ParseJson(m).ok()) << ParseJson(m).status().ToString();
  EXPECT_EQ(FolderOverlap("a/b", "a/bc", "y"), "");
  EXPECT_EQ(FolderOverlap("/a/b/", "/a/b", "y"), "\"/a/b/\" is the same folder as y");
}

TEST(JobSpecTest, ReportsEveryErrorAtOnce) {
  json m = MinimalManifest();
  Spec(m)["nodeCount"] = 0;
  Spec(m)["loggingLevel"] = "LOUD";
  Spec(m).erase("entryScript");
  Spec(m)["nodeCont"] = 4;
  std::vector<FieldError> errors;
  auto spec = ParseJobSpec(m.dump(), "job.yaml", &errors);
  ASSERT_FALSE(spec.ok());
  ASSERT_EQ(errors.size(), 4u);
  const std::string& message = spec.status().message();
  EXPECT_THAT(message, StartsWith("job.yaml: 4 errors in the manifest:\n  - "));
  for (const FieldError& e : errors) EXPECT_THAT(message, HasSubstr("\n  - " + e.ToString()));
  std::vector<std::string> paths;
  for (const FieldError& e : errors) paths.push_back(e.path);
  EXPECT_THAT(paths, ::testing::UnorderedElementsAre("spec.nodeCount", "spec.loggingLevel",
                                                     "spec.entryScript", "spec.nodeCont"));
}

TEST(JobSpecTest, OneErrorSaysErrorInTheSingular) {
  json m = MinimalManifest();
  Spec(m)["nodeCount"] = 0;
  auto spec = ParseJson(m);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "job.yaml: 1 error in the manifest:\n"
            "  - spec.nodeCount: got 0, expected an integer >= 1");
}

TEST(JobSpecTest, QuotedAndPlainScalars) {
  const std::string head = R"(apiVersion: parallelrun.io/v1alpha1
kind: ParallelRunJob
metadata: {name: my-job}
spec:
  entryScript: score.py
  sourceDirectory: {path: code}
  inputs: [{name: a, source: {path: in}}]
  output: {path: out}
)";
  auto plain = ParseJobSpec(head + "  miniBatchSize: 10\n", "job.yaml");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->mini_batch_size, 10);
  auto quoted = ParseJobSpec(head + "  miniBatchSize: \"10\"\n", "job.yaml");
  ASSERT_TRUE(quoted.ok()) << quoted.status().ToString();
  EXPECT_EQ(quoted->mini_batch_size, 10);

  std::vector<FieldError> errors;
  auto quoted_int = ParseJobSpec(head + "  nodeCount: '3'\n", "job.yaml", &errors);
  ASSERT_FALSE(quoted_int.ok());
  EXPECT_THAT(ErrorStrings(errors),
              ElementsAre(R"(spec.nodeCount: got "3", expected an integer >= 1, without quotes)"));
  auto quoted_bool = ParseJobSpec(head + "  appendRowHeader: \"true\"\n", "job.yaml", &errors);
  ASSERT_FALSE(quoted_bool.ok());
  EXPECT_THAT(ErrorStrings(errors), ElementsAre(R"(spec.appendRowHeader: got "true", expected )"
                                                "true or false, without quotes"));
  auto plain_bool = ParseJobSpec(head + "  appendRowHeader: True\n", "job.yaml");
  ASSERT_TRUE(plain_bool.ok()) << plain_bool.status().ToString();
  EXPECT_TRUE(plain_bool->append_row_header);
  // A plain scalar that is not a number stays a string.
  auto version = ParseJobSpec(head + "  arguments: [--v, 1.2.3, $(output)]\n", "job.yaml");
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_THAT(version->arguments, ElementsAre("--v", "1.2.3", "$(output)"));
}

TEST(JobSpecTest, YamlSyntaxErrorNamesFileLineAndColumn) {
  std::vector<FieldError> errors;
  auto spec = ParseJobSpec("apiVersion: parallelrun.io/v1alpha1\nkind: [ParallelRunJob\n",
                           "job.yaml", &errors);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(), "job.yaml:3:1: end of sequence flow not found");
  EXPECT_TRUE(errors.empty());

  auto indent = ParseJobSpec("spec:\n  a: 1\n b: 2\n", "dir/job.yaml");
  ASSERT_FALSE(indent.ok());
  EXPECT_THAT(indent.status().message(), StartsWith("dir/job.yaml:3:"));
}

TEST(JobSpecTest, DocumentThatIsNotAMapping) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "document: missing, expected a mapping with apiVersion, kind, metadata and spec"},
      {"# only a comment\n", "document: missing, expected a mapping"},
      {"- a\n- b\n", R"(document: got ["a","b"], expected a mapping)"},
      {"42", "document: got 42, expected a mapping"},
  };
  for (const auto& [text, message] : cases) {
    std::vector<FieldError> errors;
    auto spec = ParseJobSpec(text, "job.yaml", &errors);
    ASSERT_FALSE(spec.ok()) << text;
    ASSERT_EQ(errors.size(), 1u) << text;
    EXPECT_THAT(errors[0].ToString(), StartsWith(message)) << text;
  }
}

TEST(JobSpecTest, JsonInputWorks) {
  auto spec = ParseJobSpec(MinimalManifest().dump(2), "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "my-job");
  // JSON with tabs for indentation is still YAML-readable.
  auto tabs = ParseJobSpec(R"({
	"apiVersion":	"parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
	"metadata": {"name": "tab-job"},
	"spec": {"entryScript": "s.py", "sourceDirectory": {"path": "c"},
		"inputs": [{"name": "i", "source": {"path": "i"}}], "output": {"path": "o"},
		"miniBatchSize": 7}
})",
                           "spec.json");
  ASSERT_TRUE(tabs.ok()) << tabs.status().ToString();
  EXPECT_EQ(tabs->mini_batch_size_text, "7");
}

TEST(JobSpecTest, ToJsonRoundTrips) {
  json tabular = TabularManifest();
  Spec(tabular)["inputs"][0]["format"] = "csv";
  Spec(tabular)["miniBatchSize"] = 4096;
  Spec(tabular)["retryFrom"] = "old";
  Spec(tabular)["activeDeadlineSeconds"] = 10;
  Spec(tabular)["env"] = json::parse(R"([{"name": "X", "value": "1.5"}])");
  Spec(tabular)["securityContext"] = {{"fsGroup", 2.5}};
  tabular["metadata"]["uid"] = "u-1";
  tabular["metadata"]["annotations"] = {{"a", "b"}};
  for (const std::string& text :
       {std::string(kSpecExample), MinimalManifest().dump(), tabular.dump()}) {
    auto first = ParseJobSpec(text, "job.yaml");
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    const json once = ToJson(*first);
    auto second = ParseJobSpec(once.dump(), "spec.json");
    ASSERT_TRUE(second.ok()) << second.status().ToString() << "\n" << once.dump(2);
    EXPECT_EQ(ToJson(*second), once);
  }
}

TEST(JobSpecTest, ModelsAreReadAndRoundTrip) {
  json m = MinimalManifest();
  Spec(m)["models"] = json::parse(R"([
      {"name": "iris-prs", "version": "1", "source": {"path": "models/iris"}},
      {"name": "Vocab_v2.1", "source": {"path": "models/vocab.txt"}}])");
  // Without models, the two variables are the user's own.
  Spec(m)["env"] = json::parse(R"([{"name": "PARALLELRUN_MODELS_X", "value": "1"}])");
  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->models.size(), 2u);
  EXPECT_EQ(spec->models[0].name, "iris-prs");
  EXPECT_EQ(spec->models[0].version, "1");
  EXPECT_EQ(spec->models[0].source.path, "models/iris");
  EXPECT_EQ(spec->models[1].version, "");
  const json once = ToJson(*spec);
  EXPECT_EQ(once["spec"]["models"], Spec(m)["models"]);
  auto again = ParseJobSpec(once.dump(), "spec.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(ToJson(*again), once);
  EXPECT_FALSE(ToJson(*ParseJson(MinimalManifest())).at("spec").contains("models"));
  json env = MinimalManifest();
  Spec(env)["env"] = json::parse(R"([{"name": "AZUREML_MODEL_DIR", "value": "/m"}])");
  EXPECT_TRUE(ParseJson(env).ok());  // no models: the user's to set
  EXPECT_EQ(json::parse(ModelsEnvValue(*spec, {{"iris-prs", "/r/iris-prs"}})), json::parse(R"({
      "iris-prs": {"version": "1", "path": "/r/iris-prs"},
      "Vocab_v2.1": {"version": null, "path": ""}})"));
}

TEST(JobSpecTest, ToJsonHasEveryDefaultInCrForm) {
  auto spec = ParseJson(MinimalManifest());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const json j = ToJson(*spec);
  EXPECT_EQ(j["apiVersion"], "parallelrun.io/v1alpha1");
  EXPECT_EQ(j["kind"], "ParallelRunJob");
  EXPECT_EQ(j["metadata"], json({{"name", "my-job"}}));
  const json& s = j["spec"];
  EXPECT_EQ(s["miniBatchSize"], "10");
  EXPECT_EQ(s["progressUpdateTimeout"], 270);
  EXPECT_EQ(s["errorThreshold"], -1);
  EXPECT_EQ(s["allowedFailedCount"], -1);
  EXPECT_EQ(s["allowedFailedPercent"], 100);
  EXPECT_EQ(s["outputAction"], "append_row");
  EXPECT_EQ(s["appendRowFileName"], "parallel_run_step.txt");
  EXPECT_EQ(s["appendRowHeader"], false);
  EXPECT_EQ(s["nodeCount"], 1);
  EXPECT_EQ(s["processCountPerNode"], 1);
  EXPECT_EQ(s["loggingLevel"], "INFO");
  EXPECT_EQ(s["runInvocationTimeout"], 60);
  EXPECT_EQ(s["runMaxTry"], 3);
  EXPECT_EQ(s["resourceMonitorInterval"], 600);
  EXPECT_EQ(s["suspend"], false);
  EXPECT_EQ(s["backoffLimit"], 6);
  EXPECT_EQ(s["sideInputs"], json::array());
  EXPECT_EQ(s["arguments"], json::array());
  EXPECT_EQ(s["volumes"], json::array());
  EXPECT_EQ(s["inputs"][0],
            json::parse(R"({"name":"images","type":"file","source":{"path":"in"}})"));
  EXPECT_FALSE(s.contains("retryFrom"));
  EXPECT_FALSE(s.contains("activeDeadlineSeconds"));
  EXPECT_FALSE(s.contains("image"));
}

TEST(ParseMiniBatchSizeTest, Table) {
  struct Case {
    const char* text;
    InputType type;
    int64_t want;  // -1: an error
  };
  const Case cases[] = {
      {"10", InputType::kFile, 10},
      {"1", InputType::kFile, 1},
      {"0", InputType::kFile, -1},
      {"-1", InputType::kFile, -1},
      {"10MB", InputType::kFile, -1},
      {"1.5", InputType::kFile, -1},
      {"", InputType::kFile, -1},
      {" 10", InputType::kFile, -1},
      {"99999999999999999999", InputType::kFile, -1},
      {"10", InputType::kTabular, 10},
      {"1MB", InputType::kTabular, 1048576},
      {"1mb", InputType::kTabular, 1048576},
      {"512kb", InputType::kTabular, 524288},
      {"512KB", InputType::kTabular, 524288},
      {"2GB", InputType::kTabular, 2LL << 30},
      {"2gB", InputType::kTabular, 2LL << 30},
      {"0", InputType::kTabular, -1},
      {"0KB", InputType::kTabular, -1},
      {"-1", InputType::kTabular, -1},
      {"1.5MB", InputType::kTabular, -1},
      {"1 MB", InputType::kTabular, -1},
      {"1M", InputType::kTabular, -1},
      {"1TB", InputType::kTabular, -1},
      {"10kbmb", InputType::kTabular, -1},
      {"MB", InputType::kTabular, -1},
      {"9000000000GB", InputType::kTabular, -1},
      {"8589934591GB", InputType::kTabular, 8589934591LL << 30},
  };
  for (const Case& c : cases) {
    auto got = ParseMiniBatchSize(c.text, c.type);
    if (c.want < 0) {
      ASSERT_FALSE(got.ok()) << c.text;
      EXPECT_THAT(got.status().message(), HasSubstr(std::string("miniBatchSize: got \"") + c.text))
          << c.text;
    } else {
      ASSERT_TRUE(got.ok()) << c.text << ": " << got.status().ToString();
      EXPECT_EQ(*got, c.want) << c.text;
    }
  }
}

TEST(FieldErrorTest, ToStringForms) {
  EXPECT_EQ((FieldError{"spec.nodeCount", "0", "an integer >= 1"}).ToString(),
            "spec.nodeCount: got 0, expected an integer >= 1");
  EXPECT_EQ((FieldError{"spec.entryScript", "", "a string"}).ToString(),
            "spec.entryScript: missing, expected a string");
  EXPECT_EQ((FieldError{"spec.x", "1", "one of a, b", "unknown field"}).ToString(),
            "spec.x: unknown field, expected one of a, b");
}

TEST(JobSpecTest, LongValuesAreCutInMessages) {
  json m = MinimalManifest();
  Spec(m)["entryScript"] = std::string(500, 'x');
  std::vector<FieldError> errors;
  ASSERT_FALSE(ParseJson(m, &errors).ok());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_LT(errors[0].value.size(), 100u);
  EXPECT_THAT(errors[0].value, ::testing::EndsWith("..."));
}

// ---------------------------------------------------------------------------------------------
// YAML reading.

TEST(YamlToJsonTest, TypesPlainScalarsByTheCoreSchema) {
  auto j = YamlToJson(R"(
int: 10
neg: -3
plus: +5
hex: 0x1F
oct: 0o17
float: 2.5
exp: 1e3
big: 18446744073709551615
true1: true
false1: False
null1: ~
null2:
yes: yes
str: hello
quoted_int: "10"
single: '1.5'
tagged_str: !!str 5
tagged_int: !!int "7"
version: 1.2.3
)",
                      "t.yaml");
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["int"], 10);
  EXPECT_EQ((*j)["neg"], -3);
  EXPECT_EQ((*j)["plus"], 5);
  EXPECT_EQ((*j)["hex"], 31);
  EXPECT_EQ((*j)["oct"], 15);
  EXPECT_EQ((*j)["float"], 2.5);
  EXPECT_EQ((*j)["exp"], 1000.0);
  EXPECT_TRUE((*j)["exp"].is_number_float());
  EXPECT_EQ((*j)["big"], 18446744073709551615ULL);
  EXPECT_EQ((*j)["true1"], true);
  EXPECT_EQ((*j)["false1"], false);
  EXPECT_TRUE((*j)["null1"].is_null());
  EXPECT_TRUE((*j)["null2"].is_null());
  EXPECT_EQ((*j)["yes"], "yes");  // YAML 1.2: not a boolean
  EXPECT_EQ((*j)["str"], "hello");
  EXPECT_EQ((*j)["quoted_int"], "10");
  EXPECT_EQ((*j)["single"], "1.5");
  EXPECT_EQ((*j)["tagged_str"], "5");
  EXPECT_EQ((*j)["tagged_int"], 7);
  EXPECT_EQ((*j)["version"], "1.2.3");
}

TEST(YamlToJsonTest, AnchorsAliasesAndMergeKeys) {
  auto j = YamlToJson(R"(
base: &base {a: 1, b: 2}
list: [*base, *base]
merged:
  <<: *base
  b: 3
)",
                      "t.yaml");
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["list"][1]["b"], 2);
  EXPECT_EQ((*j)["merged"], json({{"a", 1}, {"b", 3}}));
}

TEST(YamlToJsonTest, RejectsWhatJsonCannotHold) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a: 1\na: 2\n", "t.yaml:2:1: duplicate key \"a\""},
      {"? [1]\n: 2\n", "t.yaml:1:3: mapping keys must be strings"},
      {"a: .inf\n", "t.yaml:1:4: number .inf cannot be represented in JSON"},
      {"a: 1e999\n", "t.yaml:1:4: number 1e999 cannot be represented in JSON"},
      {"a: !custom x\n", "t.yaml:1:4: unsupported tag !custom"},
      {"a: !!int x\n", "t.yaml:1:4: \"x\" is not a valid int"},
      {"a: \"\\xff\\ud800\"\n", "t.yaml:1:"},
      {"a: 1\n---\nb: 2\n", "t.yaml:2:1: expected one YAML document, found a second one"},
      {"a: \"\xff\"\n", "t.yaml:1:4: string is not valid UTF-8"},
  };
  for (const auto& [text, message] : cases) {
    auto j = YamlToJson(text, "t.yaml");
    ASSERT_FALSE(j.ok()) << text;
    EXPECT_THAT(j.status().message(), StartsWith(message)) << text;
  }
}

// Regression (found while probing yaml-cpp before fuzzing): yaml-cpp links an alias used inside its
// own anchor back to the anchor, a cycle that recursed until the stack overflowed.
TEST(YamlToJsonTest, AliasInsideItsOwnAnchorIsAnErrorNotACrash) {
  auto j = YamlToJson("a: &x [1, *x]\n", "t.yaml");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("alias cycle"));
  auto m = YamlToJson("a: &x {b: *x}\n", "t.yaml");
  ASSERT_FALSE(m.ok());
}

// Regression (fuzz_job_spec, crash-b8249d31): map keys were read through references into
// yaml-cpp's temporary iterator proxies (stack-use-after-scope under ASan; GCC's
// -Wdangling-pointer had flagged it too).
TEST(YamlToJsonTest, MapEntriesOutliveTheIteratorProxy) {
  auto j = YamlToJson(
      "base: &b {a: 1, b: [x, y]}\nm: {<<: *b, c: !!int '3', d: 0x1f, e: .5, f: ~}\n"
      "l: [*b, *b]\n",
      "t.yaml");
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["m"], json::parse(R"({"a":1,"b":["x","y"],"c":3,"d":31,"e":0.5,"f":null})"));
  EXPECT_EQ((*j)["l"][1]["b"][1], "y");
}

// Regression (fuzz_job_spec, timeout-dec846dd): yaml-cpp 0.7's LoadAll loops forever, allocating
// empty documents, on some syntax errors such as a stray ',' (jbeder/yaml-cpp#1319).
TEST(YamlToJsonTest, StrayCommaIsASyntaxErrorNotAHang) {
  for (const char* text : {",", ",\n", "a: 1\n---\n,\n", "- a\n,"}) {
    auto j = YamlToJson(text, "t.yaml");
    ASSERT_FALSE(j.ok()) << text;
    EXPECT_THAT(j.status().message(), StartsWith("t.yaml:")) << text;
  }
  auto spec = ParseJobSpec(
      "{\n  \"apiVersion\": \"parallelrun.io/v1alpha1\",\n  \"kind\": $ \"ParallelRunJob\"\n  "
      "\",m\"\n}",
      "job.yaml");
  ASSERT_FALSE(spec.ok());
}

TEST(YamlToJsonTest, AliasBombIsRefused) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) text += (k ? ", " : "") + prev;
    text += "]\n";
  }
  auto j = YamlToJson(text, "t.yaml");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("too large once its aliases are expanded"));
}

TEST(YamlToJsonTest, DeepNestingIsAnErrorNotACrash) {
  for (int depth : {kMaxYamlDepth + 5, 100000}) {
    const std::string text = std::string(depth, '[') + std::string(depth, ']');
    auto j = YamlToJson(text, "t.yaml");
    ASSERT_FALSE(j.ok()) << depth;
    EXPECT_THAT(j.status().message(), StartsWith("t.yaml:1:")) << depth;
  }
}

// ---------------------------------------------------------------------------------------------
// Paths.

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/jobspec_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static JobSpec Parse(const std::string& yaml) {
    auto spec = ParseJobSpec(yaml, "job.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return spec.ok() ? *spec : JobSpec{};
  }

  std::string dir_;
};

constexpr const char* kVolumesManifest = R"yaml(apiVersion: parallelrun.io/v1alpha1
kind: ParallelRunJob
metadata: {name: paths-job}
spec:
  entryScript: score.py
  sourceDirectory: {path: ./code/}
  volumes:
    - name: host
      hostPath: {path: /srv/data}
    - name: rel
      hostPath: {path: local-data}
    - name: data
      persistentVolumeClaim: {claimName: images}
  inputs:
    - {name: images, type: file, source: {volume: host, path: incoming}}
    - {name: more, type: file, source: {volume: rel, path: more/}}
  sideInputs:
    - {name: model, source: {volume: data, path: models/resnet}}
  models:
    - {name: iris, version: "2", source: {volume: rel, path: models/iris}}
  output: {volume: data, path: runs/out}
  retryFrom: ../previous
  arguments: ["--model=$(sideInputs.model)/m.bin", "$(inputs.images)", "$(output)",
              "$(inputs.more):$(inputs.images)", "$(HOME)"]
)yaml";

TEST_F(PathsTest, ResolvesHostPathsBindingsAndManifestRelativePaths) {
  const JobSpec spec = Parse(kVolumesManifest);
  auto paths = ResolveLocalPaths(spec, dir_ + "/jobs", {{"data", "/mnt/big"}});
  ASSERT_TRUE(paths.ok()) << paths.status().ToString();
  EXPECT_EQ(paths->code_dir, dir_ + "/jobs/code");
  EXPECT_EQ(paths->inputs.at("images"), "/srv/data/incoming");
  EXPECT_EQ(paths->inputs.at("more"), dir_ + "/jobs/local-data/more");
  EXPECT_EQ(paths->side_inputs.at("model"), "/mnt/big/models/resnet");
  EXPECT_EQ(paths->models.at("iris"), dir_ + "/jobs/local-data/models/iris");
  EXPECT_EQ(paths->output_dir, "/mnt/big/runs/out");
  EXPECT_EQ(paths->retry_from_dir, dir_ + "/previous");
}

TEST_F(PathsTest, RelativeBindingIsTakenFromTheManifestFolder) {
  const JobSpec spec = Parse(kVolumesManifest);
  auto paths = ResolveLocalPaths(spec, dir_, {{"data", "../shared"}, {"host", "h"}});
  ASSERT_TRUE(paths.ok()) << paths.status().ToString();
  const std::string parent = std::filesystem::path(dir_).parent_path().string();
  EXPECT_EQ(paths->output_dir, parent + "/shared/runs/out");
  EXPECT_EQ(paths->inputs.at("images"), dir_ + "/h/incoming");  // a binding beats hostPath
}

TEST_F(PathsTest, UnboundVolumeNamesTheFieldAndTheFlag) {
  const JobSpec spec = Parse(kVolumesManifest);
  auto paths = ResolveLocalPaths(spec, dir_, {});
  ASSERT_FALSE(paths.ok());
  EXPECT_EQ(paths.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(paths.status().message(),
            "spec.sideInputs[0].source.volume: volume \"data\" is a persistentVolumeClaim; bind "
            "it to a local folder with --volume data=DIR");
}

TEST_F(PathsTest, UnboundInputVolumeErrorText) {
  json m = MinimalManifest();
  AddVolume(m);
  In0(m)["source"]["volume"] = "data";
  auto spec = ParseJson(m);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto paths = ResolveLocalPaths(*spec, dir_, {});
  ASSERT_FALSE(paths.ok());
  EXPECT_EQ(paths.status().message(),
            "spec.inputs[0].source.volume: volume \"data\" is a persistentVolumeClaim; bind it "
            "to a local folder with --volume data=DIR");
}

TEST_F(PathsTest, BindingForAnUnknownVolumeIsAnError) {
  const JobSpec spec = Parse(kVolumesManifest);
  auto paths = ResolveLocalPaths(spec, dir_, {{"data", "/d"}, {"dta", "/x"}});
  ASSERT_FALSE(paths.ok());
  EXPECT_EQ(paths.status().message(),
            "--volume dta=/x: spec.volumes has no volume \"dta\" (it has host, rel, data)");
}

TEST_F(PathsTest, RelativeManifestFolderIsTakenFromTheWorkingFolder) {
  const JobSpec spec = Parse(kVolumesManifest);
  auto paths = ResolveLocalPaths(spec, "", {{"data", "/d"}});
  ASSERT_TRUE(paths.ok()) << paths.status().ToString();
  EXPECT_EQ(paths->code_dir, std::filesystem::current_path().string() + "/code");
}

TEST_F(PathsTest, MountedPathsInAPod) {
  const JobSpec spec = Parse(kVolumesManifest);
  const ResolvedPaths paths = MountedPaths(spec);
  EXPECT_EQ(paths.code_dir, "/code");  // no volume: baked into the image
  EXPECT_EQ(paths.inputs.at("images"), "/mnt/inputs/images");
  EXPECT_EQ(paths.inputs.at("more"), "/mnt/inputs/more");
  EXPECT_EQ(paths.side_inputs.at("model"), "/mnt/side-inputs/model");
  EXPECT_EQ(paths.models.at("iris"), "/mnt/models/iris");
  EXPECT_EQ(paths.output_dir, "/mnt/output");
  EXPECT_EQ(paths.retry_from_dir, "../previous");

  auto example = ParseJobSpec(kSpecExample, "job.yaml");
  ASSERT_TRUE(example.ok());
  EXPECT_EQ(MountedPaths(*example).code_dir, "/mnt/code");
}

TEST_F(PathsTest, ExpandArgumentsReplacesEveryReference) {
  JobSpec copy = Parse(kVolumesManifest);
  // ParseJobSpec rejects an unclosed reference; a hand-built spec keeps it as written.
  copy.arguments.push_back("$(inputs.images");
  const ResolvedPaths paths = MountedPaths(copy);
  EXPECT_THAT(
      ExpandArguments(copy, paths),
      ElementsAre("--model=/mnt/side-inputs/model/m.bin", "/mnt/inputs/images", "/mnt/output",
                  "/mnt/inputs/more:/mnt/inputs/images", "$(HOME)", "$(inputs.images"));
}

TEST_F(PathsTest, LoadJobSpecReadsAFileAndNamesItInErrors) {
  const std::string path = dir_ + "/job.yaml";
  ASSERT_TRUE(WriteFileAtomic(path, kSpecExample).ok());
  auto spec = LoadJobSpec(path);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "score-images");

  ASSERT_TRUE(WriteFileAtomic(path, "kind: [\n").ok());
  auto broken = LoadJobSpec(path);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), StartsWith(path + ":"));

  auto missing = LoadJobSpec(dir_ + "/nope.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr(dir_ + "/nope.yaml"));
}

}  // namespace
}  // namespace parallelrun::rt
