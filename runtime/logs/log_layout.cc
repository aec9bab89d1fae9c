#include "runtime/logs/log_layout.h"

#include <filesystem>

#include "runtime/base/files.h"

namespace parallelrun::rt {

std::string LogDirOf(const std::string& output_dir) { return JoinPath(output_dir, "logs"); }

std::string OverviewFileName(SystemTime t) {
  return std::string(kOverviewPrefix) + FormatUtc(t, "%Y%m%d%H") + ".txt";
}

std::string MasterRoleFile(int n) {
  return std::string(kMasterRolePrefix) + std::to_string(n) + ".txt";
}

int NextMasterRoleIndex(const std::string& log_dir) {
  std::error_code ec;
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(JoinPath(log_dir, "sys"), ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("master_role.", 0) == 0 && name.size() > 16 &&
        name.compare(name.size() - 4, 4, ".txt") == 0) {
      ++count;
    }
  }
  return count + 1;
}

}  // namespace parallelrun::rt
