// Where the DataRefs of a job live: locally (ResolveLocalPaths) or inside an operator-made pod
// (MountedPaths), and the expansion of $(...) references in the entry script's arguments.

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/jobspec/job_spec.h"

namespace parallelrun::rt {
namespace {

using nlohmann::json;

constexpr const char* kMountedCodeDir = "/mnt/code";
constexpr const char* kMountedInputsDir = "/mnt/inputs";
constexpr const char* kMountedSideInputsDir = "/mnt/side-inputs";
constexpr const char* kMountedOutputDir = "/mnt/output";

// The Kubernetes volume source of a volume object: its first key other than `name`.
std::string VolumeKind(const json& volume) {
  for (const auto& [key, value] : volume.items()) {
    if (key != "name") return key;
  }
  return "";
}

class LocalResolver {
 public:
  LocalResolver(const JobSpec& spec, std::string manifest_dir,
                const std::map<std::string, std::string>& bindings)
      : spec_(spec), manifest_dir_(std::move(manifest_dir)), bindings_(bindings) {}

  // Checks that every --volume binding names a volume of the spec.
  void CheckBindings() {
    for (const auto& [name, dir] : bindings_) {
      if (FindVolume(name) == nullptr) {
        std::vector<std::string> names;
        for (const json& v : spec_.volumes) {
          if (v.is_object() && v.contains("name") && v["name"].is_string()) {
            names.push_back(v["name"].get<std::string>());
          }
        }
        std::string list;
        for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
        errors_.push_back("--volume " + name + "=" + dir + ": spec.volumes has no volume \"" +
                          name + "\" (" + (list.empty() ? "it has none" : "it has " + list) + ")");
      } else if (dir.empty()) {
        errors_.push_back("--volume " + name + "=: expected a folder after '='");
      }
    }
  }

  std::string Resolve(const DataRef& ref, const std::string& field) {
    if (ref.volume.empty()) return AbsolutePath(ref.path, manifest_dir_);
    auto bound = bindings_.find(ref.volume);
    if (bound != bindings_.end() && !bound->second.empty()) {
      return AbsolutePath(ref.path, AbsolutePath(bound->second, manifest_dir_));
    }
    const json* volume = FindVolume(ref.volume);
    if (volume == nullptr) {  // ParseJobSpec rejects this; a hand-built JobSpec may not
      Report(ref.volume, field + ".volume: no volume \"" + ref.volume + "\" in spec.volumes");
      return "";
    }
    const std::string kind = VolumeKind(*volume);
    if (kind == "hostPath") {
      const json& host_path = (*volume)["hostPath"];
      if (host_path.is_object() && host_path.contains("path") && host_path["path"].is_string()) {
        const std::string dir = host_path["path"].get<std::string>();
        if (!dir.empty()) return AbsolutePath(ref.path, AbsolutePath(dir, manifest_dir_));
      }
      Report(ref.volume, VolumePath(ref.volume) + ".hostPath.path: missing, expected a folder");
      return "";
    }
    const std::string what = kind.empty() ? "has no volume source" : "is a " + kind;
    Report(ref.volume, field + ".volume: volume \"" + ref.volume + "\" " + what +
                           "; bind it to a local folder with --volume " + ref.volume + "=DIR");
    return "";
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  const json* FindVolume(const std::string& name) const {
    if (!spec_.volumes.is_array()) return nullptr;
    for (const json& v : spec_.volumes) {
      if (v.is_object() && v.contains("name") && v["name"] == name) return &v;
    }
    return nullptr;
  }

  std::string VolumePath(const std::string& name) const {
    for (size_t i = 0; i < spec_.volumes.size(); ++i) {
      const json& v = spec_.volumes[i];
      if (v.is_object() && v.contains("name") && v["name"] == name) {
        return "spec.volumes[" + std::to_string(i) + "]";
      }
    }
    return "spec.volumes";
  }

  // One error per volume: the first field that needs it says what to do.
  void Report(const std::string& volume, std::string message) {
    if (reported_.insert(volume).second) errors_.push_back(std::move(message));
  }

  const JobSpec& spec_;
  const std::string manifest_dir_;
  const std::map<std::string, std::string>& bindings_;
  std::vector<std::string> errors_;
  std::set<std::string> reported_;
};

// A DataRef with no volume is a path inside the image: the relative path taken from `/`.
std::string Mounted(const DataRef& ref, const std::string& mount_point) {
  return ref.volume.empty() ? AbsolutePath(ref.path, "/") : mount_point;
}

std::string CurrentDir() {
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return ec ? "/" : cwd.string();
}

}  // namespace

StatusOr<ResolvedPaths> ResolveLocalPaths(const JobSpec& spec, const std::string& manifest_dir,
                                          const std::map<std::string, std::string>& bindings) {
  const std::string base = AbsolutePath(manifest_dir.empty() ? "." : manifest_dir, CurrentDir());
  LocalResolver resolver(spec, base, bindings);
  resolver.CheckBindings();
  ResolvedPaths paths;
  paths.code_dir = resolver.Resolve(spec.source_directory, "spec.sourceDirectory");
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const Input& in = spec.inputs[i];
    paths.inputs[in.name] =
        resolver.Resolve(in.source, "spec.inputs[" + std::to_string(i) + "].source");
  }
  for (size_t i = 0; i < spec.side_inputs.size(); ++i) {
    const SideInput& side = spec.side_inputs[i];
    paths.side_inputs[side.name] =
        resolver.Resolve(side.source, "spec.sideInputs[" + std::to_string(i) + "].source");
  }
  for (size_t i = 0; i < spec.models.size(); ++i) {
    const Model& model = spec.models[i];
    paths.models[model.name] =
        resolver.Resolve(model.source, "spec.models[" + std::to_string(i) + "].source");
  }
  paths.output_dir = resolver.Resolve(spec.output, "spec.output");
  if (!spec.retry_from.empty()) {
    paths.retry_from_dir = AbsolutePath(spec.retry_from, base);
  }
  if (!resolver.errors().empty()) {
    std::string message;
    for (const std::string& e : resolver.errors()) message += (message.empty() ? "" : "\n") + e;
    return InvalidArgumentError(message);
  }
  return paths;
}

ResolvedPaths MountedPaths(const JobSpec& spec) {
  ResolvedPaths paths;
  paths.code_dir = Mounted(spec.source_directory, kMountedCodeDir);
  for (const Input& in : spec.inputs) {
    paths.inputs[in.name] = Mounted(in.source, std::string(kMountedInputsDir) + "/" + in.name);
  }
  for (const SideInput& side : spec.side_inputs) {
    paths.side_inputs[side.name] =
        Mounted(side.source, std::string(kMountedSideInputsDir) + "/" + side.name);
  }
  for (const Model& model : spec.models) {
    paths.models[model.name] =
        Mounted(model.source, std::string(kMountedModelsDir) + "/" + model.name);
  }
  paths.output_dir = Mounted(spec.output, kMountedOutputDir);
  paths.retry_from_dir = spec.retry_from;
  return paths;
}

std::string ModelsEnvValue(const JobSpec& spec, const std::map<std::string, std::string>& paths) {
  nlohmann::json out = nlohmann::json::object();
  for (const Model& model : spec.models) {
    auto it = paths.find(model.name);
    out[model.name] = {
        {"version", model.version.empty() ? nlohmann::json() : nlohmann::json(model.version)},
        {"path", it == paths.end() ? "" : it->second}};
  }
  return out.dump();
}

std::string FolderOverlap(const std::string& a, const std::string& b, const std::string& b_name) {
  auto parts = [](const std::string& p) {
    std::vector<std::string> out;
    for (const auto& c : std::filesystem::path(p).lexically_normal()) {
      const std::string s = c.string();
      if (s.empty() || s == ".") continue;
      out.push_back(s);
    }
    return out;
  };
  const std::vector<std::string> x = parts(a), y = parts(b);
  const size_t common = std::min(x.size(), y.size());
  for (size_t i = 0; i < common; ++i) {
    if (x[i] != y[i]) return "";
  }
  const std::string qa = "\"" + a + "\"";
  if (x.size() == y.size()) return qa + " is the same folder as " + b_name;
  if (x.size() > y.size()) return qa + " is inside " + b_name;
  return qa + " holds " + b_name + " (\"" + b + "\")";
}

Status CheckResolvedFoldersApart(const JobSpec& spec, const ResolvedPaths& paths) {
  // Symbolic links resolved; the part of the path that does not exist yet is kept as written.
  auto real = [](const std::string& p) {
    std::error_code ec;
    std::filesystem::path r = std::filesystem::weakly_canonical(p, ec);
    return ec ? std::filesystem::path(p).lexically_normal().string() : r.string();
  };
  struct Folder {
    std::string field, dir;
  };
  std::vector<Folder> folders = {{"spec.output", paths.output_dir},
                                 {"spec.sourceDirectory", paths.code_dir}};
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    auto it = paths.inputs.find(spec.inputs[i].name);
    if (it == paths.inputs.end()) continue;
    folders.push_back({"spec.inputs[" + std::to_string(i) + "].source", it->second});
  }
  std::vector<std::string> errors;
  for (size_t a = 0; a < 2; ++a) {
    for (size_t b = a + 1; b < folders.size(); ++b) {
      if (folders[a].dir.empty() || folders[b].dir.empty()) continue;
      const std::string ra = real(folders[a].dir), rb = real(folders[b].dir);
      std::string how = FolderOverlap(ra, rb, folders[b].field);
      if (how.empty()) continue;
      std::string text = folders[a].field + " (" + folders[a].dir + ") and " + folders[b].field +
                         " (" + folders[b].dir + ") overlap: " + how;
      if (ra != folders[a].dir || rb != folders[b].dir) {
        text += " (after following symbolic links: " + ra + " and " + rb + ")";
      }
      errors.push_back(text + "; give " + folders[a].field + " a folder of its own");
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string message;
  for (const auto& e : errors) message += (message.empty() ? "" : "\n") + e;
  return InvalidArgumentError(message);
}

std::vector<std::string> ExpandArguments(const JobSpec& spec, const ResolvedPaths& paths) {
  std::vector<std::string> out;
  out.reserve(spec.arguments.size());
  for (const std::string& arg : spec.arguments) {
    std::string expanded;
    size_t pos = 0;
    while (true) {
      const size_t open = arg.find("$(", pos);
      const size_t close = open == std::string::npos ? open : arg.find(')', open + 2);
      if (close == std::string::npos) {
        expanded.append(arg, pos, std::string::npos);
        break;
      }
      const std::string ref = arg.substr(open + 2, close - open - 2);
      const std::string* value = nullptr;
      if (ref == "output") {
        value = &paths.output_dir;
      } else if (ref.starts_with("inputs.")) {
        auto it = paths.inputs.find(ref.substr(7));
        if (it != paths.inputs.end()) value = &it->second;
      } else if (ref.starts_with("sideInputs.")) {
        auto it = paths.side_inputs.find(ref.substr(11));
        if (it != paths.side_inputs.end()) value = &it->second;
      }
      expanded.append(arg, pos, open - pos);
      if (value != nullptr) {
        expanded += *value;
      } else {
        expanded.append(arg, open, close + 1 - open);  // not ours: left as written
      }
      pos = close + 1;
    }
    out.push_back(std::move(expanded));
  }
  return out;
}

}  // namespace parallelrun::rt
