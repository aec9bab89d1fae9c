// The journal `<output>/.parallelrun/journal`: the coordinator's durable record of what happened
// to every mini-batch, one JSON object per line. A restarted coordinator rebuilds its JobState
// from it, so no completed mini-batch runs again (SPEC.md §4.3).
//
// Records ("t" is the type):
//   {"t":"start","n":2,"time":"...","owner":"..."}                  a coordinator started
//   {"t":"lease","mb":5,"a":2,"node":"..."}                          attempt 2 of mini-batch 5
//   handed out
//   {"t":"result","mb":5,"a":2,"node":..,"process":..,"status":"RUN_DONE",
//    "outcome":"completed","succeeded":9,"failed":1,"error":"..",
//    "pb":1234,"pc":305419896}                                       a result and what it decided
//                                           (pb, pc: the part file's bytes and CRC-32, if any)
//   {"t":"expired","mb":5,"a":2,"node":..,"outcome":"retry"}         a lease expired
//   {"t":"carried","mb":5,"a":1,"succeeded":9,"failed":1}             retryFrom: mini-batch 5
//   completed in the earlier run (with its attempt 1) and is not run again
//   {"t":"released","mb":5,"a":2,"node":".."}                        attempt 2 was given back
//   unrun (an agent stopping, or a lease from before a restart that its agent did not reclaim):
//   no try counted, the mini-batch is pending again
//
// Guarantees: Append writes through (one write(2) per call); SyncTo(offset) returns once every
// byte up to `offset` is on disk (fdatasync). Concurrent SyncTo calls share fdatasyncs (group
// commit), so a results request costs at most one. Results are acknowledged to agents only after
// SyncTo. Lease records are not synced on their own: they reach the disk with the next result;
// a coordinator that crashes in between forgets those attempt numbers (see coordinator.h).
// Thread-safety: Append callers serialize (the coordinator's state lock keeps journal order equal
// to state order); SyncTo may be called from any thread without that lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/base/files.h"
#include "runtime/base/mutex.h"
#include "runtime/base/status.h"
#include "runtime/base/time_util.h"
#include "runtime/coordinator/job_state.h"
#include "runtime/protocol/messages.h"

namespace parallelrun::rt {

struct JournalRecord {
  std::string type;  // start | lease | result | expired | carried | released
  int64_t mini_batch_id = 0;
  int attempt = 0;
  std::string node;
  Outcome outcome = Outcome::kLate;  // carried: kCompleted; released: kGivenBack
  int64_t succeeded = 0;             // as counted
  std::string time;                  // start
  int start_index = 0;               // start: the master_role.<n> index
  int64_t part_bytes = -1;           // result: the part file's size (-1: none recorded)
  uint32_t part_crc32 = 0;           // result: its CRC-32 (when part_bytes >= 0)
  // What the report row of a result (or carried record) shows, so that a row lost to a crash
  // between the journal write and the report write is rebuilt on resume.
  int64_t failed = 0;  // result, carried: as counted
  std::string process, status, error, start_utc;
  int64_t items = 0;  // result: the items the worker reported
  int64_t reported_succeeded = 0, reported_failed = 0;
  double elapsed_s = 0, cpu_s = 0, run_s = 0;
};

std::string JournalStartLine(int index, SystemTime time, const std::string& owner);
std::string JournalLeaseLine(int64_t id, int attempt, std::string_view node);
std::string JournalResultLine(const protocol::AttemptResult& result, std::string_view node,
                              const Decision& decision);
std::string JournalExpiredLine(int64_t id, int attempt, std::string_view node, Outcome outcome);
std::string JournalReleasedLine(int64_t id, int attempt, std::string_view node);
// `attempt` is the earlier run's accepted attempt (0 when it had carried it over itself).
std::string JournalCarriedLine(int64_t id, int attempt, int64_t succeeded, int64_t failed);
StatusOr<JournalRecord> ParseJournalLine(std::string_view line);

class Journal {
 public:
  // Appends to `path` from `valid_bytes` on (a torn last line is cut).
  static StatusOr<std::unique_ptr<Journal>> Open(const std::string& path, int64_t valid_bytes);
  // Appends complete lines; returns the offset to pass to SyncTo.
  StatusOr<int64_t> Append(std::string_view lines);
  Status SyncTo(int64_t offset) EXCLUDES(sync_mu_);
  Status SyncAll() { return SyncTo(written_.load()); }
  // fdatasyncs done so far (each may cover many requests).
  int64_t syncs() const { return syncs_.load(); }

  // Reads `path`, calling `on_record` for each complete record. Returns the valid bytes (where
  // appending continues). A torn LAST line (a write cut short by a crash: no newline, or a line
  // that does not parse with nothing after it) is left out of the valid bytes and described in
  // `*torn_warning` (when given) with the file, line number and bytes dropped. A line that does
  // not parse followed by further records is an error naming the file and line.
  static StatusOr<int64_t> Replay(const std::string& path,
                                  const std::function<Status(const JournalRecord&)>& on_record,
                                  std::string* torn_warning = nullptr);
  // After Replay returned `valid_bytes`: a warning naming the file, the line and the bytes of a
  // torn last line that Replay left out, or "" when there was none.
  static std::string DescribeTornTail(const std::string& path, int64_t valid_bytes);

 private:
  Journal(AppendFile file, int64_t size) : file_(std::move(file)), written_(size), synced_(size) {}
  AppendFile file_;
  std::atomic<int64_t> written_;
  Mutex sync_mu_;
  int64_t synced_ GUARDED_BY(sync_mu_);
  std::atomic<int64_t> syncs_{0};
};

}  // namespace parallelrun::rt
