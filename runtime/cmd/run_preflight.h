// The checks `parallelrun run` makes before anything starts (local mode, SPEC.md §4.1): the code
// folder and entry script, the input, side input and model folders, the output folder, folders
// that meet through --volume bindings or links, retryFrom, and the entry script's Python syntax.
#pragma once

#include <string>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::cmd {

// Every problem found, each naming the field and the file or folder: InvalidArgument "N problems
// before the job could start:" with one "  - ..." line per problem. Creates nothing (the syntax
// check runs `python` on the entry script with a temporary file for its message).
Status PreflightChecks(const JobSpec& spec, const ResolvedPaths& paths, const std::string& python);

}  // namespace parallelrun::rt::cmd
