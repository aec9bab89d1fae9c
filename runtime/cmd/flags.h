// A tiny command-line parser for the `parallelrun` subcommands: `--name value`, `--name=value`,
// repeatable flags, boolean switches and positional arguments. Errors name the flag.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace parallelrun::rt::cmd {

struct FlagSpec {
  std::set<std::string> with_value;  // flags that take a value (may repeat)
  std::set<std::string> switches;    // boolean flags
};

struct ParsedFlags {
  std::map<std::string, std::vector<std::string>> values;
  std::set<std::string> switches;
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values.count(name) || switches.count(name); }
  // Last value of a flag, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
};

// `args` excludes the program and subcommand names.
StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args, const FlagSpec& spec);

// Parses a positive int flag value, naming the flag in the error.
StatusOr<int> ParseIntFlag(const std::string& name, const std::string& value, int min_value);

}  // namespace parallelrun::rt::cmd
