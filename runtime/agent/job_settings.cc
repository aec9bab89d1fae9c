// What the agent reads from the registration answer, the node's GPUs, and the checks of a lease's
// input before it runs (helpers of Agent::Impl, see agent_impl.h).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>
#include <vector>

#include "runtime/agent/agent_impl.h"
#include "runtime/base/log.h"

namespace parallelrun::rt {

using protocol::Lease;
using protocol::RegisterResponse;

std::string ProcessName(int number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "process%03d", number);
  return buf;
}

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }

FileStamp StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, st.st_ino, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_size)};
}

// 1 + the highest NNN of a processNNN.txt in `node_dir` (0 when there is none), so the names of
// an earlier agent on this node (a restart, a resumed job) are not reused.
int NextProcessNumber(const std::string& node_dir) {
  int next = 0;
  DIR* dir = ::opendir(node_dir.c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    int n = 0;
    int consumed = 0;
    if (std::sscanf(e->d_name, "process%d.txt%n", &n, &consumed) == 1 &&
        e->d_name[consumed] == '\0' && n >= 0) {
      next = std::max(next, n + 1);
    }
  }
  ::closedir(dir);
  return next;
}

StatusOr<JobSettings> ReadSettings(const RegisterResponse& resp) {
  const auto& cr = resp.spec;
  if (!cr.is_object() || !cr.contains("spec") || !cr["spec"].is_object()) {
    return InvalidArgumentError(
        "registration answer: field spec.spec: expected the job spec object");
  }
  const auto& spec = cr["spec"];
  JobSettings s;
  auto integer = [&](const char* name, int min, int* out) -> Status {
    auto it = spec.find(name);
    if (it == spec.end()) return Status::Ok();
    if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > 1000000000) {
      return InvalidArgumentError(std::string("registration answer: spec.") + name + ": got " +
                                  it->dump() + ", expected an integer >= " + std::to_string(min));
    }
    *out = it->get<int>();
    return Status::Ok();
  };
  auto string = [&](const char* name, std::string* out) -> Status {
    auto it = spec.find(name);
    if (it == spec.end()) return Status::Ok();
    if (!it->is_string()) {
      return InvalidArgumentError(std::string("registration answer: spec.") + name + ": got " +
                                  it->dump() + ", expected a string");
    }
    *out = it->get<std::string>();
    return Status::Ok();
  };
  PR_RETURN_IF_ERROR(integer("processCountPerNode", 1, &s.process_count));
  PR_RETURN_IF_ERROR(integer("runInvocationTimeout", 1, &s.run_timeout_s));
  PR_RETURN_IF_ERROR(integer("resourceMonitorInterval", 0, &s.resource_monitor_interval));
  PR_RETURN_IF_ERROR(integer("progressUpdateTimeout", 0, &s.progress_timeout_s));
  if (s.progress_timeout_s == 0) s.progress_timeout_s = 3 * (s.run_timeout_s + 30);
  PR_RETURN_IF_ERROR(integer("initTimeout", 1, &s.init_timeout_s));
  if (s.init_timeout_s == 0)
    s.init_timeout_s = std::max(kMinInitTimeoutSeconds, s.run_timeout_s + 30);
  PR_RETURN_IF_ERROR(string("loggingLevel", &s.logging_level));
  PR_RETURN_IF_ERROR(string("entryScript", &s.entry_script));
  if (s.entry_script.empty()) {
    return InvalidArgumentError("registration answer: spec.entryScript: expected a path");
  }
  if (auto it = spec.find("appendRowHeader"); it != spec.end()) {
    if (!it->is_boolean()) {
      return InvalidArgumentError("registration answer: spec.appendRowHeader: got " + it->dump() +
                                  ", expected true or false");
    }
    s.append_row_header = it->get<bool>();
  }
  if (auto it = spec.find("inputs"); it != spec.end() && it->is_array() && !it->empty()) {
    const auto& first = (*it)[0];
    if (first.is_object() && first.contains("type") && first["type"].is_string()) {
      s.input_type = first["type"].get<std::string>();
    }
  }
  return s;
}

// A worker's own log files: one line per attempt, and (opened on the first failure) one record

nlohmann::json ColumnTypes(const nlohmann::json& job) {
  nlohmann::json column_types = nlohmann::json::object();
  if (job.contains("inputs") && job["inputs"].is_array()) {
    for (const auto& in : job["inputs"]) {
      if (in.is_object() && in.contains("columnTypes") && in.contains("name")) {
        column_types[in["name"].get<std::string>()] = in["columnTypes"];
      }
    }
  }
  return column_types;
}

spdlog::logger& ProcessLogs::Error() {
  if (!error) error = MakeFileLogger("error", error_path);
  return *error;
}

std::vector<std::string> DetectGpus() {
  auto split = [](const std::string& list) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      std::string item = list.substr(start, comma - start);
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (!item.empty()) out.push_back(item);
      start = comma + 1;
    }
    return out;
  };
  if (const char* cuda = std::getenv("CUDA_VISIBLE_DEVICES")) return split(cuda);
  if (const char* nvidia = std::getenv("NVIDIA_VISIBLE_DEVICES")) {
    std::string v = nvidia;
    if (v == "none" || v == "void" || v.empty()) return {};
    if (v != "all") return split(v);
  }
  std::vector<std::string> gpus;
  if (DIR* dir = ::opendir("/proc/driver/nvidia/gpus")) {
    int n = 0;
    while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
    ::closedir(dir);
    for (int i = 0; i < n; ++i) gpus.push_back(std::to_string(i));
  }
  return gpus;
}

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string UtcOfNs(int64_t ns) {
  return Iso8601Utc(
      SystemTime(std::chrono::duration_cast<SystemTime::duration>(std::chrono::nanoseconds(ns))));
}

namespace {

// Open folders of the input files, one cache per slot thread, so that the check of a lease's
// files resolves each folder's path once per lease (a stat) and each file by its name alone
// (fstatat on the folder), instead of walking every file's full path: that walk was most of the
// check's cost. A folder whose path no longer leads to the opened one (renamed, replaced) is
// opened again, so a file is always looked up where its path leads now.
class InputFolders {
 public:
  InputFolders() = default;
  InputFolders(const InputFolders&) = delete;
  InputFolders& operator=(const InputFolders&) = delete;
  ~InputFolders() { Clear(); }

  // An fd of the folder `dir` as its path leads now, -1 with errno when it cannot be opened.
  // Valid until the next call.
  int Fd(const std::string& dir) {
    struct stat now {};
    if (::stat(dir.c_str(), &now) != 0) return -1;
    auto it = open_.find(dir);
    if (it != open_.end() && it->second.dev == now.st_dev && it->second.ino == now.st_ino) {
      return it->second.fd;
    }
    if (it != open_.end()) {
      ::close(it->second.fd);
      open_.erase(it);
    }
    if (open_.size() >= kMaxOpen) Clear();
    const int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat opened {};
    if (fd < 0) return -1;
    if (::fstat(fd, &opened) != 0) {
      const int e = errno;
      ::close(fd);
      errno = e;
      return -1;
    }
    open_[dir] = {fd, opened.st_dev, opened.st_ino};
    return fd;
  }

 private:
  static constexpr size_t kMaxOpen = 16;
  struct Open {
    int fd;
    dev_t dev;
    ino_t ino;
  };
  void Clear() {
    for (const auto& [dir, open] : open_) ::close(open.fd);
    open_.clear();
  }
  std::map<std::string, Open> open_;
};

// stat() of each of `paths` (0, or errno, per path), looking up each folder once.
std::vector<int> StatAll(const std::vector<std::string>& paths, std::vector<struct stat>* st) {
  thread_local InputFolders folders;
  std::vector<int> errors(paths.size(), 0);
  st->assign(paths.size(), {});
  std::string dir;
  bool have_dir = false;
  int dir_fd = -1;
  int dir_errno = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& path = paths[i];
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash + 1 == path.size()) {
      errors[i] = ::stat(path.c_str(), &(*st)[i]) == 0 ? 0 : errno;
      continue;
    }
    const std::string_view parent(path.data(), slash == 0 ? 1 : slash);
    if (!have_dir || parent != dir) {
      have_dir = true;
      dir.assign(parent);
      dir_fd = folders.Fd(dir);
      dir_errno = dir_fd < 0 ? errno : 0;
    }
    if (dir_fd < 0) {
      errors[i] = dir_errno;
    } else if (::fstatat(dir_fd, path.c_str() + slash + 1, &(*st)[i], 0) != 0) {
      errors[i] = errno;
    }
  }
  return errors;
}

}  // namespace

// A file input's files that are not what the planner saw (gone, or another size or mtime): the
// attempt would run on other data than the job planned. The reason naming them, or nullopt.
std::optional<std::string> FilesChanged(const Lease& lease) {
  if (lease.file_sizes.size() != lease.files.size() ||
      lease.file_mtimes_ns.size() != lease.files.size()) {
    return std::nullopt;  // not recorded (a plan from an older version)
  }
  std::vector<struct stat> stats;
  const std::vector<int> errors = StatAll(lease.files, &stats);
  std::vector<std::string> changed;
  for (size_t i = 0; i < lease.files.size(); ++i) {
    if (lease.file_sizes[i] < 0) continue;  // could not be stat'ed when planned
    const struct stat& st = stats[i];
    std::string what;
    if (errors[i] != 0) {
      what = "cannot be read now: " + std::string(std::strerror(errors[i]));
    } else if (st.st_size != lease.file_sizes[i] || MtimeNs(st) != lease.file_mtimes_ns[i]) {
      what = "size " + std::to_string(lease.file_sizes[i]) + " bytes, modified " +
             UtcOfNs(lease.file_mtimes_ns[i]) + " when planned; now " + std::to_string(st.st_size) +
             " bytes, modified " + UtcOfNs(MtimeNs(st));
    } else {
      continue;
    }
    if (changed.size() < 3)
      changed.push_back(lease.files[i] + " (" + what + ")");
    else if (changed.size() == 3)
      changed.push_back("...");
  }
  if (changed.empty()) return std::nullopt;
  std::string out = "input file(s) changed since the job was planned: ";
  for (size_t i = 0; i < changed.size(); ++i) out += (i ? ", " : "") + changed[i];
  return out +
         ". The mini-batch would run on other data than the job planned. Restore the files, or "
         "run the job again on a new output folder";
}

// A tabular input file that is not what the planner saw (its size or mtime differs) no longer
// matches the byte ranges of its mini-batches: rows would be lost or cut. The reason, or nullopt.
// File inputs: FilesChanged.
std::optional<std::string> InputChanged(const Lease& lease) {
  if (lease.input_type == "file") return FilesChanged(lease);
  if (lease.input_type != "tabular" || lease.file_size < 0) return std::nullopt;
  const std::string what = "input file " + lease.file + " changed since the job was planned (";
  struct stat st;
  if (::stat(lease.file.c_str(), &st) != 0) {
    return what + "it cannot be read now: " + std::strerror(errno) +
           "); the mini-batch's rows (bytes " + std::to_string(lease.begin) + ".." +
           std::to_string(lease.end) + ") are not there";
  }
  const int64_t mtime = MtimeNs(st);
  if (st.st_size == lease.file_size && mtime == lease.file_mtime_ns) return std::nullopt;
  return what + "size " + std::to_string(lease.file_size) + " bytes, modified " +
         UtcOfNs(lease.file_mtime_ns) + " when planned; now " + std::to_string(st.st_size) +
         " bytes, modified " + UtcOfNs(mtime) +
         "): its mini-batches no longer match the file. Restore the file, or run the job again "
         "on a new output folder";
}

}  // namespace parallelrun::rt
