#include "runtime/cmd/flags.h"

#include <cstdlib>

namespace parallelrun::rt::cmd {

std::string ParsedFlags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  if (it == values.end() || it->second.empty()) return fallback;
  return it->second.back();
}

std::vector<std::string> ParsedFlags::GetAll(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>{} : it->second;
}

StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args, const FlagSpec& spec) {
  ParsedFlags out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (a.size() > 1 && a[0] == '-' && a != "-") {
        return InvalidArgumentError("unknown flag " + a + " (flags are written --name)");
      }
      out.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_inline = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    if (spec.switches.count(name)) {
      if (has_inline) return InvalidArgumentError("flag --" + name + " takes no value");
      out.switches.insert(name);
      continue;
    }
    if (!spec.with_value.count(name)) {
      std::string known;
      for (const auto& f : spec.with_value) known += " --" + f;
      for (const auto& f : spec.switches) known += " --" + f;
      return InvalidArgumentError("unknown flag --" + name + "; expected one of:" + known);
    }
    if (!has_inline) {
      if (i + 1 >= args.size()) return InvalidArgumentError("flag --" + name + " needs a value");
      value = args[++i];
    }
    out.values[name].push_back(value);
  }
  return out;
}

StatusOr<int> ParseIntFlag(const std::string& name, const std::string& value, int min_value) {
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < min_value || v > 1000000) {
    return InvalidArgumentError("flag --" + name + ": got \"" + value +
                                "\", expected an integer >= " + std::to_string(min_value));
  }
  return static_cast<int>(v);
}

}  // namespace parallelrun::rt::cmd
