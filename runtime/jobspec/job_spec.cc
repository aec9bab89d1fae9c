// Parse → default → validate of a ParallelRunJob manifest (SPEC.md §2.1, §2.2).
//
// The Validator (validator.h) walks the JSON form of the manifest once, filling the JobSpec and
// collecting every FieldError on the way; nothing stops at the first error. A null value counts as
// absent, as the Kubernetes API server prunes nulls from custom resources before defaulting: the
// same manifest means the same thing locally and in a cluster. ToJson is in job_spec_json.cc.

#include "runtime/jobspec/job_spec.h"

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/jobspec/field_rules.h"
#include "runtime/jobspec/field_text.h"
#include "runtime/jobspec/validator.h"
#include "runtime/jobspec/yaml_to_json.h"

namespace parallelrun::rt {
namespace {

using nlohmann::json;

std::string ErrorSummary(const std::string& source_name, const std::vector<FieldError>& errors) {
  std::string out = source_name + ": " + std::to_string(errors.size()) +
                    (errors.size() == 1 ? " error" : " errors") + " in the manifest:";
  for (const FieldError& e : errors) out += "\n  - " + e.ToString();
  return out;
}

}  // namespace

bool JobSpec::is_native() const { return jobspec::EndsWith(entry_script, ".so"); }

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
  if (auto value = jobspec::MiniBatchSizeValue(text, type)) return *value;
  return InvalidArgumentError("miniBatchSize: got " + jobspec::Quote(text) + ", expected " +
                              jobspec::MiniBatchExpected(type));
}

StatusOr<JobSpec> ParseJobSpec(std::string_view text, const std::string& source_name,
                               std::vector<FieldError>* errors) {
  if (errors != nullptr) errors->clear();
  PR_ASSIGN_OR_RETURN(json doc, YamlToJson(text, source_name));
  std::vector<FieldError> found;
  JobSpec spec;
  try {
    jobspec::Validator(&found).ReadDocument(doc, &spec);
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

}  // namespace parallelrun::rt
