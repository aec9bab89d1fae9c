// The checks `parallelrun run` makes before anything starts (run_preflight.h).

#include "runtime/cmd/run_preflight.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/base/process.h"

namespace parallelrun::rt::cmd {
namespace {

using Problems = std::vector<std::string>;

void CheckCodeAndInputs(const JobSpec& spec, const ResolvedPaths& paths, Problems* errors) {
  if (!IsDirectory(paths.code_dir)) {
    errors->push_back("spec.sourceDirectory: folder " + paths.code_dir + " does not exist");
  } else if (!PathExists(JoinPath(paths.code_dir, spec.entry_script))) {
    errors->push_back("spec.entryScript: " + spec.entry_script +
                      " not found in spec.sourceDirectory (" + paths.code_dir + ")");
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const std::string& dir = paths.inputs.at(spec.inputs[i].name);
    if (!IsDirectory(dir)) {
      errors->push_back("spec.inputs[" + std::to_string(i) + "].source: input folder " + dir +
                        (PathExists(dir) ? " is not a folder" : " does not exist"));
    } else if (::access(dir.c_str(), R_OK | X_OK) != 0) {
      errors->push_back("spec.inputs[" + std::to_string(i) + "].source: input folder " + dir +
                        " is not readable");
    }
  }
}

void CheckSideInputsAndModels(const JobSpec& spec, const ResolvedPaths& paths, Problems* errors) {
  for (size_t i = 0; i < spec.side_inputs.size(); ++i) {
    const std::string& dir = paths.side_inputs.at(spec.side_inputs[i].name);
    if (!PathExists(dir)) {
      errors->push_back("spec.sideInputs[" + std::to_string(i) + "].source: side input " + dir +
                        " does not exist");
    }
  }
  for (size_t i = 0; i < spec.models.size(); ++i) {
    const std::string& path = paths.models.at(spec.models[i].name);
    if (!PathExists(path)) {
      errors->push_back("spec.models[" + std::to_string(i) + "].source: model " + path +
                        " does not exist");
    }
  }
}

// The output folder is a folder, or can be made: its nearest existing ancestor is writable
// (nothing is created yet).
void CheckOutputFolder(const ResolvedPaths& paths, Problems* errors) {
  if (PathExists(paths.output_dir) && !IsDirectory(paths.output_dir)) {
    errors->push_back("spec.output: " + paths.output_dir + " exists and is not a folder");
    return;
  }
  std::string probe = paths.output_dir;
  while (!PathExists(probe) && probe != "/" && probe != ".") probe = Dirname(probe);
  if (!IsDirectory(probe)) {
    errors->push_back("spec.output: cannot create " + paths.output_dir + ": " + probe +
                      " is not a folder");
  } else if (::access(probe.c_str(), W_OK | X_OK) != 0) {
    errors->push_back("spec.output: output folder " + paths.output_dir + " is not writable (" +
                      probe + ": " + std::strerror(errno) + ")");
  }
}

// A Python entry script needs the interpreter.
void CheckPython(const JobSpec& spec, const std::string& python, Problems* errors) {
  if (spec.is_native()) return;
  if (::access(python.c_str(), X_OK) != 0) {
    errors->push_back("--python " + python +
                      ": no such interpreter (set --python or PARALLELRUN_PYTHON)");
  }
}

Status ProblemsStatus(const Problems& errors) {
  if (errors.empty()) return Status::Ok();
  std::string text = std::to_string(errors.size()) + " problem" + (errors.size() == 1 ? "" : "s") +
                     " before the job could start:";
  for (const auto& e : errors) text += "\n  - " + e;
  return InvalidArgumentError(text);
}

}  // namespace

Status PreflightChecks(const JobSpec& spec, const ResolvedPaths& paths, const std::string& python) {
  Problems errors;
  CheckCodeAndInputs(spec, paths, &errors);
  CheckSideInputsAndModels(spec, paths, &errors);
  CheckOutputFolder(paths, &errors);
  // Folders that meet through --volume bindings or symbolic links (the manifest's own paths were
  // checked by the job-spec model).
  if (Status apart = CheckResolvedFoldersApart(spec, paths); !apart.ok()) {
    errors.push_back(apart.message());
  }
  if (!spec.retry_from.empty() && !IsDirectory(paths.retry_from_dir)) {
    errors.push_back("spec.retryFrom: folder " + paths.retry_from_dir + " does not exist");
  }
  CheckPython(spec, python, &errors);
  return ProblemsStatus(errors);
}

// A syntax error is found before any worker starts, naming the file and line, instead of failing
// every worker.
std::unique_ptr<SyntaxCheck> StartEntryScriptSyntaxCheck(const JobSpec& spec,
                                                         const ResolvedPaths& paths,
                                                         const std::string& python) {
  auto check = std::make_unique<SyntaxCheck>();
  if (spec.is_native()) return check;
  char tmpl[] = "/tmp/parallelrun-syntax-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) return check;  // no file for its message: the check cannot run, and passes
  ::close(fd);
  check->message_file_ = tmpl;
  SpawnOptions o;
  // The check runs while the run starts, so its start-up is the run's: -S skips `site` (user and
  // site packages, .pth files), and compile() with PyCF_ONLY_AST (1024) is what ast.parse()
  // calls, without importing `ast` (which took most of the check's time).
  o.argv = {python, "-S", "-c",
            "import sys\n"
            "p=sys.argv[1]\n"
            "try:\n"
            "  compile(open(p,'rb').read(),p,'exec',1024)\n"
            "except SyntaxError as e:\n"
            "  print(f'{e.filename}, line {e.lineno}: {e.msg}'); sys.exit(3)\n",
            JoinPath(paths.code_dir, spec.entry_script)};
  o.stdout_path = tmpl;
  auto pid = Spawn(o);
  if (pid.ok()) check->pid_ = *pid;
  return check;
}

Status SyntaxCheck::Finish() {
  std::string error;
  if (pid_ > 0) {
    ExitInfo info = Wait(pid_);
    pid_ = -1;
    if (info.exited && info.code == 3) {
      auto msg = ReadFile(message_file_);
      std::string m = msg.ok() ? *msg : "";
      while (!m.empty() && m.back() == '\n') m.pop_back();
      error = "spec.entryScript: syntax error in " + m;
    }
  }
  if (!message_file_.empty()) ::unlink(message_file_.c_str());
  message_file_.clear();
  return ProblemsStatus(error.empty() ? Problems{} : Problems{error});
}

SyntaxCheck::~SyntaxCheck() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Wait(pid_);
  }
  if (!message_file_.empty()) ::unlink(message_file_.c_str());
}

Status EntryScriptSyntaxCheck(const JobSpec& spec, const ResolvedPaths& paths,
                              const std::string& python) {
  return StartEntryScriptSyntaxCheck(spec, paths, python)->Finish();
}

}  // namespace parallelrun::rt::cmd
