#include <cstdio>

#include "runtime/cmd/commands.h"
#include "runtime/cmd/flags.h"

namespace parallelrun::rt::cmd {

int ValidateMain(const std::vector<std::string>& args) {
  auto flags = ParseFlags(args, FlagSpec{});
  if (!flags.ok()) {
    std::fprintf(stderr, "parallelrun validate: %s\n", flags.status().message().c_str());
    return kExitInvalid;
  }
  if (flags->positional.size() != 1) {
    std::fprintf(stderr, "usage: parallelrun validate FILE\n");
    return kExitInvalid;
  }
  const std::string& file = flags->positional[0];
  auto spec = LoadJobSpec(file);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().message().c_str());
    return kExitInvalid;
  }
  std::printf("%s: valid; %s\n", file.c_str(), SpecSummary(*spec).c_str());
  return kExitOk;
}

}  // namespace parallelrun::rt::cmd
