// Group commit of part files: the agent makes the part files of the results it is about to report
// durable together, instead of the host fsyncing each one between two mini-batches.
//
// The Python host (PARALLELRUN_PART_SYNC=agent) only writes a part file and syncs its folder the
// first time; the agent then makes the part files of one report durable before sending it (a
// result is never reported before its part is durable): it fsyncs them all at once (kernel AIO,
// IOCB_CMD_FSYNC, in one io_submit; or from several threads where AIO is refused), so that their
// I/O overlaps, the device's cache flushes are merged and a journaling file system commits them in
// one transaction. No syncfs(): that would also write back whatever else is dirty
// on the file system (other jobs' files), at unbounded cost.
#pragma once

#include <string>
#include <vector>

namespace parallelrun::rt {

// Makes the part files `parts` durable, with their `.header` companions when `headers` (the job
// writes DataFrame headers; a part without one is fine). Returns one entry per part: "" when it
// is durable, else why not (naming the file).
std::vector<std::string> SyncPartFiles(const std::vector<std::string>& parts, bool headers);

}  // namespace parallelrun::rt
