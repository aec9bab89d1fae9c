// The Validator walks the JSON form of a manifest once, filling a JobSpec (defaults applied) and
// recording every FieldError on the way; nothing stops at the first error. Internal to
// runtime/jobspec: ParseJobSpec (job_spec.h) is the entry point.
//
// validator.cc reads the envelope and spec's scalar fields, arguments, miniBatchSize,
// partitionKeys and pod fields; validator_sources.cc the data sources (volumes, inputs, side
// inputs, models, output) and the rules between them.
//
// Caveats: the validator checks a value's type before each access, so nlohmann::json throws only
// on a bug; ParseJobSpec turns that into an InternalError.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/jobspec/field_reader.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::jobspec {

class Validator : private FieldReader {
 public:
  explicit Validator(std::vector<FieldError>* errors) : FieldReader(errors) {}

  // Reads a whole manifest (apiVersion, kind, metadata, spec) into `out`.
  void ReadDocument(const json& doc, JobSpec* out);

 private:
  // ----- envelope and spec (validator.cc) -----
  void ReadMetadata(const json* metadata, JobSpec* out);
  void ReadSpec(const json& spec, JobSpec* out);
  void ReadArguments(const json& spec, JobSpec* out);
  // The $(...) references of one argument name existing inputs and side inputs.
  void CheckReferences(const std::string& arg, const json& value, const std::string& path,
                       const std::vector<std::string>& input_names,
                       const std::vector<std::string>& side_names);
  void ReadMiniBatchSize(const json& spec, JobSpec* out);
  void ReadPartitionKeys(const json& spec, JobSpec* out);
  void ReadPodFields(const json& spec, JobSpec* out);

  // ----- data sources (validator_sources.cc) -----
  void ReadVolumes(const json& spec, JobSpec* out);
  // False when the reference is missing or invalid (its errors are recorded).
  bool ReadDataRef(const json* v, const std::string& path, bool required, DataRef* out);
  // An input's or side input's name: a DNS label.
  std::optional<std::string> ReadName(const json& item, const std::string& path);
  void ReadInputs(const json& spec, JobSpec* out);
  void ReadPartitionFormat(const json& item, const std::string& path, bool type_known,
                           Input* input);
  void ReadSideInputs(const json& spec, JobSpec* out);
  void ReadModels(const json& spec, JobSpec* out);
  void CheckModelEnv(const json& spec);
  void CheckInputNames(const JobSpec& spec);
  void CheckFoldersApart(const JobSpec& spec);

  std::vector<std::string> volume_names_;
  std::optional<InputType> mini_batch_type_;  // the first input's type, when valid
};

}  // namespace parallelrun::rt::jobspec
