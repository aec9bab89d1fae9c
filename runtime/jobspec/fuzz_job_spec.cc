// libFuzzer target: ParseJobSpec on arbitrary bytes must never crash, hang or leak, must explain
// every rejection, and every spec it accepts must survive ToJson → ParseJobSpec unchanged.
//
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DPARALLELRUN_FUZZ=ON \
//     -DPARALLELRUN_BUILD_TESTS=OFF
//   cmake --build build-fuzz --target fuzz_job_spec
//   mkdir -p corpus && cp examples/*/job.yaml corpus/
//   build-fuzz/bin/fuzz_job_spec -max_total_time=60 -dict=runtime/jobspec/fuzz_job_spec.dict corpus

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/jobspec/job_spec.h"

namespace {

[[noreturn]] void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_job_spec: %s\n%s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace parallelrun::rt;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<FieldError> errors;
  auto spec = ParseJobSpec(text, "fuzz.yaml", &errors);
  if (!spec.ok()) {
    if (spec.status().code() != StatusCode::kInvalidArgument || spec.status().message().empty()) {
      Die("rejection is not an explained InvalidArgument", spec.status().ToString());
    }
    for (const FieldError& e : errors) {
      if (e.expected.empty()) Die("a field error says nothing expected", e.ToString());
    }
    return 0;
  }
  const nlohmann::json once = ToJson(*spec);
  const std::string dumped = once.dump();
  auto again = ParseJobSpec(dumped, "spec.json");
  if (!again.ok()) Die("ToJson output does not parse", again.status().ToString() + "\n" + dumped);
  if (ToJson(*again) != once) Die("ToJson does not round-trip", dumped);
  (void)ExpandArguments(*spec, MountedPaths(*spec));
  auto local = ResolveLocalPaths(*spec, "/tmp/manifest", {{"data", "/tmp/data"}});
  if (local.ok()) (void)ExpandArguments(*spec, *local);
  return 0;
}
