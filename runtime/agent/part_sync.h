// Group commit of part files: the agent makes the part files of the results it is about to report
// durable together, instead of the host fsyncing each one between two mini-batches.
//
// The Python host (PARALLELRUN_PART_SYNC=agent) only writes a part file and syncs its folder the
// first time; the agent then makes the part files of one report durable before sending it (a
// result is never reported before its part is durable): it starts the write-back of all of them
// (sync_file_range), then fsyncs each (and its `.header` companion, when there is one). The
// blocks of all of them are then allocated in one journal transaction, which the first fsync
// commits; the others only wait for their data. No syncfs(): that would also write back whatever
// else is dirty on the file system.
#pragma once

#include <string>
#include <vector>

namespace parallelrun::rt {

// Makes `paths` durable. Returns one entry per path: "" when it is durable, else why not (naming
// the file).
std::vector<std::string> SyncPartFiles(const std::vector<std::string>& paths);

}  // namespace parallelrun::rt
