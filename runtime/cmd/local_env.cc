#include "runtime/cmd/local_env.h"

#include <map>

namespace parallelrun::rt::cmd {
namespace {

// Kubernetes' dependent-variable expansion: $(NAME) from `known`, $$ -> $, anything else as is.
std::string Expand(const std::string& value, const std::map<std::string, std::string>& known) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '$' || i + 1 >= value.size()) {
      out += value[i];
    } else if (value[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (value[i + 1] == '(') {
      size_t close = value.find(')', i + 2);
      auto it =
          close == std::string::npos ? known.end() : known.find(value.substr(i + 2, close - i - 2));
      if (it == known.end()) {
        out += value[i];
      } else {
        out += it->second;
        i = close;
      }
    } else {
      out += value[i];
    }
  }
  return out;
}

}  // namespace

StatusOr<LocalEnv> LocalEnvFromSpec(const nlohmann::json& pod) {
  LocalEnv out;
  if (!pod.is_object() || !pod.contains("env")) return out;
  const nlohmann::json& env = pod.at("env");
  std::map<std::string, std::string> known;
  std::vector<std::string> order;
  for (size_t i = 0; i < env.size(); ++i) {
    const nlohmann::json& e = env[i];
    const std::string where = "spec.env[" + std::to_string(i) + "]";
    if (!e.is_object()) {
      return InvalidArgumentError(where + ": expected an object {name, value}, got " + e.dump());
    }
    if (!e.contains("name") || !e["name"].is_string() || e["name"].get<std::string>().empty() ||
        e["name"].get<std::string>().find('=') != std::string::npos) {
      return InvalidArgumentError(where +
                                  ".name: expected a variable name (a non-empty string "
                                  "without '='), got " +
                                  (e.contains("name") ? e["name"].dump() : "nothing"));
    }
    const std::string name = e["name"].get<std::string>();
    if (e.contains("valueFrom")) {
      out.skipped.push_back(name);
      continue;
    }
    if (e.contains("value") && !e["value"].is_string()) {
      return InvalidArgumentError(where + ".value: expected a string (quote it), got " +
                                  e["value"].dump());
    }
    std::string value = e.contains("value") ? Expand(e["value"].get<std::string>(), known) : "";
    if (!known.count(name)) order.push_back(name);
    known[name] = std::move(value);
  }
  for (const auto& name : order) out.entries.push_back(name + "=" + known[name]);
  return out;
}

}  // namespace parallelrun::rt::cmd
