// Where the coordinator's files live under `<output>/logs/` (SPEC.md §5). One place for the
// names, so the coordinator, the readme text and the tests agree.
#pragma once

#include <string>

#include "runtime/base/time_util.h"

namespace parallelrun::rt {

inline constexpr const char* kLogsReadmeFile = "readme.txt";
inline constexpr const char* kJobResultFile = "job_result.txt";
inline constexpr const char* kReportCsvFile = "sys/job_report/processed_mini-batches.csv";
inline constexpr const char* kUserErrorSummaryFile = "user/error.txt";
inline constexpr const char* kOverviewPrefix = "job_progress_overview.";
inline constexpr const char* kMasterRolePrefix = "sys/master_role.";

// `<output>/logs`.
std::string LogDirOf(const std::string& output_dir);
// `job_progress_overview.<yyyymmddhh>.txt` for the UTC hour of `t`.
std::string OverviewFileName(SystemTime t);
// `sys/master_role.<n>.txt`.
std::string MasterRoleFile(int n);
// 1 + the number of `sys/master_role.*.txt` files already in `log_dir` (a new file per
// coordinator start, as the seed's master failover does).
int NextMasterRoleIndex(const std::string& log_dir);

}  // namespace parallelrun::rt
