// The checks `parallelrun run` makes before anything starts (local mode, SPEC.md §4.1): the code
// folder and entry script, the input, side input and model folders, the output folder, folders
// that meet through --volume bindings or links, retryFrom, the Python interpreter, and the entry
// script's Python syntax.
#pragma once

#include <string>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::cmd {

// Every problem found, each naming the field and the file or folder: InvalidArgument "N problems
// before the job could start:" with one "  - ..." line per problem. Creates nothing. Everything
// but the entry script's syntax, which `run` checks (EntryScriptSyntaxCheck) once these passed,
// while its coordinator starts up to the point where it would touch the output.
Status PreflightChecks(const JobSpec& spec, const ResolvedPaths& paths, const std::string& python);

// The Python entry script parses (none for a native one); else InvalidArgument "1 problem before
// the job could start:" naming the file and line. Runs `python` (after PreflightChecks found it)
// with a temporary file for its message; an interpreter that cannot run it passes the check.
Status EntryScriptSyntaxCheck(const JobSpec& spec, const ResolvedPaths& paths,
                              const std::string& python);

}  // namespace parallelrun::rt::cmd
