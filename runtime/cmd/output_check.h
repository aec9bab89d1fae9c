// Whether the job's uid can write its output folder, checked once when the coordinator starts:
// a job whose output it cannot write fails at once with reason OutputNotWritable and a message
// that says which folder, as whom, and how to fix it, instead of crashing and being restarted.
//
// Guarantees: the check is real, not a guess from mode bits: it creates and removes a file in
// the folder as this process's effective uid and groups, so ACLs, read-only mounts, root-squashed
// NFS and SELinux denials count as they will when the job writes. A folder that does not exist yet
// is checked in its deepest existing parent (the coordinator creates it); an existing
// `.parallelrun` state folder (a resumed run) is checked too.
// Caveats: a folder writable now may stop being writable later; that is reported when it happens.
#pragma once

#include <string>

#include "runtime/base/status.h"
#include "runtime/jobspec/job_spec.h"
#include "runtime/protocol/contract.h"

namespace parallelrun::rt {

inline constexpr const char* kReasonOutputNotWritable = reason::kOutputNotWritable;

// Ok when `output_dir` (the resolved spec.output: /mnt/output in a pod) is writable; otherwise
// FailedPrecondition naming spec.output as written (volume, path), the volume's source (a
// hostPath's host folder, a claim), the folder, the uid and gid, the error and the fix.
Status CheckOutputWritable(const JobSpec& spec, const std::string& output_dir);

}  // namespace parallelrun::rt
