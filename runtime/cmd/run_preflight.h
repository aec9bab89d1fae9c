// The checks `parallelrun run` makes before anything starts (local mode, SPEC.md §4.1): the code
// folder and entry script, the input, side input and model folders, the output folder, folders
// that meet through --volume bindings or links, retryFrom, the Python interpreter, and the entry
// script's Python syntax.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt::cmd {

// Every problem found, each naming the field and the file or folder: InvalidArgument "N problems
// before the job could start:" with one "  - ..." line per problem. Creates nothing. Everything
// but the entry script's syntax, which `run` checks (StartEntryScriptSyntaxCheck) once these
// passed, while its coordinator starts up to the point where it would touch the output.
Status PreflightChecks(const JobSpec& spec, const ResolvedPaths& paths, const std::string& python);

// The Python entry script's syntax check, started by StartEntryScriptSyntaxCheck so that it runs
// while the coordinator and the agents start. Finish() waits for it: Ok when the script parses (or
// the check could not run: an interpreter that cannot run it passes), else InvalidArgument "1
// problem before the job could start:" naming the file and line. Dropped unfinished (the run ends
// before), the check is killed and reaped. Either way its temporary file is removed.
class SyntaxCheck {
 public:
  SyntaxCheck() = default;  // nothing to check (a native entry point)
  ~SyntaxCheck();
  SyntaxCheck(const SyntaxCheck&) = delete;
  SyntaxCheck& operator=(const SyntaxCheck&) = delete;

  Status Finish();

 private:
  friend std::unique_ptr<SyntaxCheck> StartEntryScriptSyntaxCheck(const JobSpec&,
                                                                  const ResolvedPaths&,
                                                                  const std::string&);
  pid_t pid_ = -1;
  std::string message_file_;  // the check's stdout: "file, line N: message"
};

// Starts `python` (after PreflightChecks found it) on the entry script, with a temporary file for
// its message.
std::unique_ptr<SyntaxCheck> StartEntryScriptSyntaxCheck(const JobSpec& spec,
                                                         const ResolvedPaths& paths,
                                                         const std::string& python);

// StartEntryScriptSyntaxCheck(...)->Finish().
Status EntryScriptSyntaxCheck(const JobSpec& spec, const ResolvedPaths& paths,
                              const std::string& python);

}  // namespace parallelrun::rt::cmd
